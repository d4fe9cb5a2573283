//! The local cache of cold data: verified byte ranges of cold segments, kept as files on local
//! disk under a byte budget, evicted least-recently-used.
//!
//! Names: a *namespace* is one cold segment (`<collection>/<segment-id>`); an *entry* is one
//! cached range of it, stored as one file and memory-mapped. Every entry was verified against a
//! CRC32C before it was inserted, so a hit needs no second check.
//!
//! Invariants:
//! - a range a reader holds is never evicted from under it: readers get `Bytes` that share the
//!   entry's mapping, and eviction skips entries whose mapping is shared (an entry is "in use");
//! - eviction runs on insert, before the budget is exceeded, down to 90 % of the budget; if
//!   every entry is in use the cache may sit above budget until readers let go;
//! - the cache is disposable: it is emptied when the database opens.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use barq_core::{Error, Result};
use bytes::Bytes;
use parking_lot::Mutex;

/// Ranges at least this large are written to the cache in the background.
const BACKGROUND_INSERT_BYTES: u64 = 4 << 20;
/// Background fills at once; beyond this a large range is written by the reader itself.
const MAX_BACKGROUND_FILLS: usize = 2;
/// Distinguishes the files of caches opened one after another in one process (a fill thread
/// of a closed database must never overwrite a file of the next one).
static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A cache file, mapped.
#[derive(Debug)]
struct Mapped {
    map: memmap2::Mmap,
    path: PathBuf,
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // The entry was evicted or replaced and no reader holds it any more.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Lets `Bytes` share a mapping; the `Arc` count tells the cache whether a reader holds it.
struct Share(Arc<Mapped>);

impl AsRef<[u8]> for Share {
    fn as_ref(&self) -> &[u8] {
        &self.0.map
    }
}

#[derive(Debug)]
struct Entry {
    len: u64,
    file: Arc<Mapped>,
    tick: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// namespace → offset → entry
    entries: HashMap<String, BTreeMap<u64, Entry>>,
    /// LRU order: tick → (namespace, offset)
    lru: BTreeMap<u64, (String, u64)>,
    tick: u64,
    bytes: u64,
    next_file: u64,
    /// Verified ranges whose background fill is still running: served from memory meanwhile,
    /// so that reads right after a large fetch do not go back to the store.
    filling: HashMap<String, Vec<(u64, Bytes)>>,
}

/// Counters of the cache.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Reads served from the cache.
    pub hits: AtomicU64,
    /// Reads that had to go to the store.
    pub misses: AtomicU64,
    /// Entries evicted.
    pub evictions: AtomicU64,
}

/// See the module docs.
#[derive(Debug)]
pub struct ColdCache {
    dir: PathBuf,
    budget: u64,
    instance: u64,
    fills: std::sync::atomic::AtomicUsize,
    inner: Mutex<Inner>,
    /// The metadata ranges kept across restarts (none in a cache made without them).
    kept: Option<super::kept::KeptRanges>,
    /// Counters.
    pub counters: CacheCounters,
}

