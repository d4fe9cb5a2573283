//! [`Database`]: the embedded API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use barq_core::{CollectionConfig, Document, Error, ErrorKind, Metric, Result, SearchHit};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::background::Background;
use crate::collection::compaction::CompactionOutcome;
use crate::collection::flush::FlushOutcome;
use crate::collection::search::{SearchRequest, SearchStats};
use crate::collection::{Collection, no_such_collection};
use crate::lock::DirLock;
use crate::manifest::{CollectionEntry, ManifestStore, StorageTier};
use crate::options::FailPoints;
use crate::shared::Shared;
use crate::tier::TierStats;
use crate::tiering::state::AccessFile;
use crate::tiering::{Clock, ColdStoreSpec, SystemClock, TierEnv, TieringManager};
use crate::{Options, fsutil};

impl Shared {
    /// A background worker panicked: poison the database and wake the writers that wait for
    /// a flush, so that they fail at once instead of at their stall timeout.
    pub(crate) fn poison(&self, why: String) {
        tracing::error!(reason = %why, "background worker panicked; the database is poisoned and takes no more writes");
        self.poison.set(why);
        for c in self.all() {
            c.notify_swapped();
        }
    }

    fn all(&self) -> Vec<Arc<Collection>> {
        self.collections.read().values().cloned().collect()
    }

    /// Flush every collection whose memtable went over the limit.
    pub(crate) fn flush_requested(&self) {
        for c in self.all() {
            if c.wants_flush() {
                self.env
                    .failpoints
                    .panic_if(crate::options::FP_FLUSHER_PANIC);
                if let Err(e) = c.flush() {
                    tracing::error!(collection = %c.name(), error = %e, "background flush failed");
                    c.record_flush_error(&e);
                    c.defer_age_flush();
                }
            }
        }
    }

    /// One size-tiered compaction pass over every collection.
    pub(crate) fn compact_where_due(&self) {
        for c in self.all() {
            if c.is_dropped() {
                continue;
            }
            // A merge when one is due, else the indexing of one large unindexed segment that
            // has been sealed for `index_delay`.
            let delay = self.options.index_delay;
            let done = c.compact_size_tiered().and_then(|merged| match merged {
                Some(o) => Ok(Some(o)),
                None => c.index_one(Some(delay), false),
            });
            if let Err(e) = done {
                tracing::error!(collection = %c.name(), error = %e, "background compaction failed");
            }
        }
    }

    /// One tiering maintenance pass (the periodic loop).
    pub(crate) fn tiering_maintenance(&self) {
        match self.tiering.run_maintenance() {
            Ok(r) if !r.moves_failed.is_empty() || r.gc_error.is_some() => {
                tracing::warn!(done = r.moves_done.len(), failed = r.moves_failed.len(), gc_error = ?r.gc_error, "tiering maintenance finished with errors")
            }
            Ok(r) => tracing::debug!(
                done = r.moves_done.len(),
                bytes = r.bytes_moved,
                "tiering maintenance finished"
            ),
            Err(e) => tracing::error!(error = %e, "tiering maintenance failed"),
        }
    }

    /// fsync every WAL with unsynced bytes.
    pub(crate) fn share_with_bucket(&self) {
        if let Err(e) = self.tiering.share_with_bucket() {
            // Status names every failure; the log names each new one (a pass runs every
            // upload_interval and would repeat it).
            if self.tiering.note_share_error(&e) {
                tracing::warn!(error = %e, "uploads and publishing to the bucket wait");
            }
        }
    }

