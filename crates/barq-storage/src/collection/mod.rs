//! One collection: its WAL, memtables, sealed segments and the write and read paths.
//!
//! State (under one `RwLock`): the active memtable, memtables being flushed (oldest first), the
//! sealed segments (oldest first, sequence ranges never overlap) and the segments' dead bitmaps.
//! Readers take a consistent snapshot of that state and work without holding the lock.
//!
//! Lock order: WAL lock → state lock → memtable lock. `flush_lock` serializes changes to the
//! segment list (flush installs, compaction installs); `compaction_lock` serializes compactions.
//!
//! Visibility: the newest sequence number of an id wins. Memtables are newer than every segment
//! and newer segments win over older ones, so a point lookup stops at the first source that has
//! the id; search excludes rows shadowed by newer sources (see `shadows` and `search`).

pub(crate) mod compaction;
mod filtered;
pub(crate) mod flush;
pub(crate) mod search;
mod slots;

pub(crate) use slots::{Busy, SegmentSlots, UPLOADING};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use barq_core::{
    CollectionConfig, Document, Error, ErrorKind, Payload, Result, validate_document, validate_id,
};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::manifest::StorageTier;
use crate::manifest::{CollectionEntry, ManifestStore, SegmentEntry};
use crate::memtable::Memtable;
use crate::segment::{Lookup, MmapSource, RangeSource, Segment, SegmentError};
use crate::shadows::{Shadows, match_sorted};
use crate::tiering::{AccessStats, RemoteSource, TierEnv};
use crate::wal::{BatchEncoder, Wal, WalOp, replay};
use crate::{Durability, Options, fsutil};

/// Largest encoded batch accepted in one write.
const MAX_BATCH_BYTES: usize = 1 << 30;

/// A sealed segment, its manifest entry and where its bytes are read from.
#[derive(Debug)]
pub(crate) struct SegmentHandle {
    pub entry: SegmentEntry,
    source: Arc<dyn RangeSource>,
    /// Opened eagerly for local tiers; on first use for Cold (opening reads the footer from the
    /// store, and a store that is down must not stop the database from opening).
    segment: OnceLock<Arc<Segment>>,
    pub access: Arc<AccessStats>,
}

impl SegmentHandle {
    /// The open segment (opening a cold one on first use).
    pub(crate) fn segment(&self) -> Result<&Arc<Segment>> {
        if let Some(s) = self.segment.get() {
            return Ok(s);
        }
        let seg = Arc::new(Segment::open(Arc::clone(&self.source))?);
        Ok(self.segment.get_or_init(|| seg))
    }

    /// The segment if it is open already (no I/O).
    pub(crate) fn loaded_segment(&self) -> Option<&Arc<Segment>> {
        self.segment.get()
    }

    /// Rows, tombstones included (from the manifest: no I/O).
    pub(crate) fn rows(&self) -> u64 {
        self.entry.rows
    }

    /// The cache namespace of a segment's cold ranges. It includes the file checksum, so a
    /// segment id reused after its collection was dropped and recreated never meets cached
    /// ranges of the old one.
    pub(crate) fn namespace(collection: &str, entry: &SegmentEntry) -> String {
        format!("{collection}/{}/{}", entry.id, entry.checksum)
    }

    /// The same segment, open reader and all, with its manifest entry replaced (a remote copy
    /// was recorded).
    pub(crate) fn with_entry(&self, entry: SegmentEntry) -> Arc<SegmentHandle> {
        let segment = OnceLock::new();
        if let Some(s) = self.segment.get() {
            let _ = segment.set(Arc::clone(s));
        }
        Arc::new(SegmentHandle {
            entry,
            source: Arc::clone(&self.source),
            segment,
            access: Arc::clone(&self.access),
        })
    }