impl ColdCache {
    /// A cache in `dir` (emptied now) holding at most `budget` bytes.
    pub fn open(dir: &Path, budget: u64) -> Result<ColdCache> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| Error::io(format_args!("empty cache {}", dir.display()), e))?;
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format_args!("create cache {}", dir.display()), e))?;
        Ok(ColdCache {
            dir: dir.to_owned(),
            budget,
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            fills: std::sync::atomic::AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
            kept: None,
            counters: CacheCounters::default(),
        })
    }

    /// This cache with `kept` holding the ranges of [`get_kept`](Self::get_kept) and
    /// [`keep`](Self::keep).
    pub fn with_kept(mut self, kept: super::kept::KeptRanges) -> Self {
        self.kept = Some(kept);
        self
    }

    /// A metadata range of `ns` kept across restarts as `key`, if any.
    pub fn get_kept(&self, ns: &str, key: &str) -> Option<Bytes> {
        self.kept.as_ref()?.get(ns, key)
    }

    /// Keep a metadata range of `ns` across restarts as `key` (verified bytes only).
    pub fn keep(&self, ns: &str, key: &str, bytes: &[u8]) {
        if let Some(k) = &self.kept {
            k.put(ns, key, bytes);
        }
    }

    /// Segments with metadata kept across restarts, and the bytes kept.
    pub fn kept_usage(&self) -> (u64, u64) {
        self.kept.as_ref().map_or((0, 0), |k| k.usage())
    }

    /// Forget the kept metadata of every namespace for which `keep` is false.
    pub fn retain_kept(&self, keep: impl Fn(&str) -> bool) {
        if let Some(k) = &self.kept {
            k.retain(keep);
        }
    }

    /// Bytes currently cached.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().bytes
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// A cached, verified range of `ns` that covers `range`, if any.
    pub fn get(&self, ns: &str, range: &Range<u64>) -> Option<Bytes> {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        // Entries may overlap (a small range read before the whole block that holds it), so
        // the nearest entry below `range.start` need not be the one that covers it.
        let found = inner.entries.get_mut(ns).and_then(|m| {
            m.range_mut(..=range.start)
                .rev()
                .find(|(off, e)| **off + e.len >= range.end)
                .map(|(off, e)| (*off, e))
        });
        let Some((off, entry)) = found else {
            let pending = inner.filling.get(ns).and_then(|v| {
                v.iter()
                    .find(|(off, b)| *off <= range.start && off + b.len() as u64 >= range.end)
                    .map(|(off, b)| {
                        b.slice((range.start - off) as usize..(range.end - off) as usize)
                    })
            });
            let counter = if pending.is_some() {
                &self.counters.hits
            } else {
                &self.counters.misses
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return pending;
        };
        inner.lru.remove(&entry.tick);
        inner.tick += 1;
        entry.tick = inner.tick;
        inner.lru.insert(inner.tick, (ns.to_owned(), off));
        let bytes = Bytes::from_owner(Share(Arc::clone(&entry.file)));
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        Some(bytes.slice((range.start - off) as usize..(range.end - off) as usize))
    }

    /// Insert verified `bytes` for `range` of `ns`. Small ranges are written and mapped right
    /// away and returned as cached bytes; large ones (whole blocks) are returned as they are and
    /// written to the cache by a background thread, so a first cold read does not wait for the
    /// local write. Ranges larger than the budget are not cached.
    pub fn insert(self: &Arc<Self>, ns: &str, range: Range<u64>, bytes: Bytes) -> Result<Bytes> {
        let len = bytes.len() as u64;
        if len == 0 || len > self.budget {
            return Ok(bytes);
        }
        if len >= BACKGROUND_INSERT_BYTES
            && self.fills.fetch_add(1, Ordering::AcqRel) < MAX_BACKGROUND_FILLS
        {
            let range_start = range.start;
            let (cache, fill_ns, out) = (Arc::clone(self), ns.to_owned(), bytes.clone());
            self.inner
                .lock()
                .filling
                .entry(fill_ns.clone())
                .or_default()
                .push((range.start, bytes.clone()));
            let spawned = std::thread::Builder::new()
                .name("barq-cache-fill".into())
                .spawn(move || {
                    let start = range.start;
                    if let Err(e) = cache.insert_now(&fill_ns, range, bytes) {
                        tracing::warn!(error = %e, "could not fill the cold cache");
                    }
                    cache.end_fill(&fill_ns, start);
                    cache.fills.fetch_sub(1, Ordering::AcqRel);
                });
            if let Err(e) = spawned {
                self.end_fill(ns, range_start);
                self.fills.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(error = %e, "could not start a cache fill");
            }
            return Ok(out);
        }
        if len >= BACKGROUND_INSERT_BYTES {
            self.fills.fetch_sub(1, Ordering::AcqRel);
        }
        self.insert_now(ns, range, bytes)
    }

    /// Forget the in-memory copy of a finished (or abandoned) background fill.
    fn end_fill(&self, ns: &str, start: u64) {
        let mut g = self.inner.lock();
        if let Some(v) = g.filling.get_mut(ns) {
            v.retain(|(off, _)| *off != start);
            if v.is_empty() {
                g.filling.remove(ns);
            }
        }
    }

    /// Write, map and register an entry; returns the cached bytes.
    pub fn insert_now(&self, ns: &str, range: Range<u64>, bytes: Bytes) -> Result<Bytes> {
        let len = bytes.len() as u64;
        if len == 0 || len > self.budget {
            return Ok(bytes);
        }
        let file_no = {
            let mut g = self.inner.lock();
            g.next_file += 1;
            g.next_file
        };
        let path = self
            .dir
            .join(format!("{}-{file_no:016}.bin", self.instance));
        std::fs::write(&path, &bytes)
            .map_err(|e| Error::io(format_args!("write cache file {}", path.display()), e))?;
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::io(format_args!("open {}", path.display()), e))?;
        // SAFETY: cache files are written once above and never modified; they are unlinked
        // only when the last mapping of them is dropped.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Error::io(format_args!("mmap {}", path.display()), e))?;
        let mapped = Arc::new(Mapped { map, path });
        let mut g = self.inner.lock();
        let inner = &mut *g;
        self.evict_locked(inner, self.budget.saturating_sub(len));
        inner.tick += 1;
        let tick = inner.tick;
        let old = inner.entries.entry(ns.to_owned()).or_default().insert(
            range.start,
            Entry {
                len,
                file: Arc::clone(&mapped),
                tick,
            },
        );
        if let Some(old) = old {
            inner.lru.remove(&old.tick);
            inner.bytes -= old.len;
        }
        inner.lru.insert(tick, (ns.to_owned(), range.start));
        inner.bytes += len;
        Ok(Bytes::from_owner(Share(mapped)))
    }

    /// Evict least-recently-used entries that no reader holds until at most `target` bytes
    /// remain (when over the budget, down to 90 % of it).
    fn evict_locked(&self, inner: &mut Inner, target: u64) {
        if inner.bytes <= target {
            return;
        }
        let target = target.min(self.budget / 10 * 9);
        let ticks: Vec<u64> = inner.lru.keys().copied().collect();
        for tick in ticks {
            if inner.bytes <= target {
                break;
            }
            let Some((ns, off)) = inner.lru.get(&tick).cloned() else {
                continue;
            };
            let Some(map) = inner.entries.get_mut(&ns) else {
                continue;
            };
            let in_use = map
                .get(&off)
                .is_some_and(|e| Arc::strong_count(&e.file) > 1);
            if in_use {
                continue;
            }
            if let Some(e) = map.remove(&off) {
                inner.bytes -= e.len;
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            }
            if map.is_empty() {
                inner.entries.remove(&ns);
            }
            inner.lru.remove(&tick);
        }
    }

    /// Drop every entry of `ns` (its segment was hydrated, compacted away or deleted). Entries a
    /// reader holds stay valid for that reader.
    pub fn remove_namespace(&self, ns: &str) {
        if let Some(k) = &self.kept {
            k.remove(ns);
        }
        let mut g = self.inner.lock();
        for ns in [ns.to_owned(), rechecked_namespace(ns)] {
            g.filling.remove(&ns);
            if let Some(map) = g.entries.remove(&ns) {
                for e in map.values() {
                    g.lru.remove(&e.tick);
                    g.bytes -= e.len;
                }
            }
        }
    }
}