    /// A replica's poll: apply the newest good manifest version of the bucket, if it is new.
    pub(crate) fn follow_bucket(&self) {
        let Some((follower, _)) = &self.replica else {
            return;
        };
        let _one = follower.one_at_a_time();
        match follower.next_version(&self.env) {
            Ok(Some(p)) => match self.apply_followed(&p) {
                Ok(()) => {
                    tracing::debug!(
                        version = p.manifest.version,
                        "replica follows a new manifest version"
                    );
                    self.poison.set_writer_url(p.writer_url.clone());
                    follower.applied(&p);
                }
                Err(e) => {
                    tracing::error!(version = p.manifest.version, error = %e, "could not apply a manifest version of the bucket");
                    follower.apply_failed(&e);
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not poll the bucket"),
        }
    }

    /// Serve the collections and segments of `p`.
    fn apply_followed(&self, p: &crate::bucket::PublishedManifest) -> Result<()> {
        let mut m = p.manifest.clone();
        crate::bucket::all_cold(&mut m, self.env.clock.now_ms())?;
        self.manifest.replace(m.clone())?;
        let root = self.dir.join("collections");
        {
            let mut map = self.collections.write();
            let gone: Vec<String> = map
                .keys()
                .filter(|k| !m.collections.contains_key(*k))
                .cloned()
                .collect();
            for name in gone {
                if let Some(c) = map.remove(&name) {
                    c.mark_dropped();
                    let _ = std::fs::remove_dir_all(c.dir());
                }
            }
            for (name, entry) in &m.collections {
                if let Some(c) = map.get(name)
                    && c.created_at_ms() == entry.created_at_ms
                {
                    c.follow(entry)?;
                    continue;
                }
                if let Some(old) = map.remove(name) {
                    old.mark_dropped();
                    let _ = std::fs::remove_dir_all(old.dir());
                }
                let c = Collection::open(
                    root.join(name),
                    entry,
                    self.options.clone(),
                    Arc::clone(&self.manifest),
                    Arc::clone(&self.env),
                    Arc::clone(&self.poison),
                    &Default::default(),
                )?;
                map.insert(name.clone(), Arc::new(c));
            }
        }
        // Open new segments by their footers now, so that no query waits for them.
        for c in self.all() {
            for h in c.snapshot().segments {
                if h.loaded_segment().is_none()
                    && let Err(e) = h.segment()
                {
                    tracing::warn!(collection = %c.name(), segment = h.entry.id, error = %e, "could not read a segment's footer");
                }
            }
        }
        Ok(())
    }

    pub(crate) fn sync_wals(&self) {
        for c in self.all() {
            if let Err(e) = c.sync_wal_if_needed() {
                tracing::error!(collection = %c.name(), error = %e, "wal sync failed");
            }
        }
    }
}

/// What [`Database::delete_reporting`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteReport {
    /// Ids that existed and are deleted now.
    pub deleted: Vec<String>,
    /// Ids that did not exist (nothing was written for them).
    pub missing: Vec<String>,
}

/// Statistics of one collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionStats {
    /// Name.
    pub name: String,
    /// Vector dimension.
    pub dimension: u32,
    /// Distance metric.
    pub metric: Metric,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Live documents.
    pub documents: u64,
    /// Sealed segments.
    pub segments: u64,
    /// Bytes of sealed segments.
    pub segment_bytes: u64,
    /// Rows in sealed segments (shadowed versions and tombstones included).
    pub segment_rows: u64,
    /// Rows in memtables.
    pub memtable_rows: u64,
    /// Approximate bytes held by memtables.
    pub memtable_bytes: u64,
    /// Bytes of WAL files on disk.
    pub wal_bytes: u64,
    /// Last sequence number written.
    pub last_seq: u64,
    /// Segments and bytes per tier.
    pub tiers: BTreeMap<StorageTier, TierStats>,
    /// Segments with an IVF index.
    #[serde(default)]
    pub indexed_segments: u64,
    /// Rows searched exactly by every query: memtables and segments without an index.
    #[serde(default)]
    pub unindexed_rows: u64,
    /// Bytes of the segments' indexes (heads, code extents, row maps).
    #[serde(default)]
    pub index_bytes: u64,
    /// Each sealed segment, oldest first.
    #[serde(default)]
    pub segment_list: Vec<SegmentStats>,
    /// Searches through an index re-run exactly to measure recall (since open).
    #[serde(default)]
    pub recall_samples: u64,
    /// Their recall@k: the exact top-k hits the indexed searches returned, out of all exact
    /// top-k hits; `None` before the first sample.
    #[serde(default)]
    pub sampled_recall: Option<f64>,
    /// Payload fields the collection indexes.
    #[serde(default)]
    pub indexed_fields: Vec<barq_core::IndexedField>,
}

/// One sealed segment in [`CollectionStats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentStats {
    /// The segment's id.
    pub id: u64,
    /// Where it lives.
    pub tier: StorageTier,
    /// Rows, tombstones included.
    pub rows: u64,
    /// File size.
    pub bytes: u64,
    /// Whether it carries an IVF index; `null` for a cold segment whose footer was not read.
    pub indexed: Option<bool>,
    /// Clusters of its index, when known.
    pub clusters: Option<u32>,
    /// Bytes of its index (head, code extents, row map).
    pub index_bytes: u64,
}

/// Statistics of the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseStats {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Every collection.
    pub collections: Vec<CollectionStats>,
}

/// What a database runs with that is not a setting: the cold store, the clock, fault injection.
#[derive(Debug, Clone)]
pub(crate) struct Components {
    /// `None`: a local directory, `DATA_DIR/cold`.
    pub cold_store: Option<ColdStoreSpec>,
    pub clock: Arc<dyn Clock>,
    pub failpoints: FailPoints,
}