    /// A handle for the same segment in another place, keeping its access statistics and, when
    /// given, its already-decoded footer.
    pub(crate) fn relocated(
        &self,
        entry: SegmentEntry,
        source: Arc<dyn RangeSource>,
        footer: Option<crate::segment::format::Footer>,
    ) -> Arc<SegmentHandle> {
        let segment = OnceLock::new();
        if let Some(f) = footer {
            let _ = segment.set(Arc::new(Segment::with_footer(Arc::clone(&source), f)));
        }
        Arc::new(SegmentHandle {
            entry,
            source,
            segment,
            access: Arc::clone(&self.access),
        })
    }
}

pub(crate) type SharedMemtable = Arc<RwLock<Memtable>>;

#[derive(Debug, Clone)]
pub(crate) struct State {
    pub active: SharedMemtable,
    pub immutable: Vec<SharedMemtable>,
    pub segments: Vec<Arc<SegmentHandle>>,
    pub shadows: Option<Arc<Shadows>>,
}

impl State {
    /// Memtables newest first.
    pub(crate) fn memtables_newest_first(&self) -> Vec<SharedMemtable> {
        let mut v = vec![Arc::clone(&self.active)];
        v.extend(self.immutable.iter().rev().cloned());
        v
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Collection {
    config: CollectionConfig,
    /// The payload fields indexed now (`config.indexed_fields` holds those of the creation).
    indexed_fields: RwLock<Arc<Vec<barq_core::IndexedField>>>,
    dir: PathBuf,
    options: Options,
    manifest: Arc<ManifestStore>,
    wal: Wal,
    state: RwLock<State>,
    flush_lock: Mutex<()>,
    compaction_lock: Mutex<()>,
    next_segment_id: AtomicU64,
    flush_requested: AtomicBool,
    /// When the active memtable received its first write not yet flushed ([`monotonic_ms`];
    /// 0 while it is empty): the flusher flushes it once it is `max_unflushed_age` old. Real
    /// elapsed time, not the collection's clock (a test clock that jumps by hours to age
    /// segments for tiering does not flush memtables).
    unflushed_since: AtomicU64,
    dropped: AtomicBool,
    created_at_ms: u64,
    last_flush_error: Mutex<Option<String>>,
    /// A flushed memtable, emptied, whose arenas the next swap reuses (no fresh page faults).
    spare: Mutex<Option<Memtable>>,
    /// Where segments live besides the data directory.
    env: Arc<TierEnv>,
    /// Set when a background worker panicked: writes fail at once.
    poison: Arc<crate::poison::Poison>,
    /// Segments being moved or compacted: no other move or compaction may pick them.
    busy: Busy,
    /// Recall measured by re-running sampled searches exactly.
    pub(crate) recall: crate::recall::RecallStats,
    /// Segment rows that memtables hold newer versions of, for filtered searches and counts.
    pub(crate) mem_shadows: filtered::MemShadows,
    swapped: Mutex<()>,
    swapped_cv: Condvar,
}

/// Milliseconds of a monotonic clock since the first call in this process, plus one (never 0).
pub(crate) fn monotonic_ms() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn segments_dir(dir: &Path) -> PathBuf {
    dir.join("segments")
}

pub(crate) fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}

/// Open the handle of a segment from whichever tier holds it.
pub(crate) fn open_segment(
    env: &TierEnv,
    hot_dir: &Path,
    collection: &str,
    entry: &SegmentEntry,
    access: Arc<AccessStats>,
) -> Result<Arc<SegmentHandle>> {
    let segment = OnceLock::new();
    let source: Arc<dyn RangeSource> = match entry.tier {
        StorageTier::Hot | StorageTier::Warm => {
            let path = env
                .segments_dir(hot_dir, collection, entry.tier)?
                .join(&entry.file_name);
            if !path.exists() {
                return Err(SegmentError::Missing { id: entry.id, path }.into());
            }
            let source = MmapSource::open(&path)?;
            if RangeSource::len(&source) != entry.size_bytes {
                return Err(SegmentError::SizeMismatch {
                    found: RangeSource::len(&source),
                    expected: entry.size_bytes,
                    path,
                }
                .into());
            }
            let source: Arc<dyn RangeSource> = Arc::new(source);
            let _ = segment.set(Arc::new(Segment::open(Arc::clone(&source))?));
            source
        }
        StorageTier::Cold => {
            let key = entry
                .remote_key
                .clone()
                .ok_or(SegmentError::NoRemoteKey(entry.id))?;
            Arc::new(RemoteSource::new(
                env.cold.clone(),
                Arc::clone(&env.cache),
                key,
                SegmentHandle::namespace(collection, entry),
                entry.size_bytes,
            ))
        }
    };
    Ok(Arc::new(SegmentHandle {
        entry: entry.clone(),
        source,
        segment,
        access,
    }))
}

impl Collection {
    /// Create the directories of a new collection. The caller commits the manifest.
    pub(crate) fn create(
        dir: PathBuf,
        config: CollectionConfig,
        options: Options,
        manifest: Arc<ManifestStore>,
        env: Arc<TierEnv>,
        poison: Arc<crate::poison::Poison>,
    ) -> Result<Collection> {
        fsutil::create_dir_durable(&segments_dir(&dir))?;
        fsutil::create_dir_durable(&wal_dir(&dir))?;
        let wal = Wal::create(&wal_dir(&dir), 1, 1)?;
        let memtable = Memtable::new(config.dimension as usize, options.memtable_max_bytes);
        Ok(Collection::assemble(
            dir,
            config,
            options,
            manifest,
            wal,
            memtable,
            Vec::new(),
            1,
            now_ms(),
            env,
            poison,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        dir: PathBuf,
        config: CollectionConfig,
        options: Options,
        manifest: Arc<ManifestStore>,
        wal: Wal,
        memtable: Memtable,
        segments: Vec<Arc<SegmentHandle>>,
        next_segment_id: u64,
        created_at_ms: u64,
        env: Arc<TierEnv>,
        poison: Arc<crate::poison::Poison>,
    ) -> Collection {
        // Rows replayed from the WAL count as written now.
        let unflushed_since = if memtable.is_empty() {
            0
        } else {
            monotonic_ms()
        };
        Collection {
            indexed_fields: RwLock::new(Arc::new(config.indexed_fields.clone())),
            config,
            dir,
            options,
            manifest,
            wal,
            state: RwLock::new(State {
                active: Arc::new(RwLock::new(memtable)),
                immutable: Vec::new(),
                segments,
                shadows: None,
            }),
            flush_lock: Mutex::new(()),
            compaction_lock: Mutex::new(()),
            next_segment_id: AtomicU64::new(next_segment_id),
            flush_requested: AtomicBool::new(false),
            unflushed_since: AtomicU64::new(unflushed_since),
            dropped: AtomicBool::new(false),
            created_at_ms,
            last_flush_error: Mutex::new(None),
            spare: Mutex::new(None),
            env,
            poison,
            busy: Busy::default(),
            recall: crate::recall::RecallStats::default(),
            mem_shadows: filtered::MemShadows::default(),
            swapped: Mutex::new(()),
            swapped_cv: Condvar::new(),
        }
    }

    /// Open an existing collection: sweep its directories, open its segments, replay its WAL.
    pub(crate) fn open(
        dir: PathBuf,
        entry: &CollectionEntry,
        options: Options,
        manifest: Arc<ManifestStore>,
        env: Arc<TierEnv>,
        poison: Arc<crate::poison::Poison>,
        access: &std::collections::HashMap<u64, (u64, u64)>,
    ) -> Result<Collection> {
        let config = CollectionConfig {
            name: entry.name.clone(),
            dimension: entry.dimension,
            metric: entry.metric,
            indexed_fields: entry.indexed_fields.clone(),
        };
        let seg_dir = segments_dir(&dir);
        fsutil::create_dir_durable(&seg_dir)?;
        fsutil::create_dir_durable(&wal_dir(&dir))?;
        let entry = &crate::tiering::reconcile_collection(&env, &dir, entry, &manifest)?;
        let segments = entry
            .segments
            .iter()
            .map(|s| {
                let stats = AccessStats::default();
                if let Some((last, count)) = access.get(&s.id) {
                    stats.last_ms.store(*last, Ordering::Relaxed);
                    stats.count.store(*count, Ordering::Relaxed);
                }
                open_segment(&env, &dir, &entry.name, s, Arc::new(stats))
            })
            .collect::<Result<Vec<_>>>()?;

        let dim = config.dimension as usize;
        let mut memtable = Memtable::new(dim, options.memtable_max_bytes);
        let stats = replay(&wal_dir(&dir), dim, entry.flushed_seq, |seq, op| match op {
            WalOp::Upsert {
                id,
                vector,
                payload,
            } => memtable.upsert(&id, seq, &vector, payload.as_deref()),
            WalOp::Delete { id } => memtable.delete(&id, seq),
        })?;
        if stats.applied > 0 || stats.truncated_bytes > 0 {
            tracing::info!(
                collection = %config.name,
                replayed = stats.applied,
                skipped = stats.skipped,
                truncated_bytes = stats.truncated_bytes,
                "wal replayed"
            );
        }
        let next_seq = stats
            .max_seq
            .max(entry.flushed_seq)
            .max(entry.segments.last().map_or(0, |s| s.max_seq))
            + 1;
        let wal = Wal::create(&wal_dir(&dir), stats.last_generation + 1, next_seq)?;
        Ok(Collection::assemble(
            dir,
            config,
            options,
            manifest,
            wal,
            memtable,
            segments,
            entry.next_segment_id,
            entry.created_at_ms,
            env,
            poison,
        ))
    }

    /// The collection's name, dimension and metric.
    pub(crate) fn config(&self) -> &CollectionConfig {
        &self.config
    }

    /// The collection's settings with the payload fields indexed now.
    pub(crate) fn current_config(&self) -> CollectionConfig {
        CollectionConfig {
            indexed_fields: self.indexed_fields().to_vec(),
            ..self.config.clone()
        }
    }

    /// The payload fields indexed now.
    pub(crate) fn indexed_fields(&self) -> Arc<Vec<barq_core::IndexedField>> {
        Arc::clone(&self.indexed_fields.read())
    }

    /// Add payload fields to index; see `Database::add_indexed_fields`.
    pub(crate) fn add_indexed_fields(
        &self,
        fields: &[barq_core::IndexedField],
    ) -> Result<Vec<barq_core::IndexedField>> {
        self.check_open()?;
        let mut now = self.indexed_fields.write();
        let mut all: Vec<barq_core::IndexedField> = now.to_vec();
        for (i, f) in fields.iter().enumerate() {
            match all.iter().find(|g| g.path == f.path) {
                Some(g) if g.field_type == f.field_type => {}
                Some(g) => {
                    return Err(Error::invalid(format!(
                        "indexed_fields[{i}]: \"{}\" is already indexed as {}, not {}",
                        f.path,
                        g.field_type.name(),
                        f.field_type.name()
                    )));
                }
                None => all.push(f.clone()),
            }
        }
        barq_core::filter::validate_indexed_fields(&all)?;
        if all.len() == now.len() {
            return Ok(all);
        }
        let name = self.config.name.clone();
        let list = all.clone();
        self.manifest.commit(|m| {
            let entry = m
                .collections
                .get_mut(&name)
                .ok_or_else(|| no_such_collection(&name))?;
            entry.indexed_fields = list;
            Ok(())
        })?;
        *now = Arc::new(all.clone());
        Ok(all)
    }

    /// The collection's name.
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// When the collection was created (ms since the Unix epoch).
    pub(crate) fn created_at_ms(&self) -> u64 {
        self.created_at_ms
    }

    /// The collection's directory in the data directory (its Hot tier).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the active memtable asks for a flush: a write filled it, or its oldest unflushed
    /// write is `max_unflushed_age` old.
    pub(crate) fn wants_flush(&self) -> bool {
        if self.is_dropped() {
            return false;
        }
        if self.flush_requested.load(Ordering::Acquire) {
            return true;
        }
        let since = self.unflushed_since.load(Ordering::Acquire);
        self.options.max_unflushed_age.is_some_and(|age| {
            since != 0 && monotonic_ms().saturating_sub(since) >= age.as_millis() as u64
        })
    }

    /// After a failed flush, wait another `max_unflushed_age` before the age asks again (a
    /// full memtable still asks at once).
    pub(crate) fn defer_age_flush(&self) {
        if self.unflushed_since.load(Ordering::Acquire) != 0 {
            self.unflushed_since
                .store(monotonic_ms(), Ordering::Release);
        }
    }

    /// The active memtable was swapped out: it holds no unflushed write. Called under the
    /// WAL lock, as writes are applied.
    pub(crate) fn mark_flushed(&self) {
        self.unflushed_since.store(0, Ordering::Release);
    }

    /// Whether [`Collection::mark_dropped`] ran.
    pub(crate) fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Remember the error of a failed background flush (a stalled writer reports it).
    pub(crate) fn record_flush_error(&self, e: &Error) {
        *self.last_flush_error.lock() = Some(e.to_string());
    }

    /// Run `commit` (the manifest edit that drops this collection) with flushes and
    /// compactions held off, then refuse every later call with `NotFound` and wake stalled
    /// writers.
    pub(crate) fn drop_with(&self, commit: impl FnOnce() -> Result<()>) -> Result<()> {
        let _c = self.compaction_lock.lock();
        let _f = self.flush_lock.lock();
        commit()?;
        self.dropped.store(true, Ordering::Release);
        self.notify_swapped();
        Ok(())
    }

    /// fsync the WAL if it holds unsynced bytes.
    pub(crate) fn sync_wal_if_needed(&self) -> Result<()> {
        if self.wal.unsynced_bytes() > 0 {
            self.wal.sync_all()?;
        }
        Ok(())
    }

    /// fsync the WAL.
    pub(crate) fn sync_wal(&self) -> Result<()> {
        self.wal.sync_all()
    }

    /// Why the WAL takes no more writes (a failed write or fsync), if it does not.
    pub(crate) fn wal_failed(&self) -> Option<String> {
        self.wal.failed()
    }

    /// Bytes of WAL files on disk.
    pub(crate) fn wal_disk_bytes(&self) -> u64 {
        self.wal.disk_bytes()
    }

    /// The sequence number of the last write (0 when there was none).
    pub(crate) fn last_seq(&self) -> u64 {
        self.wal.next_seq().saturating_sub(1)
    }

    /// The WAL, for tests that break it on purpose.
    #[cfg(test)]
    pub(crate) fn wal(&self) -> &Wal {
        &self.wal
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(Error::not_found(format!(
                "collection \"{}\" was dropped",
                self.config.name
            )));
        }
        Ok(())
    }

    /// Upsert a batch. Every document is validated first; an invalid one rejects the batch and
    /// nothing is written. Returns the sequence number of the last write.
    pub(crate) fn upsert(&self, docs: &[Document]) -> Result<u64> {
        self.check_open()?;
        let mut payloads = Vec::with_capacity(docs.len());
        let mut size = 0usize;
        for doc in docs {
            let p = validate_document(&self.config, doc)?;
            size += 16 + doc.id.len() + doc.vector.len() * 4 + p.as_ref().map_or(0, Vec::len);
            payloads.push(p);
        }
        if size > MAX_BATCH_BYTES {
            return Err(Error::invalid(format!(
                "batch of {} documents is {size} bytes, the limit is {MAX_BATCH_BYTES}; send smaller batches",
                docs.len()
            )));
        }
        if docs.is_empty() {
            return Ok(self.wal.next_seq().saturating_sub(1));
        }
        let mut enc = BatchEncoder::new(size);
        for (doc, p) in docs.iter().zip(&payloads) {
            enc.upsert(&doc.id, &doc.vector, p.as_deref());
        }
        self.write(enc, |m, first_seq| {
            for (i, (doc, p)) in docs.iter().zip(payloads).enumerate() {
                m.upsert(&doc.id, first_seq + i as u64, &doc.vector, p.as_deref());
            }
        })
    }

    /// Delete documents by id (a missing id is not an error). Returns the last sequence number.
    pub(crate) fn delete(&self, ids: &[&str]) -> Result<u64> {
        self.check_open()?;
        for id in ids {
            validate_id(id)?;
        }
        if ids.is_empty() {
            return Ok(self.wal.next_seq().saturating_sub(1));
        }
        let size: usize = ids.iter().map(|i| i.len() + 3).sum();
        if size > MAX_BATCH_BYTES {
            return Err(Error::invalid(format!(
                "delete of {} ids is {size} bytes, the limit is {MAX_BATCH_BYTES}; send smaller batches",
                ids.len()
            )));
        }
        let mut enc = BatchEncoder::new(ids.iter().map(|i| i.len() + 4).sum());
        for id in ids {
            enc.delete(id);
        }
        self.write(enc, |m, first_seq| {
            for (i, id) in ids.iter().enumerate() {
                m.delete(id, first_seq + i as u64);
            }
        })
    }

    fn write(&self, mut enc: BatchEncoder, apply: impl FnOnce(&mut Memtable, u64)) -> Result<u64> {
        self.poison.check()?;
        self.stall_while_over_limit()?;
        let count = enc.count();
        let mut last_seq = 0;
        let mut bytes = 0;
        let pos = self.wal.append(&mut enc, |first_seq| {
            let active = Arc::clone(&self.state.read().active);
            let mut m = active.write();
            apply(&mut m, first_seq);
            if self.unflushed_since.load(Ordering::Relaxed) == 0 {
                self.unflushed_since
                    .store(monotonic_ms(), Ordering::Release);
            }
            bytes = m.approx_bytes();
            last_seq = first_seq + count - 1;
        })?;
        if self.options.durability == Durability::Sync {
            self.wal.sync_to(pos)?;
        }
        if bytes >= self.options.memtable_max_bytes {
            self.flush_requested.store(true, Ordering::Release);
        }
        Ok(last_seq)
    }

    /// Back-pressure: while the active memtable holds twice `memtable_max_bytes` (flushing has
    /// not kept up), wait for the flusher to swap it out; give up after `write_stall_timeout`
    /// with nothing written.
    fn stall_while_over_limit(&self) -> Result<()> {
        let limit = self.options.memtable_max_bytes.saturating_mul(2);
        let active_bytes = || self.state.read().active.read().approx_bytes();
        if active_bytes() < limit {
            return Ok(());
        }
        self.flush_requested.store(true, Ordering::Release);
        let started = std::time::Instant::now();
        let deadline = started + self.options.write_stall_timeout;
        let mut g = self.swapped.lock();
        loop {
            let bytes = active_bytes();
            if bytes < limit {
                tracing::debug!(collection = %self.config.name, waited = ?started.elapsed(), "a write was held back until the memtable was swapped");
                return Ok(());
            }
            self.check_open()?;
            self.poison.check()?;
            let now = std::time::Instant::now();
            if now >= deadline {
                let last = self
                    .last_flush_error
                    .lock()
                    .clone()
                    .unwrap_or_else(|| "none".into());
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "writes to collection \"{}\" are stalled: the memtable holds {bytes} bytes and flushing has \
                         not caught up within {:?} (last flush error: {last})",
                        self.config.name, self.options.write_stall_timeout
                    ),
                ));
            }
            self.swapped_cv
                .wait_for(&mut g, (deadline - now).min(Duration::from_millis(100)));
        }
    }

    pub(crate) fn notify_swapped(&self) {
        let _g = self.swapped.lock();
        self.swapped_cv.notify_all();
    }

    /// Snapshot of the state.
    pub(crate) fn snapshot(&self) -> State {
        self.state.read().clone()
    }

    /// A replica: serve the segments `entry` lists (a newer manifest version of the bucket).
    /// A segment it already serves keeps its open reader; a new one is opened Cold; the
    /// shadowing of rows is recomputed when the list changed.
    pub(crate) fn follow(&self, entry: &CollectionEntry) -> Result<()> {
        let snap = self.snapshot();
        let segments = entry
            .segments
            .iter()
            .map(|s| {
                match snap
                    .segments
                    .iter()
                    .find(|h| h.entry.id == s.id && h.entry.checksum == s.checksum)
                {
                    Some(h) if h.entry == *s => Ok(Arc::clone(h)),
                    Some(h) => Ok(h.with_entry(s.clone())),
                    None => open_segment(&self.env, &self.dir, self.name(), s, Arc::default()),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let mut st = self.state.write();
        let same = st.segments.len() == segments.len()
            && st
                .segments
                .iter()
                .zip(&segments)
                .all(|(a, b)| a.entry.id == b.entry.id && a.entry.checksum == b.entry.checksum);
        st.segments = segments;
        if !same {
            st.shadows = None;
        }
        self.next_segment_id
            .store(entry.next_segment_id, Ordering::Release);
        drop(st);
        if **self.indexed_fields.read() != entry.indexed_fields {
            *self.indexed_fields.write() = Arc::new(entry.indexed_fields.clone());
        }
        Ok(())
    }

    /// A replica: the collection is gone from the bucket's manifest.
    pub(crate) fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
        self.notify_swapped();
    }

    /// The newest version of `id`, or `None` if it does not exist or was deleted.
    pub(crate) fn get(&self, id: &str) -> Result<Option<Document>> {
        self.check_open()?;
        validate_id(id)?;
        let snap = self.snapshot();
        for m in snap.memtables_newest_first() {
            let m = m.read();
            if let Some((row, r)) = m.get(id) {
                if r.tombstone {
                    return Ok(None);
                }
                return Ok(Some(Document {
                    id: id.to_owned(),
                    vector: m.vector(row).to_vec(),
                    payload: r.payload.map(decode_payload).transpose()?,
                }));
            }
        }
        for h in snap.segments.iter().rev() {
            let found = h.segment()?.lookup(id)?;
            if found != Lookup::Absent {
                h.access.touch(self.env.clock.now_ms());
            }
            match found {
                Lookup::Absent => continue,
                Lookup::Deleted => return Ok(None),
                Lookup::Found { vector, payload } => {
                    return Ok(Some(Document {
                        id: id.to_owned(),
                        vector,
                        payload: payload.as_deref().map(decode_payload).transpose()?,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// The dead bitmaps for `snap`, computed and cached if needed.
    pub(crate) fn shadows_for(&self, snap: &State) -> Result<Arc<Shadows>> {
        if let Some(s) = &snap.shadows {
            return Ok(Arc::clone(s));
        }
        let shadows = if snap.segments.len() < 2 {
            // A segment's ids strictly increase (the writer refuses anything else): nothing in
            // a lone segment is shadowed, and neither it nor its ids need be read (for a cold
            // segment, fetches of its footer and of its whole id block).
            Shadows {
                dead: snap
                    .segments
                    .iter()
                    .map(|h| Arc::new(vec![0u64; h.rows().div_ceil(64) as usize]))
                    .collect(),
            }
        } else {
            let segs = snap
                .segments
                .iter()
                .map(|h| h.segment().map(|s| &**s))
                .collect::<Result<Vec<&Segment>>>()?;
            Shadows::compute(&segs)?
        };
        let shadows = Arc::new(shadows);
        let mut st = self.state.write();
        let same = st.segments.len() == snap.segments.len()
            && st
                .segments
                .iter()
                .zip(&snap.segments)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if same && st.shadows.is_none() {
            st.shadows = Some(Arc::clone(&shadows));
        }
        Ok(shadows)
    }

    /// Number of live documents.
    pub(crate) fn count(&self) -> Result<u64> {
        self.check_open()?;
        let snap = self.snapshot();
        let shadows = self.shadows_for(&snap)?;
        let mut total: i64 = 0;
        for (h, dead) in snap.segments.iter().zip(&shadows.dead) {
            let tombs = h.segment()?.tombstones()?;
            let rows = h.rows();
            let mut excluded = 0u64;
            for (w, (t, d)) in tombs
                .iter()
                .zip(dead.iter().chain(std::iter::repeat(&0)))
                .enumerate()
            {
                let mut word = t | d;
                let valid = rows.saturating_sub(w as u64 * 64).min(64);
                if valid < 64 {
                    word &= (1u64 << valid) - 1;
                }
                excluded += u64::from(word.count_ones());
            }
            total += (rows - excluded) as i64;
        }
        // Ids in memtables: the newest memtable version counts; a live segment version of the
        // same id was counted above and is taken back out.
        let mut seen = std::collections::HashMap::<Arc<str>, bool>::new();
        for m in snap.memtables_newest_first() {
            for r in m.read().latest() {
                seen.entry(Arc::from(r.id)).or_insert(!r.tombstone);
            }
        }
        let mut ids: Vec<(Arc<str>, bool)> = seen.into_iter().collect();
        ids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        total += ids.iter().filter(|(_, live)| *live).count() as i64;
        let mut resolved = vec![false; ids.len()];
        let keys: Vec<&[u8]> = ids.iter().map(|(id, _)| id.as_bytes()).collect();
        for h in snap.segments.iter().rev() {
            match_sorted(h.segment()?, &keys, |j, _, tombstone| {
                if !resolved[j] {
                    resolved[j] = true;
                    if !tombstone {
                        total -= 1;
                    }
                }
            })?;
        }
        Ok(total.max(0) as u64)
    }

    /// Whether any of `memtables` holds a version (or a tombstone) of `id`.
    pub(crate) fn in_memtables(memtables: &[SharedMemtable], id: &str) -> bool {
        memtables.iter().any(|m| m.read().contains(id))
    }

    pub(crate) fn alloc_segment_id(&self) -> u64 {
        self.next_segment_id.fetch_add(1, Ordering::AcqRel)
    }

    pub(crate) fn segment_path(&self, id: u64) -> PathBuf {
        segments_dir(&self.dir).join(segment_file_name(id))
    }
}

/// The manifest entry of segment `id`, just written (`info`) and Hot.
pub(crate) fn hot_entry(id: u64, info: &crate::segment::SegmentInfo) -> SegmentEntry {
    SegmentEntry {
        id,
        file_name: segment_file_name(id),
        size_bytes: info.size_bytes,
        rows: info.rows,
        min_seq: info.min_seq,
        max_seq: info.max_seq,
        created_at_ms: info.created_at_ms,
        tier: StorageTier::Hot,
        remote_key: None,
        checksum: crate::manifest::checksum_string(info.crc),
        pinned: false,
        moved_at_ms: None,
    }
}

/// File name of segment `id`.
pub(crate) fn segment_file_name(id: u64) -> String {
    format!("{id:020}.seg")
}

pub(crate) fn decode_payload(bytes: &[u8]) -> Result<Payload> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::corruption(format!("stored payload is not a JSON object: {e}")))
}

/// Map "no such collection" consistently.
pub(crate) fn no_such_collection(name: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("collection \"{name}\" does not exist"),
    )
}