/// The namespace of a segment's ranges whose reader checks them at every use
/// ([`RangeSource::read_many_rechecked`](crate::segment::RangeSource::read_many_rechecked)),
/// apart from its verified ranges so that no verified read is ever answered from them.
pub(crate) fn rechecked_namespace(ns: &str) -> String {
    format!("{ns}#rechecked")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn hits_cover_sub_ranges_and_misses_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Arc::new(ColdCache::open(dir.path(), 1000).expect("open"));
        assert!(c.get("s", &(0..10)).is_none());
        c.insert("s", 100..200, bytes(100, 7)).expect("insert");
        let got = c.get("s", &(150..160)).expect("covered");
        assert_eq!(&got[..], &[7u8; 10]);
        assert!(c.get("s", &(150..201)).is_none(), "not covered");
        assert!(c.get("t", &(150..160)).is_none(), "other namespace");
        assert_eq!(c.counters.hits.load(Ordering::Relaxed), 1);
        assert_eq!(c.counters.misses.load(Ordering::Relaxed), 3);
        assert_eq!(c.bytes(), 100);
    }

    #[test]
    fn a_covering_entry_below_a_smaller_one_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Arc::new(ColdCache::open(dir.path(), 10_000).expect("open"));
        c.insert("s", 0..1000, bytes(1000, 1)).expect("insert");
        c.insert("s", 500..510, bytes(10, 2)).expect("insert");
        let got = c.get("s", &(600..700)).expect("covered by the first entry");
        assert_eq!(&got[..], &[1u8; 100]);
    }

    #[test]
    fn lru_eviction_respects_budget_and_readers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Arc::new(ColdCache::open(dir.path(), 300).expect("open"));
        c.insert("s", 0..100, bytes(100, 1)).expect("insert");
        c.insert("s", 100..200, bytes(100, 2)).expect("insert");
        c.insert("s", 200..300, bytes(100, 3)).expect("insert");
        // Touch the first so the second is the least recently used; hold the third.
        c.get("s", &(0..1)).expect("hit");
        let held = c.get("s", &(200..300)).expect("hit");
        c.insert("s", 300..400, bytes(100, 4)).expect("insert");
        assert!(c.bytes() <= 300, "{}", c.bytes());
        assert!(c.get("s", &(100..101)).is_none(), "LRU entry evicted");
        assert!(c.get("s", &(200..201)).is_some(), "held entry kept");
        assert_eq!(&held[..3], &[3, 3, 3], "reader's bytes stay valid");
        // A file that does not fit at all is returned but not cached.
        let big = c.insert("s", 0..1000, bytes(1000, 9)).expect("insert");
        assert_eq!(big.len(), 1000);
        assert!(c.get("s", &(500..501)).is_none());
    }

    #[test]
    fn evicted_files_are_removed_once_unused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Arc::new(ColdCache::open(&dir.path().join("c"), 150).expect("open"));
        let held = c.insert("s", 0..100, bytes(100, 1)).expect("insert");
        c.remove_namespace("s");
        assert_eq!(
            std::fs::read_dir(dir.path().join("c")).expect("ls").count(),
            1,
            "held by a reader"
        );
        drop(held);
        assert_eq!(
            std::fs::read_dir(dir.path().join("c")).expect("ls").count(),
            0
        );
        assert_eq!(c.bytes(), 0);
    }
}