impl Default for Components {
    fn default() -> Self {
        Components {
            cold_store: None,
            clock: Arc::new(SystemClock),
            failpoints: FailPoints::default(),
        }
    }
}

/// Opens a [`Database`] with its [`Options`] and the components it runs with.
///
/// ```no_run
/// # fn main() -> barq_core::Result<()> {
/// use barq_storage::{Database, Options};
/// let db = Database::builder("data").options(Options::default()).open()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `open` is called"]
pub struct DatabaseBuilder {
    path: PathBuf,
    options: Options,
    components: Components,
}

impl DatabaseBuilder {
    /// The settings. Default [`Options::default`].
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// The cold tier: an object store and a key prefix. Default: a local directory,
    /// `DATA_DIR/cold`, so that tiering works without a cloud account.
    pub fn cold_store(mut self, spec: ColdStoreSpec) -> Self {
        self.components.cold_store = Some(spec);
        self
    }

    /// The clock the tiering policy and the segment timestamps read. Default the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.components.clock = clock;
        self
    }

    /// Fault injection for crash tests (effective with the `failpoints` feature only).
    #[doc(hidden)]
    pub fn failpoints(mut self, failpoints: FailPoints) -> Self {
        self.components.failpoints = failpoints;
        self
    }

    /// Open (or create) the database; see [`Database::open`].
    pub fn open(self) -> Result<Database> {
        Database::open_with(self.path, self.options, self.components, None)
    }

    /// Open a read-only replica of the database whose bucket is the builder's
    /// [`cold_store`](Self::cold_store): it follows the newest manifest version a writer
    /// published there (polling every `poll_interval`), opens new segments by their footers
    /// and serves reads from the bucket through its own local cache in the builder's path (a
    /// directory of its own, never a writer's). Writes and tiering operations fail with
    /// [`ErrorKind::ReadOnly`]. The first poll happens before this returns; if the bucket does
    /// not answer, the replica serves the version it served last and polls on.
    pub fn open_replica(mut self, poll_interval: std::time::Duration) -> Result<Database> {
        let spec =
            self.components.cold_store.clone().ok_or_else(|| {
                Error::invalid("a replica needs the bucket to follow (a store URL)")
            })?;
        if poll_interval.is_zero() {
            return Err(Error::invalid(
                "the replica poll interval must be greater than 0",
            ));
        }
        let dir = &self.path;
        let marker = dir.join(REPLICA_FILE);
        if dir.join(crate::manifest::MANIFEST_FILE).exists() && !marker.exists() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} holds a writer's data directory; a replica needs a directory of its own",
                    dir.display()
                ),
            ));
        }
        fsutil::create_dir_durable(dir)?;
        fsutil::write_atomic(&marker, format!("{}\n", spec.description).as_bytes())?;
        let o = &mut self.options;
        o.background_compaction = false;
        o.tiering.maintenance_interval = None;
        o.tiering.upload_on_seal = Some(false);
        let follower = crate::bucket::Follower::new(spec.description.clone());
        let db = Database::open_with(
            self.path,
            self.options,
            self.components,
            Some((follower, poll_interval)),
        )?;
        db.shared.follow_bucket();
        Ok(db)
    }

    /// Build a new data directory at the builder's path from the newest manifest version in
    /// the bucket of its [`cold_store`](Self::cold_store), then open it: every collection with
    /// its settings and tiering overrides, every segment Cold (read lazily by range, hydrated
    /// by policy). It reads metadata only. The path must be absent or empty. The database
    /// opened is the bucket's writer from then on: its first publish claims a new epoch, which
    /// fences a writer still running on the same bucket.
    pub fn restore(self) -> Result<(Database, crate::bucket::RestoreReport)> {
        let spec = self.components.cold_store.clone().ok_or_else(|| {
            Error::invalid("restore needs the store to read from (a cold store URL)")
        })?;
        let now = self.components.clock.now_ms();
        let report = crate::bucket::restore::restore_manifest(&self.path, &spec, now)?;
        let db = self.open()?;
        tracing::info!(version = report.version, segments = report.segments, store = %report.store, took_ms = report.took_ms, "restored from the bucket");
        Ok((db, report))
    }
}

/// An open Barq DB database: one data directory, exclusively locked.
///
/// `Database` is `Send + Sync`; share it with `Arc`. Dropping it closes it (see
/// [`Database::close`] to see errors).
#[derive(Debug)]
pub struct Database {
    shared: Arc<Shared>,
    background: Mutex<Option<Background>>,
    _lock: DirLock,
}

