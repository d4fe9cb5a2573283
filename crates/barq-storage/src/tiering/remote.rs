//! [`RemoteSource`]: a cold segment read by byte range from object storage, through the local
//! [`ColdCache`](super::cache::ColdCache).

use std::ops::Range;
use std::sync::Arc;

use barq_core::{Error, Result};
use bytes::Bytes;

use super::cache::ColdCache;
use super::store::{ColdStore, PARTS_IN_FLIGHT, Piece};
use crate::segment::RangeSource;

/// Reads larger than this are split into parallel ranged reads.
const PARALLEL_READ_BYTES: u64 = 16 << 20;
/// Size of each of those reads.
const PART_BYTES: u64 = 8 << 20;

/// See the module docs.
#[derive(Debug)]
pub struct RemoteSource {
    store: ColdStore,
    cache: Arc<ColdCache>,
    key: String,
    namespace: String,
    len: u64,
}

impl RemoteSource {
    /// The object `key` of `len` bytes; cached ranges are filed under `namespace`.
    pub fn new(
        store: ColdStore,
        cache: Arc<ColdCache>,
        key: String,
        namespace: String,
        len: u64,
    ) -> Self {
        RemoteSource {
            store,
            cache,
            key,
            namespace,
            len,
        }
    }

    /// Fetch `range`; with `checksum`, also the CRC32C of the bytes (computed as the parts of a
    /// large read arrive, while the next ones are still on the way).
    fn fetch(&self, range: Range<u64>, checksum: bool) -> Result<(Bytes, Option<u32>)> {
        if range.start > range.end || range.end > self.len {
            return Err(Error::corruption(format!(
                "read of {}..{} past the end of {} ({} bytes)",
                range.start, range.end, self.key, self.len
            )));
        }
        let missing = |e: Error| {
            if e.kind() == barq_core::ErrorKind::NotFound {
                Error::corruption(format!(
                    "cold segment object {} is missing from the store: {e}",
                    self.key
                ))
            } else {
                e
            }
        };
        let store = &self.store;
        let len = range.end - range.start;
        let (bytes, crc) = if len <= PARALLEL_READ_BYTES {
            let bytes = store
                .block_on(store.get_range(&self.key, range.clone()))
                .map_err(missing)?;
            let crc = checksum.then(|| crc32c::crc32c(&bytes));
            (bytes, crc)
        } else {
            // A whole block: parallel ranged reads, the way object stores are fastest, each
            // streamed straight into its place in one buffer.
            let mut whole = bytes::BytesMut::zeroed(len as usize);
            let (crc, mut pieces) = store
                .block_on(store.read_parts(
                    &self.key,
                    range.clone(),
                    PART_BYTES,
                    PARTS_IN_FLIGHT,
                    |r| Piece(whole.split_to((r.end - r.start) as usize)),
                ))
                .map_err(missing)?;
            let mut out = pieces.remove(0).0;
            for piece in pieces {
                // The pieces were split off one buffer in order: this is O(1).
                out.unsplit(piece.0);
            }
            (out.freeze(), checksum.then_some(crc))
        };
        if bytes.len() as u64 != range.end - range.start {
            return Err(Error::corruption(format!(
                "cold store returned {} bytes for {}..{} of {}",
                bytes.len(),
                range.start,
                range.end,
                self.key
            )));
        }
        Ok((bytes, crc))
    }
}

impl RangeSource for RemoteSource {
    fn len(&self) -> u64 {
        self.len
    }

    /// Unverified reads (only the footer read at open, which checks its own checksum) are
    /// fetched and not cached.
    fn read(&self, range: Range<u64>) -> Result<Bytes> {
        if let Some(b) = self.cache.get(&self.namespace, &range) {
            return Ok(b);
        }
        Ok(self.fetch(range, false)?.0)
    }

    fn read_verified(&self, range: Range<u64>, crc: u32) -> Result<Bytes> {
        if let Some(b) = self.cache.get(&self.namespace, &range) {
            return Ok(b);
        }
        let started = std::time::Instant::now();
        let (bytes, got) = self.fetch(range.clone(), true)?;
        tracing::debug!(key = %self.key, ?range, took = ?started.elapsed(), "cold range fetched and checked");
        if got != Some(crc) {
            return Err(Error::corruption(format!(
                "checksum mismatch in bytes {}..{} of {} (cold store {})",
                range.start,
                range.end,
                self.key,
                self.store.description()
            )));
        }
        self.cache.insert(&self.namespace, range, bytes)
    }

    fn is_stable(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("{} in cold store {}", self.key, self.store.description())
    }
}
