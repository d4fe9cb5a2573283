//! [`RemoteSource`]: a cold segment read by byte range from object storage, through the local
//! [`ColdCache`](super::cache::ColdCache).

use std::ops::Range;
use std::sync::Arc;

use barq_core::{Error, Result};
use bytes::Bytes;

use super::cache::ColdCache;
use super::store::{ColdStore, ColdStoreError, PARTS_IN_FLIGHT};
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

    /// Fetch `range` and the CRC32C of its bytes (computed as they arrive). A range larger than
    /// [`PARALLEL_READ_BYTES`] (a whole block) is read as parallel parts, the way object stores
    /// are fastest.
    fn fetch(&self, range: Range<u64>) -> Result<(Bytes, u32)> {
        if range.start > range.end || range.end > self.len {
            return Err(ColdStoreError::OutOfBounds {
                key: self.key.clone(),
                start: range.start,
                end: range.end,
                len: self.len,
            }
            .into());
        }
        let missing = |e: Error| {
            if e.kind() == barq_core::ErrorKind::NotFound {
                ColdStoreError::Missing {
                    key: self.key.clone(),
                    reason: e.to_string(),
                }
                .into()
            } else {
                e
            }
        };
        let len = range.end - range.start;
        let part = if len <= PARALLEL_READ_BYTES {
            len
        } else {
            PART_BYTES
        };
        let store = &self.store;
        store
            .block_on(store.read_to_buffer(&self.key, range, part, PARTS_IN_FLIGHT))
            .map_err(missing)
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
        Ok(self.fetch(range)?.0)
    }

    fn read_verified(&self, range: Range<u64>, crc: u32) -> Result<Bytes> {
        if let Some(b) = self.cache.get(&self.namespace, &range) {
            return Ok(b);
        }
        let started = std::time::Instant::now();
        let (bytes, got) = self.fetch(range.clone())?;
        tracing::debug!(key = %self.key, ?range, took = ?started.elapsed(), "cold range fetched and checked");
        if got != crc {
            return Err(ColdStoreError::Checksum {
                store: self.store.description().to_owned(),
                key: self.key.clone(),
                start: range.start,
                end: range.end,
            }
            .into());
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