impl Database {
    /// Open (or create) the database in `path` with `options`, the local cold tier
    /// (`DATA_DIR/cold`) and the system clock. [`Database::builder`] gives the other components.
    ///
    /// Takes the directory's exclusive lock (a second opener fails with
    /// [`ErrorKind::Conflict`] naming the holder's pid), loads the manifest, sweeps temporary
    /// files and files no manifest entry references, opens segments (reading only their
    /// footers) and replays each collection's WAL.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Database> {
        Database::builder(path).options(options).open()
    }

    /// A builder for a database in `path`: its options and the components it runs with (cold
    /// store, clock).
    pub fn builder(path: impl AsRef<Path>) -> DatabaseBuilder {
        DatabaseBuilder {
            path: path.as_ref().to_owned(),
            options: Options::default(),
            components: Components::default(),
        }
    }

    fn open_with(
        dir: PathBuf,
        options: Options,
        components: Components,
        replica: Option<(crate::bucket::Follower, std::time::Duration)>,
    ) -> Result<Database> {
        if options.memtable_max_bytes == 0 {
            return Err(Error::invalid("memtable_max_bytes must be greater than 0"));
        }
        options.index.validate()?;
        refuse_foreign_directory(&dir)?;
        fsutil::create_dir_durable(&dir)?;
        let lock = DirLock::acquire(&dir)?;
        fsutil::sweep_tmp_files(&dir)?;
        let manifest = Arc::new(ManifestStore::open(&dir)?);
        let snapshot = manifest.snapshot()?;
        let coll_root = dir.join("collections");
        fsutil::create_dir_durable(&coll_root)?;
        sweep_unknown_collections(&coll_root, &snapshot.collections)?;
        if let Some(w) = &options.tiering.warm_dir {
            let warm_root = w.join("collections");
            fsutil::create_dir_durable(&warm_root)?;
            sweep_unknown_collections(&warm_root, &snapshot.collections)?;
        }
        let env = Arc::new(TierEnv::new(&dir, &options.tiering, components)?);
        // Metadata kept for segments that no longer exist (a drop, a crash before the cleanup).
        let known: std::collections::HashSet<String> = snapshot
            .collections
            .iter()
            .flat_map(|(name, c)| {
                c.segments
                    .iter()
                    .map(move |e| crate::collection::SegmentHandle::namespace(name, e))
            })
            .collect();
        env.cache.retain_kept(|ns| known.contains(ns));
        env.check_at_open()?;
        let access = AccessFile::load(&dir);
        let poison = Arc::new(crate::poison::Poison::default());
        if replica.is_some() {
            poison.set_read_only(format!(
                "this node is a read-only replica of {}: send writes and tiering operations to \
                 the node that writes to that bucket",
                env.cold.description()
            ));
        }
        let mut collections = BTreeMap::new();
        for (name, entry) in &snapshot.collections {
            let c = Collection::open(
                coll_root.join(name),
                entry,
                options.clone(),
                Arc::clone(&manifest),
                Arc::clone(&env),
                Arc::clone(&poison),
                access.collections.get(name).unwrap_or(&Default::default()),
            )?;
            collections.insert(name.clone(), Arc::new(c));
        }
        tracing::info!(
            data_dir = %dir.display(),
            cold_store = %env.cold.description(),
            warm_dir = ?env.warm_dir,
            "database opened"
        );
        let collections = Arc::new(RwLock::new(collections));
        let tiering = TieringManager::new(
            dir.clone(),
            Arc::clone(&manifest),
            Arc::clone(&collections),
            Arc::clone(&env),
            Arc::clone(&poison),
        );
        let shared = Arc::new(Shared {
            tiering,
            dir,
            recall: crate::recall::RecallSampler::new(options.recall_sample_rate),
            options,
            manifest,
            collections,
            env,
            poison,
            replica,
        });
        let background =
            start_background(&shared).map_err(|e| Error::io("start background threads", e))?;
        Ok(Database {
            shared,
            background: Mutex::new(Some(background)),
            _lock: lock,
        })
    }

    /// The tiering API: moves, pins, maintenance, status.
    pub fn tiering(&self) -> TieringManager {
        self.shared.tiering.clone()
    }

    /// Why the database takes no more writes, if it does not: a background worker panicked,
    /// or a write or fsync of the manifest or of a collection's WAL failed.
    pub fn poisoned(&self) -> Option<String> {
        if let Some(why) = self.shared.poison.reason() {
            return Some(why.to_owned());
        }
        if let Some(why) = self.shared.manifest.failed() {
            return Some(format!("a manifest write failed: {why}"));
        }
        let collections = self.shared.collections.read();
        let mut names: Vec<_> = collections.keys().collect();
        names.sort();
        names.into_iter().find_map(|name| {
            collections[name]
                .wal_failed()
                .map(|why| format!("a write to the WAL of collection {name:?} failed: {why}"))
        })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        self.shared
            .collections
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| no_such_collection(name))
    }

    /// Create a collection. Fails with [`ErrorKind::Conflict`] if it exists.
    pub fn create_collection(&self, config: CollectionConfig) -> Result<()> {
        self.shared.poison.check()?;
        let config = CollectionConfig::new(config.name, config.dimension, config.metric)?
            .with_indexed_fields(config.indexed_fields)?;
        let mut map = self.shared.collections.write();
        if map.contains_key(&config.name) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("collection \"{}\" already exists", config.name),
            ));
        }
        let dir = self.shared.dir.join("collections").join(&config.name);
        if dir.exists() {
            // Left over by a crash before a create was committed or after a drop was.
            std::fs::remove_dir_all(&dir)
                .map_err(|e| Error::io(format_args!("remove {}", dir.display()), e))?;
        }
        let c = Collection::create(
            dir,
            config.clone(),
            self.shared.options.clone(),
            Arc::clone(&self.shared.manifest),
            Arc::clone(&self.shared.env),
            Arc::clone(&self.shared.poison),
        )?;
        let entry = CollectionEntry {
            name: config.name.clone(),
            dimension: config.dimension,
            metric: config.metric,
            created_at_ms: c.created_at_ms(),
            flushed_seq: 0,
            next_segment_id: 1,
            segments: Vec::new(),
            pinned: false,
            tiering: Default::default(),
            indexed_fields: config.indexed_fields.clone(),
        };
        self.shared.manifest.commit(|m| {
            m.collections.insert(entry.name.clone(), entry);
            Ok(())
        })?;
        map.insert(config.name, Arc::new(c));
        Ok(())
    }

    /// Every collection's settings, by name.
    pub fn list_collections(&self) -> Vec<CollectionConfig> {
        self.shared
            .collections
            .read()
            .values()
            .map(|c| c.current_config())
            .collect()
    }

    /// The settings of one collection.
    pub fn collection_config(&self, name: &str) -> Result<CollectionConfig> {
        Ok(self.collection(name)?.current_config())
    }

    /// Index more payload fields of a collection: new segments index them at once; existing
    /// segments at their next compaction or [`Database::build_indexes`]. A field already
    /// indexed with the same type is left as it is; with another type it is an error, and
    /// nothing changes. Returns every field now indexed.
    pub fn add_indexed_fields(
        &self,
        collection: &str,
        fields: &[barq_core::IndexedField],
    ) -> Result<Vec<barq_core::IndexedField>> {
        self.shared.poison.check_writable()?;
        let c = self.collection(collection)?;
        c.add_indexed_fields(fields)
    }

    /// Drop a collection and all its data.
    pub fn drop_collection(&self, name: &str) -> Result<()> {
        self.shared.poison.check()?;
        let mut map = self.shared.collections.write();
        let c = map
            .get(name)
            .cloned()
            .ok_or_else(|| no_such_collection(name))?;
        c.drop_with(|| {
            self.shared.manifest.commit(|m| {
                m.collections.remove(name);
                Ok(())
            })
        })?;
        map.remove(name);
        for h in &c.snapshot().segments {
            self.shared
                .env
                .cache
                .remove_namespace(&crate::collection::SegmentHandle::namespace(name, &h.entry));
        }
        // Remote objects become orphans, collected by maintenance after the grace period: a drop
        // never waits for the cold store.
        if let Some(w) = &self.shared.env.warm_dir {
            let warm = w.join("collections").join(name);
            if warm.exists() {
                std::fs::remove_dir_all(&warm)
                    .map_err(|e| Error::io(format_args!("remove {}", warm.display()), e))?;
            }
        }
        std::fs::remove_dir_all(c.dir())
            .map_err(|e| Error::io(format_args!("remove {}", c.dir().display()), e))?;
        fsutil::fsync_dir(&self.shared.dir.join("collections"))
    }

    /// Insert or replace documents. The batch is validated first; if any document is invalid
    /// nothing is written. Returns the sequence number of the last write once it is durable as
    /// the [`Durability`](crate::Durability) mode promises.
    pub fn upsert(&self, collection: &str, docs: &[Document]) -> Result<u64> {
        self.collection(collection)?.upsert(docs)
    }

    /// The newest version of a document, or `None`.
    pub fn get(&self, collection: &str, id: &str) -> Result<Option<Document>> {
        self.collection(collection)?.get(id)
    }

    /// Delete a document (deleting a missing id is not an error). Returns the write's sequence
    /// number.
    pub fn delete(&self, collection: &str, id: &str) -> Result<u64> {
        self.collection(collection)?.delete(&[id])
    }

    /// Delete `ids` in one write, saying which existed: the answer lists the deleted ids and
    /// the missing ones, in the order given (each id is looked up first, which may read cold
    /// id pages). Every id is validated before anything is written.
    pub fn delete_reporting(&self, collection: &str, ids: &[&str]) -> Result<DeleteReport> {
        let c = self.collection(collection)?;
        for id in ids {
            barq_core::validate_id(id)?;
        }
        let mut report = DeleteReport::default();
        let mut present = Vec::new();
        for &id in ids {
            if c.get(id)?.is_some() {
                present.push(id);
                report.deleted.push(id.to_owned());
            } else {
                report.missing.push(id.to_owned());
            }
        }
        if !present.is_empty() {
            c.delete(&present)?;
        }
        Ok(report)
    }

    /// Delete several documents in one write.
    pub fn delete_many(&self, collection: &str, ids: &[&str]) -> Result<u64> {
        self.collection(collection)?.delete(ids)
    }

    /// Number of live documents.
    pub fn count(&self, collection: &str) -> Result<u64> {
        self.collection(collection)?.count()
    }

    /// Exact k-nearest-neighbour search, best first.
    pub fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        Ok(self.search_explained(collection, request)?.0)
    }

    /// Number of live documents `filter` matches (evaluated as a search evaluates it: through
    /// the segments' payload indexes where they cover its conditions).
    pub fn count_matching(&self, collection: &str, filter: &barq_core::Filter) -> Result<u64> {
        self.collection(collection)?.count_matching(Some(filter))
    }

    /// [`search`](Self::search), with what the search did: the plan of each segment, clusters
    /// probed, rows scanned and re-ranked, requests and bytes fetched from the cold store.
    pub fn search_explained(
        &self,
        collection: &str,
        request: &SearchRequest,
    ) -> Result<(Vec<SearchHit>, SearchStats)> {
        let c = self.collection(collection)?;
        let (hits, stats) = c.search(request)?;
        let indexed = stats.segments.iter().any(|s| s.plan == "index");
        let local = stats.segments.iter().all(|s| s.tier != StorageTier::Cold);
        if !request.exact && indexed && local && self.shared.recall.due() {
            let ann: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
            let exact = SearchRequest::new(request.vector.clone(), request.k).exact(true);
            let exact = SearchRequest {
                filter: request.filter.clone(),
                ..exact
            };
            let submitted = self
                .shared
                .recall
                .submit(Box::new(move || match c.search(&exact) {
                    Ok((truth, _)) => c.recall.record(&ann, &truth),
                    Err(e) => tracing::debug!(error = %e, "a recall sample failed"),
                }));
            if !submitted {
                tracing::debug!("recall sampler busy; sample skipped");
            }
        }
        Ok((hits, stats))
    }

    /// Flush the collection's memtable into a sealed segment now.
    pub fn flush(&self, collection: &str) -> Result<FlushOutcome> {
        self.shared.poison.check_writable()?;
        self.collection(collection)?.flush()
    }

    /// `Err(ReadOnly)` on a read-only replica, `Err(Closed)` once poisoned, `Err(Conflict)`
    /// once fenced by a newer writer; `Ok` when writes are taken.
    pub fn check_writable(&self) -> Result<()> {
        self.shared.poison.check()
    }

    /// A read-only replica's view of the bucket it follows; `None` for a writer.
    pub fn replica_status(&self) -> Option<crate::bucket::ReplicaStatus> {
        self.shared
            .replica
            .as_ref()
            .map(|(f, _)| f.status(self.shared.env.clock.now_ms()))
    }

    /// Flush the memtable, then merge all of the collection's segments into one, dropping
    /// shadowed versions and tombstones.
    pub fn compact(&self, collection: &str) -> Result<CompactionOutcome> {
        self.shared.poison.check_writable()?;
        let c = self.collection(collection)?;
        c.flush()?;
        c.compact_all()
    }

    /// Run one size-tiered compaction if one is due (what the background thread does).
    pub fn compact_size_tiered(&self, collection: &str) -> Result<Option<CompactionOutcome>> {
        self.shared.poison.check_writable()?;
        self.collection(collection)?.compact_size_tiered()
    }

    /// Build the missing indexes of a collection now: every sealed Hot segment of at least
    /// `index_min_rows` rows without an index is rewritten with one (what background
    /// compaction does one segment per pass). Returns one outcome per segment indexed.
    pub fn build_indexes(&self, collection: &str) -> Result<Vec<CompactionOutcome>> {
        self.shared.poison.check_writable()?;
        let c = self.collection(collection)?;
        let mut done = Vec::new();
        while let Some(o) = c.index_one(None, true)? {
            done.push(o);
        }
        Ok(done)
    }

    /// fsync every collection's WAL.
    pub fn sync(&self) -> Result<()> {
        for c in self.shared.all() {
            c.sync_wal()?;
        }
        Ok(())
    }

    /// Statistics of one collection.
    pub fn collection_stats(&self, name: &str) -> Result<CollectionStats> {
        self.collection_stats_with(name, true)
    }

    /// [`Database::stats`] without a single read of the cold store (for a metrics scrape):
    /// everything comes from the manifest and memory, except that `documents` is left at 0 for
    /// a collection with cold segments (counting needs their id and tombstone blocks); tell
    /// those apart by `tiers`.
    pub fn stats_without_cold_reads(&self) -> Result<DatabaseStats> {
        self.stats_with(false)
    }

    fn collection_stats_with(&self, name: &str, count_cold: bool) -> Result<CollectionStats> {
        let c = self.collection(name)?;
        let snap = c.snapshot();
        let mut tiers = BTreeMap::new();
        let (mut bytes, mut rows) = (0, 0);
        let mut segment_list = Vec::with_capacity(snap.segments.len());
        for h in &snap.segments {
            let t: &mut TierStats = tiers.entry(h.entry.tier).or_default();
            t.segments += 1;
            t.bytes += h.entry.size_bytes;
            bytes += h.entry.size_bytes;
            rows += h.entry.rows;
            // A cold segment's footer and head are read when counting may read the store (they
            // are usually kept locally, see `tiering::kept`).
            let seg = match h.loaded_segment() {
                Some(s) => Some(s),
                None if count_cold => Some(h.segment()?),
                None => None,
            };
            let clusters = match seg {
                Some(s) if count_cold => s.index()?,
                Some(s) => s.loaded_index(),
                None => None,
            }
            .map(|i| i.head.clusters() as u32);
            segment_list.push(SegmentStats {
                id: h.entry.id,
                tier: h.entry.tier,
                rows: h.entry.rows,
                bytes: h.entry.size_bytes,
                indexed: seg.map(|s| s.is_indexed()),
                clusters,
                index_bytes: seg.map_or(0, |s| s.index_bytes()),
            });
        }
        let mems = snap.memtables_newest_first();
        let memtable_rows: u64 = mems.iter().map(|m| m.read().row_count() as u64).sum();
        Ok(CollectionStats {
            indexed_fields: c.indexed_fields().to_vec(),
            name: c.name().to_owned(),
            dimension: c.config().dimension,
            metric: c.config().metric,
            created_at_ms: c.created_at_ms(),
            documents: if count_cold || !tiers.contains_key(&StorageTier::Cold) {
                c.count()?
            } else {
                0
            },
            segments: snap.segments.len() as u64,
            segment_bytes: bytes,
            segment_rows: rows,
            memtable_rows,
            memtable_bytes: mems.iter().map(|m| m.read().approx_bytes() as u64).sum(),
            wal_bytes: c.wal_disk_bytes(),
            last_seq: c.last_seq(),
            tiers,
            indexed_segments: segment_list
                .iter()
                .filter(|s| s.indexed == Some(true))
                .count() as u64,
            unindexed_rows: memtable_rows
                + segment_list
                    .iter()
                    .filter(|s| s.indexed != Some(true))
                    .map(|s| s.rows)
                    .sum::<u64>(),
            index_bytes: segment_list.iter().map(|s| s.index_bytes).sum(),
            segment_list,
            recall_samples: c.recall.totals().0,
            sampled_recall: {
                let (_, found, wanted) = c.recall.totals();
                (wanted > 0).then(|| found as f64 / wanted as f64)
            },
        })
    }

    /// Statistics of every collection.
    pub fn stats(&self) -> Result<DatabaseStats> {
        self.stats_with(true)
    }

    fn stats_with(&self, count_cold: bool) -> Result<DatabaseStats> {
        let names: Vec<String> = self.shared.collections.read().keys().cloned().collect();
        let collections = names
            .iter()
            .map(|n| self.collection_stats_with(n, count_cold))
            .collect::<Result<_>>()?;
        Ok(DatabaseStats {
            data_dir: self.shared.dir.clone(),
            collections,
        })
    }

    /// Stop the background threads, fsync every WAL and release the lock. Unflushed memtables
    /// stay in the WAL and are replayed at the next open.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        self.shared.recall.stop();
        if let Some(bg) = self.background.lock().take() {
            bg.stop();
            if let Err(e) = self.shared.tiering.persist_access() {
                tracing::warn!(error = %e, "could not persist access statistics");
            }
            return self.sync();
        }
        Ok(())
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing the database failed");
        }
    }
}

