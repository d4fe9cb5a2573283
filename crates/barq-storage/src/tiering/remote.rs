//! [`RemoteSource`]: a cold segment read by byte range from object storage, through the local
//! [`ColdCache`](super::cache::ColdCache).

use std::ops::Range;
use std::sync::Arc;

use barq_core::Result;
use bytes::Bytes;

use super::cache::ColdCache;
use super::store::{ColdStore, ColdStoreError, PARTS_IN_FLIGHT};
use crate::segment::{RangeSource, Tally};

/// Reads larger than this are split into parallel ranged reads.
const PARALLEL_READ_BYTES: u64 = 16 << 20;
/// Size of each of those reads.
const PART_BYTES: u64 = 8 << 20;

/// Ranges of one [`read_verified_many`](RangeSource::read_verified_many) batch in flight at
/// once: a batch is usually small ranges (id pages, cluster extents) whose cost is the round
/// trip, so they all go together.
const RANGES_IN_FLIGHT: usize = 16;

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

    /// Fetch `range` from the store: the bytes and their CRC32C (computed as they arrive). A
    /// range larger than [`PARALLEL_READ_BYTES`] (a whole block) is read as parallel parts, the
    /// way object stores are fastest. What is fetched is added to `tally`.
    async fn fetch(&self, range: Range<u64>, tally: Option<&Tally>) -> Result<(Bytes, u32)> {
        if range.start > range.end || range.end > self.len {
            return Err(ColdStoreError::OutOfBounds {
                key: self.key.clone(),
                start: range.start,
                end: range.end,
                len: self.len,
            }
            .into());
        }
        let len = range.end - range.start;
        let part = if len <= PARALLEL_READ_BYTES {
            len
        } else {
            PART_BYTES
        };
        let got = self
            .store
            .read_to_buffer(&self.key, range, part, PARTS_IN_FLIGHT)
            .await;
        if let (Some(t), Ok(_)) = (tally, &got) {
            t.add(len.div_ceil(part.max(1)).max(1), len);
        }
        got.map_err(|e| {
            if e.kind() == barq_core::ErrorKind::NotFound {
                ColdStoreError::Missing {
                    key: self.key.clone(),
                    reason: e.to_string(),
                }
                .into()
            } else {
                e
            }
        })
    }

    /// A verified range from the cache, or fetched, checked against `crc` and cached.
    async fn verified(&self, range: Range<u64>, crc: u32, tally: Option<&Tally>) -> Result<Bytes> {
        if let Some(b) = self.cache.get(&self.namespace, &range) {
            return Ok(b);
        }
        let started = std::time::Instant::now();
        let (bytes, got) = self.fetch(range.clone(), tally).await?;
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
        let tally = Tally::current();
        Ok(self.store.block_on(self.fetch(range, tally.as_deref()))?.0)
    }

    fn read_verified(&self, range: Range<u64>, crc: u32) -> Result<Bytes> {
        if let Some(b) = self.cache.get(&self.namespace, &range) {
            return Ok(b);
        }
        let tally = Tally::current();
        self.store
            .block_on(self.verified(range, crc, tally.as_deref()))
    }

    fn read_verified_many(&self, ranges: &[(Range<u64>, u32)]) -> Result<Vec<Bytes>> {
        use futures::{StreamExt, TryStreamExt};
        let tally = Tally::current();
        let tally = tally.as_deref();
        self.store.block_on(
            futures::stream::iter(
                ranges
                    .iter()
                    .map(|(r, crc)| self.verified(r.clone(), *crc, tally)),
            )
            .buffered(RANGES_IN_FLIGHT)
            .try_collect(),
        )
    }

    fn read_many(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        use futures::{StreamExt, TryStreamExt};
        let tally = Tally::current();
        let tally = tally.as_deref();
        self.store.block_on(
            futures::stream::iter(ranges.iter().map(|r| async move {
                Ok::<_, barq_core::Error>(self.fetch(r.clone(), tally).await?.0)
            }))
            .buffered(RANGES_IN_FLIGHT)
            .try_collect(),
        )
    }

    fn read_many_rechecked(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        use futures::{StreamExt, TryStreamExt};
        let tally = Tally::current();
        let tally = tally.as_deref();
        let ns = super::cache::rechecked_namespace(&self.namespace);
        let ns = ns.as_str();
        self.store.block_on(
            futures::stream::iter(ranges.iter().map(|r| async move {
                if let Some(b) = self.cache.get(ns, r) {
                    return Ok(b);
                }
                let bytes = self.fetch(r.clone(), tally).await?.0;
                self.cache.insert(ns, r.clone(), bytes)
            }))
            .buffered(RANGES_IN_FLIGHT)
            .try_collect(),
        )
    }

    fn forget_rechecked(&self) {
        self.cache
            .remove_namespace(&super::cache::rechecked_namespace(&self.namespace));
    }

    fn kept(&self, key: &str) -> Option<Bytes> {
        self.cache.get_kept(&self.namespace, key)
    }

    fn keep(&self, key: &str, bytes: &[u8]) {
        self.cache.keep(&self.namespace, key, bytes);
    }

    fn is_stable(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("{} in cold store {}", self.key, self.store.description())
    }
}
