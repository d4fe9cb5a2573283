//! [`RemoteSource`]: a cold segment read by byte range from object storage, through the local
//! [`ColdCache`](super::cache::ColdCache).

use std::ops::Range;
use std::sync::Arc;

use barq_core::{Error, Result};
use bytes::Bytes;

use futures::StreamExt;

use super::cache::ColdCache;
use super::store::ColdStore;
use crate::segment::RangeSource;

/// Reads larger than this are split into parallel ranged reads.
const PARALLEL_READ_BYTES: u64 = 16 << 20;
/// Size of each of those reads.
const PART_BYTES: u64 = 8 << 20;
/// Ranged reads in flight for one large read.
const PARTS_IN_FLIGHT: usize = 4;

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

    fn fetch(&self, range: Range<u64>) -> Result<Bytes> {
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
        let bytes = if len <= PARALLEL_READ_BYTES {
            store
                .block_on(store.get_range(&self.key, range.clone()))
                .map_err(missing)?
        } else {
            // A whole block: parallel ranged reads, the way object stores are fastest.
            let parts: Vec<Range<u64>> = (0..len.div_ceil(PART_BYTES))
                .map(|i| {
                    range.start + i * PART_BYTES
                        ..(range.start + (i + 1) * PART_BYTES).min(range.end)
                })
                .collect();
            store
                .block_on(async {
                    let mut out = bytes::BytesMut::with_capacity(len as usize);
                    let mut chunks = futures::stream::iter(parts)
                        .map(|r| store.get_range(&self.key, r))
                        .buffered(PARTS_IN_FLIGHT);
                    while let Some(chunk) = chunks.next().await {
                        out.extend_from_slice(&chunk?);
                    }
                    Ok::<_, Error>(out.freeze())
                })
                .map_err(missing)?
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
        Ok(bytes)
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
        self.fetch(range)
    }

    fn read_verified(&self, range: Range<u64>, crc: u32) -> Result<Bytes> {
        if let Some(b) = self.cache.get(&self.namespace, &range) {
            return Ok(b);
        }
        let bytes = self.fetch(range.clone())?;
        if crc32c::crc32c(&bytes) != crc {
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