/// The file that marks a replica's directory (it names the bucket followed).
const REPLICA_FILE: &str = "REPLICA";

/// How often the flusher looks for memtables over the limit.
const FLUSH_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// The database's background loops: each job holds a `Weak` reference to the shared state, so
/// that it ends once the database is gone, and a panic poisons the database.
fn start_background(shared: &Arc<Shared>) -> std::io::Result<Background> {
    let mut bg = Background::default();
    let on_panic: crate::background::OnPanic = {
        let weak = Arc::downgrade(shared);
        Arc::new(move |name: &str, why: String| {
            if let Some(s) = weak.upgrade() {
                s.poison(format!("background worker {name} panicked: {why}"));
            }
        })
    };
    let job = |work: fn(&Shared)| -> crate::background::Job {
        let weak = Arc::downgrade(shared);
        Box::new(move || match weak.upgrade() {
            Some(s) => {
                work(&s);
                true
            }
            None => false,
        })
    };
    let o = &shared.options;
    bg.spawn_loop(
        "barq-flush",
        FLUSH_POLL,
        job(Shared::flush_requested),
        Arc::clone(&on_panic),
    )?;
    if o.background_compaction {
        let every = o.compaction_check_interval;
        bg.spawn_loop(
            "barq-compact",
            every,
            job(Shared::compact_where_due),
            Arc::clone(&on_panic),
        )?;
    }
    if let Some(every) = o.tiering.maintenance_interval {
        let every = crate::background::jittered(every);
        bg.spawn_loop(
            "barq-tiering",
            every,
            job(Shared::tiering_maintenance),
            Arc::clone(&on_panic),
        )?;
    }
    if shared.env.shared_bucket {
        bg.spawn_loop(
            "barq-upload",
            o.tiering.upload_interval,
            job(Shared::share_with_bucket),
            Arc::clone(&on_panic),
        )?;
    }
    if let Some((_, every)) = &shared.replica {
        bg.spawn_loop(
            "barq-follow",
            *every,
            job(Shared::follow_bucket),
            Arc::clone(&on_panic),
        )?;
    }
    if let crate::Durability::Interval(every) = o.durability {
        bg.spawn_loop("barq-wal-sync", every, job(Shared::sync_wals), on_panic)?;
    }
    Ok(bg)
}

