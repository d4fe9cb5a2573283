//! Where a segment's bytes come from: the [`RangeSource`] trait.
//!
//! A segment reader only ever asks for byte ranges, so the same reader works over a local file
//! (memory-mapped here) and, in the tiering layer, over object storage and its local cache.

use std::fmt::Debug;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use barq_core::Result;

use super::SegmentError;
use bytes::Bytes;

/// Random access to the bytes of one immutable file.
pub trait RangeSource: Send + Sync + Debug {
    /// Length of the file in bytes.
    fn len(&self) -> u64;

    /// `true` when the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes in `range` (must lie within `0..len()`).
    fn read(&self, range: Range<u64>) -> Result<Bytes>;

    /// The bytes in `range`, checked against `crc` (CRC32C): a mismatch is a
    /// [`DataCorruption`](barq_core::ErrorKind::DataCorruption) error. A source with a cache
    /// of verified ranges may skip the check for bytes it verified before.
    fn read_verified(&self, range: Range<u64>, crc: u32) -> Result<Bytes> {
        let bytes = self.read(range.clone())?;
        if crc32c::crc32c(&bytes) != crc {
            return Err(SegmentError::Checksum {
                segment: self.describe(),
                start: range.start,
                end: range.end,
            }
            .into());
        }
        Ok(bytes)
    }

    /// Several ranges, each checked against its CRC32C as by
    /// [`read_verified`](Self::read_verified), in order. A remote source fetches the ranges it
    /// has not cached in parallel, so a batch costs about one round trip, not one per range.
    fn read_verified_many(&self, ranges: &[(Range<u64>, u32)]) -> Result<Vec<Bytes>> {
        ranges
            .iter()
            .map(|(r, crc)| self.read_verified(r.clone(), *crc))
            .collect()
    }

    /// Several unverified ranges, in order (the caller checks them, e.g. row by row against
    /// per-row checksums). A remote source fetches them in parallel, uncached.
    fn read_many(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        ranges.iter().map(|r| self.read(r.clone())).collect()
    }

    /// [`read_many`](Self::read_many) for a caller that checks every piece it uses each time
    /// it uses it (re-rank vectors, row by row): a remote source keeps these ranges in its
    /// cache apart from the verified ones, so repeated queries do not fetch them again.
    fn read_many_rechecked(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.read_many(ranges)
    }

    /// A piece of a range from [`read_many_rechecked`](Self::read_many_rechecked) failed its
    /// check: drop the cached copies, so the next read fetches them again.
    fn forget_rechecked(&self) {}

    /// Verified metadata of this file kept as `key` in a local store that survives restarts
    /// (a remote source's; `None` for a local file, whose bytes are at hand anyway).
    fn kept(&self, _key: &str) -> Option<Bytes> {
        None
    }

    /// Keep verified metadata `bytes` of this file as `key` (see [`kept`](Self::kept)).
    fn keep(&self, _key: &str, _bytes: &[u8]) {}

    /// `true` when repeated reads return the very same bytes (a local file or mapping), so a
    /// range that was verified once need not be verified again.
    fn is_stable(&self) -> bool;

    /// A short description for error messages (a path or an object key).
    fn describe(&self) -> String;
}

/// A local file, memory-mapped read-only. Reads are zero-copy slices of the mapping; nothing is
/// read into the heap, and pages come and go with the OS page cache.
#[derive(Debug)]
pub struct MmapSource {
    path: PathBuf,
    map: Bytes,
}

impl MmapSource {
    /// Map `path`.
    pub fn open(path: &Path) -> Result<MmapSource> {
        let file = File::open(path).map_err(SegmentError::io("open", path))?;
        let len = file
            .metadata()
            .map_err(SegmentError::io("stat", path))?
            .len();
        let map = if len == 0 {
            Bytes::new()
        } else {
            // SAFETY: segment files are immutable once renamed into place and are only removed
            // (never truncated or rewritten) while mapped; unlinking keeps the mapping valid.
            let mmap =
                unsafe { memmap2::Mmap::map(&file) }.map_err(SegmentError::io("mmap", path))?;
            Bytes::from_owner(mmap)
        };
        Ok(MmapSource {
            path: path.to_owned(),
            map,
        })
    }
}

impl RangeSource for MmapSource {
    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    fn read(&self, range: Range<u64>) -> Result<Bytes> {
        if range.start > range.end || range.end > self.len() {
            return Err(SegmentError::OutOfBounds {
                segment: self.path.display().to_string(),
                start: range.start,
                end: range.end,
                len: self.len(),
            }
            .into());
        }
        Ok(self.map.slice(range.start as usize..range.end as usize))
    }

    fn is_stable(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}