/// Refuse a directory that has content but no manifest: it is not a Barq data directory, and
/// opening would write into it and sweep files from it.
fn refuse_foreign_directory(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format_args!("list {}", dir.display()), e)),
    };
    let mut foreign = None;
    for item in entries {
        let name = item
            .map_err(|e| Error::io(format_args!("list {}", dir.display()), e))?
            .file_name();
        match name.to_str() {
            Some(crate::manifest::MANIFEST_FILE) => return Ok(()),
            // what a first open that crashed before its manifest existed can leave behind
            Some("LOCK" | "MANIFEST.tmp" | "collections" | REPLICA_FILE) => {}
            _ => foreign = Some(name),
        }
    }
    match foreign {
        Some(name) => Err(Error::invalid(format!(
            "{} is not a Barq DB data directory: it holds {name:?} but no {}; use an empty or new directory",
            dir.display(),
            crate::manifest::MANIFEST_FILE
        ))),
        None => Ok(()),
    }
}

fn sweep_unknown_collections(root: &Path, known: &BTreeMap<String, CollectionEntry>) -> Result<()> {
    let rd = std::fs::read_dir(root)
        .map_err(|e| Error::io(format_args!("list {}", root.display()), e))?;
    for item in rd {
        let path = item
            .map_err(|e| Error::io(format_args!("list {}", root.display()), e))?
            .path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if path.is_dir() && !known.contains_key(&name) {
            tracing::info!(dir = %path.display(), "removing collection directory no manifest entry references");
            std::fs::remove_dir_all(&path)
                .map_err(|e| Error::io(format_args!("remove {}", path.display()), e))?;
            fsutil::fsync_dir(root)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use barq_core::{CollectionConfig, Document, ErrorKind, Metric};

    use super::*;

    #[test]
    fn a_failed_wal_write_shows_as_poisoned_and_refuses_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(dir.path(), Options::default()).expect("open");
        db.create_collection(CollectionConfig::new("docs", 2, Metric::L2).expect("cfg"))
            .expect("create");
        assert_eq!(db.poisoned(), None);
        let _ = db
            .collection("docs")
            .expect("docs")
            .wal()
            .fail("write wal-1.log: No space left on device".to_owned());
        let why = db.poisoned().expect("poisoned");
        assert!(
            why.contains("\"docs\"") && why.contains("No space left"),
            "{why}"
        );
        let err = db
            .upsert("docs", &[Document::new("a", vec![1.0, 2.0])])
            .expect_err("the WAL is poisoned");
        assert_eq!(err.kind(), ErrorKind::Closed);
    }
}
