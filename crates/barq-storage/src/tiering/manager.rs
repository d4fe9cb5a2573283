//! [`TieringManager`]: runs the policy and the mover, tracks access, collects orphans, reports
//! status. Planning is [`plan`](super::plan) over a snapshot taken from the manifest (tiers, pins,
//! overrides) and the open segments (access statistics, busy marks).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use barq_core::{Error, ErrorKind, Result};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::TierEnv;
use super::mover::{MoveOutcome, Mover, Progress};
use super::state::ManagerState;
use super::state::{ACCESS_FILE, AccessFile, ORPHANS_FILE};
use super::{PlanInput, SegmentState, TieringOverrides, plan};
use crate::collection::Collection;
use crate::manifest::ManifestStore;
use crate::manifest::StorageTier;
use crate::poison::Poison;
use crate::segment::Segment;
use crate::tier::TierStats;

pub use crate::tier::MoveError;

/// What [`TieringManager::move_segments`] did: the moves done and the failures (segment id
/// and error), each in the order asked.
#[derive(Debug, Default)]
pub struct BatchMoves {
    /// Moves done.
    pub moves: Vec<MoveOutcome>,
    /// Segments that did not move, and why; they stay where they were.
    pub failures: Vec<(u64, Error)>,
}

impl BatchMoves {
    /// Bytes transferred by the moves done.
    pub fn bytes_moved(&self) -> u64 {
        self.moves.iter().map(|m| m.bytes).sum()
    }
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MaintenanceReport {
    /// Moves the policy asked for.
    pub planned: usize,
    /// Moves done.
    pub moves_done: Vec<MoveOutcome>,
    /// Moves that failed (retried on a later pass).
    pub moves_failed: Vec<MoveError>,
    /// Bytes transferred by the moves done.
    pub bytes_moved: u64,
    /// Unreferenced remote objects deleted.
    pub orphans_deleted: u64,
    /// Why collecting orphans failed or was skipped, if it was (e.g. the store is degraded).
    pub gc_error: Option<String>,
    /// Moves to or from the cold tier the policy asked for but that wait, because the cold
    /// store is degraded (they are planned again on a later pass).
    #[serde(default)]
    pub moves_deferred: usize,
    /// Manifest versions older than the retention deleted from the bucket.
    #[serde(default)]
    pub versions_pruned: u64,
}

/// One segment in [`TieringStatus`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegmentStatus {
    /// Segment id.
    pub id: u64,
    /// Where it is.
    pub tier: StorageTier,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Rows, tombstones included.
    pub rows: u64,
    /// A copy exists in the cold store.
    pub remote: bool,
    /// Pinned to Hot.
    pub pinned: bool,
    /// Sealed at (ms since the Unix epoch).
    pub sealed_at_ms: u64,
    /// Last read.
    pub last_access_ms: Option<u64>,
    /// Reads since it was sealed.
    pub access_count: u64,
    /// What is moving or compacting it right now.
    pub busy: Option<String>,
}

/// One collection in [`TieringStatus`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectionTierStatus {
    /// Name.
    pub name: String,
    /// Pinned to Hot.
    pub pinned: bool,
    /// Its policy overrides.
    pub overrides: TieringOverrides,
    /// Segments and bytes per tier.
    pub tiers: BTreeMap<StorageTier, TierStats>,
    /// Every segment.
    pub segments: Vec<SegmentStatus>,
}

/// Counters for a metrics endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TieringCounters {
    /// Segments uploaded to the cold store.
    pub uploads: u64,
    /// Segments downloaded from it.
    pub downloads: u64,
    /// Copies between Hot and Warm.
    pub local_copies: u64,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Bytes downloaded by hydration.
    pub bytes_downloaded: u64,
    /// Moves done.
    pub moves_done: u64,
    /// Moves failed.
    pub moves_failed: u64,
    /// Wall time spent in the moves done, in milliseconds.
    pub move_millis: u64,
    /// Orphan objects deleted.
    pub orphans_deleted: u64,
    /// Cold reads served by the local cache.
    pub cache_hits: u64,
    /// Cold reads that went to the store.
    pub cache_misses: u64,
    /// Cache entries evicted.
    pub cache_evictions: u64,
    /// Bytes in the cache.
    pub cache_bytes: u64,
    /// The cache's budget.
    pub cache_budget_bytes: u64,
    /// Cold segments whose footer and index head (and tombstones, row map) are kept on local
    /// disk across restarts.
    #[serde(default)]
    pub heads_kept: u64,
    /// Bytes of that kept metadata.
    #[serde(default)]
    pub heads_kept_bytes: u64,
    /// Requests sent to the cold store.
    pub remote_requests: u64,
    /// Requests that failed.
    pub remote_failures: u64,
    /// Bytes fetched by cold reads.
    pub remote_bytes_fetched: u64,
}

/// Everything `status()` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TieringStatus {
    /// The cold store (no secrets).
    pub cold_store: String,
    /// The warm directory, if any.
    pub warm_dir: Option<PathBuf>,
    /// Segments and bytes per tier, all collections.
    pub tiers: BTreeMap<StorageTier, TierStats>,
    /// Per collection.
    pub collections: Vec<CollectionTierStatus>,
    /// Moves and compactions running now: (collection, segment, what).
    pub in_progress: Vec<(String, u64, String)>,
    /// The last failure of each segment whose last move failed.
    pub last_errors: Vec<MoveError>,
    /// Counters.
    pub counters: TieringCounters,
    /// When maintenance last ran.
    pub last_maintenance_ms: Option<u64>,
    /// Whether the cold store answered a check made for this status (`None`: not checked; see
    /// [`TieringManager::status_with_store_check`]).
    #[serde(default)]
    pub cold_store_reachable: Option<bool>,
    /// Why the check failed.
    #[serde(default)]
    pub cold_store_error: Option<String>,
    /// The cold store's health: `ok`, or `degraded` with the reason (hot data is served either
    /// way), or `unchecked`.
    #[serde(default)]
    pub cold_store_health: super::ColdStoreHealth,
    /// Why the database takes no more writes (a background worker panicked), if it does not.
    #[serde(default)]
    pub poisoned: Option<String>,
    /// Sharing through the bucket: upload lag, published manifest version, writer epoch.
    #[serde(default)]
    pub bucket: crate::bucket::BucketStatus,
}

/// The open collections of a database, by name.
pub(crate) type Collections = parking_lot::RwLock<BTreeMap<String, Arc<Collection>>>;

/// The tiering API of a database; cheap to clone (`Database::tiering`). It owns its state (the
/// move errors, the orphans seen, the maintenance lock) and its `ACCESS` and `ORPHANS` files,
/// and reaches the collections through the database's registry.
#[derive(Debug, Clone)]
pub struct TieringManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    manifest: Arc<ManifestStore>,
    collections: Arc<Collections>,
    env: Arc<TierEnv>,
    poison: Arc<Poison>,
    tier_state: ManagerState,
    bucket: crate::bucket::Publisher,
}

impl TieringManager {
    pub(crate) fn new(
        dir: PathBuf,
        manifest: Arc<ManifestStore>,
        collections: Arc<Collections>,
        env: Arc<TierEnv>,
        poison: Arc<Poison>,
    ) -> Self {
        let tier_state = ManagerState::open(&dir);
        TieringManager {
            inner: Arc::new(Inner {
                dir,
                manifest,
                collections,
                env,
                poison,
                tier_state,
                bucket: crate::bucket::Publisher::default(),
            }),
        }
    }

    /// Write the access statistics to `ACCESS` (at close and by maintenance).
    pub(crate) fn persist_access(&self) -> Result<()> {
        self.inner.persist_access()
    }

    /// Plan with the policy and execute the moves (at most `move_concurrency` at once), collect
    /// orphaned remote objects and persist access statistics.
    pub fn run_maintenance(&self) -> Result<MaintenanceReport> {
        self.inner.poison.check_writable()?;
        self.inner.run_maintenance()
    }

    /// Move a segment to `to`.
    pub fn move_segment(&self, collection: &str, id: u64, to: StorageTier) -> Result<MoveOutcome> {
        self.move_segment_with_progress(collection, id, to, &|_| {})
    }

    /// Move a segment to `to`, reporting bytes transferred.
    pub fn move_segment_with_progress(
        &self,
        collection: &str,
        id: u64,
        to: StorageTier,
        progress: Progress<'_>,
    ) -> Result<MoveOutcome> {
        self.inner.poison.check_writable()?;
        let c = self.inner.collection(collection)?;
        self.inner.move_recorded(&c, id, to, progress)
    }

    /// Move each of `segments` (of `collection`) to `to`, one after another. A failure does
    /// not stop the others: every outcome and every failure is in the answer, in order.
    /// `progress(i, segment, bytes)` hears, for the `i`-th segment, the bytes transferred so
    /// far by the whole batch (each segment counts its size once it is done, moved or not).
    /// An unknown segment id is `NotFound` before anything moves.
    pub fn move_segments(
        &self,
        collection: &str,
        segments: &[u64],
        to: StorageTier,
        progress: &(dyn Fn(usize, u64, u64) + Sync),
    ) -> Result<BatchMoves> {
        self.inner.poison.check_writable()?;
        let all = self.segments(collection)?;
        let sizes = segments
            .iter()
            .map(|&id| {
                all.iter()
                    .find(|s| s.id == id)
                    .map(|s| if s.tier == to { 0 } else { s.size_bytes })
                    .ok_or_else(|| {
                        Error::not_found(format!("collection \"{collection}\" has no segment {id}"))
                    })
            })
            .collect::<Result<Vec<u64>>>()?;
        let mut batch = BatchMoves::default();
        let mut done = 0u64;
        for (i, (&id, &size)) in segments.iter().zip(&sizes).enumerate() {
            progress(i, id, done);
            let each = |n: u64| progress(i, id, done + n.min(size));
            match self.move_segment_with_progress(collection, id, to, &each) {
                Ok(o) => batch.moves.push(o),
                Err(e) => batch.failures.push((id, e)),
            }
            done += size;
            progress(i, id, done);
        }
        Ok(batch)
    }

    /// Move a segment to the cold store.
    pub fn offload_segment(&self, collection: &str, id: u64) -> Result<MoveOutcome> {
        self.move_segment(collection, id, StorageTier::Cold)
    }

    /// Bring a segment back to Hot (its remote copy is kept).
    pub fn hydrate_segment(&self, collection: &str, id: u64) -> Result<MoveOutcome> {
        self.move_segment(collection, id, StorageTier::Hot)
    }

    /// A reader of a segment from whichever tier holds it.
    pub fn get_segment(&self, collection: &str, id: u64) -> Result<Arc<Segment>> {
        let c = self.inner.collection(collection)?;
        let h = c.handle(id)?;
        Ok(Arc::clone(h.segment()?))
    }

    /// The sealed segments of a collection, oldest first.
    pub fn segments(&self, collection: &str) -> Result<Vec<crate::SegmentEntry>> {
        self.inner.collection(collection)?;
        // The manifest, not the open handles: a pin changes only the manifest.
        let m = self.inner.manifest.snapshot()?;
        m.collections
            .get(collection)
            .map(|c| c.segments.clone())
            .ok_or_else(|| crate::collection::no_such_collection(collection))
    }

    /// Pin a collection (`segment: None`) or one segment to Hot. Maintenance brings pinned
    /// segments back to Hot and never moves them out.
    pub fn pin(&self, collection: &str, segment: Option<u64>) -> Result<()> {
        self.set_pin(collection, segment, true)
    }

    /// Undo [`TieringManager::pin`].
    pub fn unpin(&self, collection: &str, segment: Option<u64>) -> Result<()> {
        self.set_pin(collection, segment, false)
    }

    fn set_pin(&self, collection: &str, segment: Option<u64>, pinned: bool) -> Result<()> {
        self.inner.poison.check_writable()?;
        self.inner.collection(collection)?;
        self.inner.manifest.commit(|m| {
            let c = m
                .collections
                .get_mut(collection)
                .ok_or_else(|| crate::collection::no_such_collection(collection))?;
            match segment {
                None => c.pinned = pinned,
                Some(id) => {
                    c.segments
                        .iter_mut()
                        .find(|s| s.id == id)
                        .ok_or_else(|| {
                            Error::not_found(format!(
                                "collection \"{collection}\" has no segment {id}"
                            ))
                        })?
                        .pinned = pinned
                }
            }
            Ok(())
        })
    }

    /// The collection's policy overrides.
    pub fn overrides(&self, collection: &str) -> Result<TieringOverrides> {
        let m = self.inner.manifest.snapshot()?;
        m.collections
            .get(collection)
            .map(|c| c.tiering.clone())
            .ok_or_else(|| crate::collection::no_such_collection(collection))
    }

    /// Replace the collection's policy overrides.
    /// Invalid overrides (see [`TieringOverrides::validate`]) are refused and nothing changes.
    pub fn set_overrides(&self, collection: &str, overrides: TieringOverrides) -> Result<()> {
        self.inner.poison.check_writable()?;
        let options = &self.inner.env.options;
        overrides.validate(collection, &options.policy, options.warm_dir.is_some())?;
        self.inner.manifest.commit(|m| {
            m.collections
                .get_mut(collection)
                .ok_or_else(|| crate::collection::no_such_collection(collection))?
                .tiering = overrides;
            Ok(())
        })
    }

    /// Delete remote objects that no manifest entry references and that are older than the
    /// grace period. Returns how many were deleted.
    pub fn collect_orphans(&self) -> Result<u64> {
        self.inner.poison.check_writable()?;
        self.inner.collect_orphans()
    }

    /// Upload on seal: copy every sealed segment that has no copy in the store yet (leaving it
    /// local), then publish the manifest version to the bucket if every segment it names is
    /// there. Returns the version published, if one was. A no-op unless
    /// [`upload_on_seal`](super::TieringOptions::upload_on_seal) is on; skipped while the store
    /// is degraded.
    pub fn share_with_bucket(&self) -> Result<Option<u64>> {
        self.inner.share_with_bucket()
    }

    /// Whether `e` differs from the last failure of [`share_with_bucket`](Self::share_with_bucket)
    /// (so the loop logs each new failure once).
    pub(crate) fn note_share_error(&self, e: &Error) -> bool {
        self.inner.bucket.note_error(e)
    }

    /// Check that the cold store answers (one HEAD request, no write). Hot reads and writes do
    /// not need it; moves and cold reads do. A failure makes the store degraded.
    pub fn check_cold_store(&self) -> Result<()> {
        self.inner.env.check_reachable()
    }

    /// [`TieringManager::status`] plus a [`TieringManager::check_cold_store`]: says whether the
    /// store answers now (a store that went away shows here, while hot data keeps working).
    pub fn status_with_store_check(&self) -> Result<TieringStatus> {
        let mut status = self.status()?;
        let check = self.check_cold_store();
        status.cold_store_reachable = Some(check.is_ok());
        status.cold_store_error = check.err().map(|e| e.message().to_owned());
        // A failed check has just made the store degraded.
        status.cold_store_health = self.inner.env.cold.health();
        Ok(status)
    }

    /// The cold store's health as last seen (no request).
    pub fn cold_store_health(&self) -> super::ColdStoreHealth {
        self.inner.env.cold.health()
    }

    /// Tiers, collections, moves in progress, last errors, counters.
    pub fn status(&self) -> Result<TieringStatus> {
        self.inner.tiering_status()
    }
}

impl Inner {
    pub(crate) fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        self.collections
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| crate::collection::no_such_collection(name))
    }

    fn share_with_bucket(&self) -> Result<Option<u64>> {
        if !self.env.shared_bucket {
            return Ok(None);
        }
        if self.env.cold.health().state == super::ColdStoreState::Degraded {
            let e = Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the cold store {} is degraded; uploads and publishing wait for it",
                    self.env.cold.description()
                ),
            );
            self.bucket.record_error(&e);
            return Err(e);
        }
        // Claim the epoch before the first upload: a writer never writes to a bucket that a
        // newer writer owns.
        if let Err(e) = self
            .bucket
            .ensure_owner(&self.env, &self.manifest, &self.poison, false)
        {
            self.bucket.record_error(&e);
            return Err(e);
        }
        let manifest = self.manifest.snapshot()?;
        for c in self
            .collections
            .read()
            .values()
            .cloned()
            .collect::<Vec<_>>()
        {
            let Some(entry) = manifest.collections.get(c.name()) else {
                continue;
            };
            for s in &entry.segments {
                if s.tier == StorageTier::Cold || s.remote_key.is_some() || c.busy().contains(s.id)
                {
                    continue;
                }
                let _permit = self.env.move_permits.acquire();
                let _no_gc = self.tier_state.gc.read();
                match Mover::new(c.as_ref(), &self.env).copy_to_store(s.id) {
                    Ok(_) => {}
                    // Compacted, dropped or busy meanwhile: the next pass sees the new state.
                    Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) => {}
                    Err(e) => {
                        tracing::warn!(collection = %c.name(), segment = s.id, error = %e, "upload on seal failed");
                        self.bucket.record_error(&e);
                        return Err(e);
                    }
                }
            }
        }
        self.bucket.publish(&self.env, &self.manifest, &self.poison)
    }

    /// Move and record the outcome in the error list and counters.
    pub(crate) fn move_recorded(
        &self,
        c: &Collection,
        id: u64,
        to: StorageTier,
        progress: Progress<'_>,
    ) -> Result<MoveOutcome> {
        let key = (c.name().to_owned(), id);
        let _permit = self.env.move_permits.acquire();
        let _no_gc = self.tier_state.gc.read();
        match Mover::new(c, &self.env).move_segment(id, to, progress) {
            Ok(o) => {
                self.tier_state.errors.lock().remove(&key);
                Ok(o)
            }
            Err(e) => {
                self.env
                    .counters
                    .moves_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(collection = %key.0, segment = id, %to, error = %e, "segment move failed");
                let err = MoveError {
                    collection: key.0.clone(),
                    segment_id: id,
                    to,
                    error: e.to_string(),
                    at_ms: self.env.clock.now_ms(),
                };
                self.tier_state.errors.lock().insert(key, err);
                Err(e)
            }
        }
    }

    fn plan_input(&self) -> Result<(Vec<SegmentState>, HashMap<String, TieringOverrides>)> {
        let manifest = self.manifest.snapshot()?;
        let mut states = Vec::new();
        let mut overrides = HashMap::new();
        for c in self.collections.read().values() {
            let Some(entry) = manifest.collections.get(c.name()) else {
                continue;
            };
            overrides.insert(entry.name.clone(), entry.tiering.clone());
            let snap = c.snapshot();
            let busy = c.busy().snapshot();
            for s in &entry.segments {
                let access = snap
                    .segments
                    .iter()
                    .find(|h| h.entry.id == s.id)
                    .and_then(|h| h.access.last());
                states.push(SegmentState {
                    collection: entry.name.clone(),
                    segment_id: s.id,
                    tier: s.tier,
                    size_bytes: s.size_bytes,
                    sealed_at_ms: s.created_at_ms,
                    last_access_ms: access,
                    last_move_ms: s.moved_at_ms,
                    pinned: entry.pinned || s.pinned,
                    busy: busy.contains_key(&s.id),
                });
            }
        }
        Ok((states, overrides))
    }

    pub(crate) fn run_maintenance(&self) -> Result<MaintenanceReport> {
        let _one_at_a_time = self.tier_state.maintenance.lock();
        // A writer that a newer one fenced must not move, collect or prune anything in the
        // bucket the newer one owns (its manifest no longer names what is there).
        if self.env.shared_bucket
            && let Err(e) = self
                .bucket
                .ensure_owner(&self.env, &self.manifest, &self.poison, true)
            && e.kind() == ErrorKind::Conflict
        {
            return Err(e);
        }
        let now = self.env.clock.now_ms();
        let (states, overrides) = self.plan_input()?;
        let moves = plan(&PlanInput {
            segments: &states,
            policy: &self.env.options.policy,
            overrides: &overrides,
            warm_enabled: self.env.warm_dir.is_some(),
            now_ms: now,
        });
        let mut report = MaintenanceReport {
            planned: moves.len(),
            ..MaintenanceReport::default()
        };
        // While the store is degraded, a move that needs it would only fail after its retries:
        // probe it once, and defer those moves while it still does not answer.
        let degraded = match self.env.cold.health().state {
            super::ColdStoreState::Degraded => self
                .env
                .cold
                .block_on(self.env.cold.probe())
                .err()
                .map(|e| e.to_string()),
            _ => None,
        };
        let moves: Vec<_> = match &degraded {
            Some(_) => {
                let tiers = self.segment_tiers();
                let (wait, go): (Vec<_>, Vec<_>) = moves.into_iter().partition(|m| {
                    m.to == StorageTier::Cold
                        || tiers.get(&(m.collection.clone(), m.segment_id))
                            == Some(&StorageTier::Cold)
                });
                report.moves_deferred = wait.len();
                go
            }
            None => moves,
        };
        let queue = Mutex::new(moves.into_iter().collect::<VecDeque<_>>());
        let results = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..self.env.options.move_concurrency.max(1) {
                s.spawn(|| {
                    while let Some(m) = queue.lock().pop_front() {
                        let r = self
                            .collection(&m.collection)
                            .and_then(|c| self.move_recorded(&c, m.segment_id, m.to, &|_| {}));
                        results.lock().push((m, r));
                    }
                });
            }
        });
        for (m, r) in results.into_inner() {
            match r {
                Ok(o) => {
                    report.bytes_moved += o.bytes;
                    report.moves_done.push(o);
                }
                Err(e) => report.moves_failed.push(MoveError {
                    collection: m.collection,
                    segment_id: m.segment_id,
                    to: m.to,
                    error: e.to_string(),
                    at_ms: now,
                }),
            }
        }
        match &degraded {
            Some(why) => report.gc_error = Some(format!("skipped while degraded: {why}")),
            None => match self.collect_orphans() {
                Ok(n) => report.orphans_deleted = n,
                Err(e) => report.gc_error = Some(e.to_string()),
            },
        }
        if self.env.shared_bucket && degraded.is_none() {
            match self.bucket.prune(&self.env) {
                Ok(n) => report.versions_pruned = n,
                Err(e) => {
                    let why = format!("pruning manifest versions: {e}");
                    report.gc_error = Some(match report.gc_error.take() {
                        Some(gc) => format!("{gc}; {why}"),
                        None => why,
                    });
                }
            }
        }
        if let Err(e) = self.persist_access() {
            tracing::warn!(error = %e, "could not persist access statistics");
        }
        *self.tier_state.last_maintenance_ms.lock() = Some(now);
        Ok(report)
    }

    /// Where each segment is, by (collection, segment id), from the manifest.
    fn segment_tiers(&self) -> HashMap<(String, u64), StorageTier> {
        let Ok(manifest) = self.manifest.snapshot() else {
            return HashMap::new();
        };
        manifest
            .collections
            .values()
            .flat_map(|c| c.segments.iter().map(|s| ((c.name.clone(), s.id), s.tier)))
            .collect()
    }

    pub(crate) fn collect_orphans(&self) -> Result<u64> {
        self.poison.check_writable()?;
        let _no_moves = self.tier_state.gc.write();
        let manifest = self.manifest.snapshot()?;
        let mut referenced: HashSet<String> = manifest
            .collections
            .values()
            .flat_map(|c| c.segments.iter().filter_map(|s| s.remote_key.clone()))
            .collect();
        // What the newest published version names stays, however long publishing stalls.
        referenced.extend(self.bucket.published_keys());
        let cold = &self.env.cold;
        // With a shared bucket, a retained manifest version may still name the object.
        let grace = if self.env.shared_bucket {
            self.env
                .options
                .orphan_grace
                .max(self.env.options.manifest_retention)
        } else {
            self.env.options.orphan_grace
        }
        .as_millis() as i64;
        let now = self.env.clock.now_ms() as i64;
        let root = cold.root();
        // List (no lock held across the await), then decide, then delete.
        let unreferenced: Vec<(object_store::path::Path, i64)> = cold.block_on(async {
            cold.counters.requests.fetch_add(1, Ordering::Relaxed);
            let mut listing = cold.inner().list(root.as_ref());
            let mut found = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| cold.error("list segments", e))?;
                let key = meta.location.to_string();
                if key.ends_with(".seg") && key.contains("/segments/") && !referenced.contains(&key)
                {
                    found.push((meta.location, meta.last_modified.timestamp_millis()));
                }
            }
            Ok::<_, Error>(found)
        })?;
        let orphans: Vec<object_store::path::Path> = {
            let mut seen = self.tier_state.orphan_seen.lock();
            seen.retain(|k, _| unreferenced.iter().any(|(p, _)| p.as_ref() == k));
            unreferenced
                .into_iter()
                .filter(|(p, modified)| {
                    let first_seen = *seen.entry(p.to_string()).or_insert(now);
                    now - modified >= grace && now - first_seen >= grace
                })
                .map(|(p, _)| p)
                .collect()
        };
        self.persist_orphans_seen();
        let deleted = cold.block_on(async {
            let mut n = 0;
            for p in orphans {
                cold.retry(&format!("delete orphan {p}"), || cold.inner().delete(&p))
                    .await?;
                tracing::info!(key = %p, "deleted orphaned segment object");
                n += 1;
            }
            Ok::<u64, Error>(n)
        })?;
        self.env
            .counters
            .orphans_deleted
            .fetch_add(deleted, Ordering::Relaxed);
        Ok(deleted)
    }

    /// Remember when each unreferenced object was first seen (`DIR/ORPHANS`), so that the grace
    /// period also spans restarts and one-shot CLI commands.
    fn persist_orphans_seen(&self) {
        let seen = self.tier_state.orphan_seen.lock().clone();
        let result = serde_json::to_vec(&seen)
            .map_err(|e| Error::internal(e.to_string()))
            .and_then(|bytes| crate::fsutil::write_atomic(&self.dir.join(ORPHANS_FILE), &bytes));
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not persist orphan first-seen times");
        }
    }

    /// Write the access statistics to `DIR/ACCESS` (atomically).
    pub(crate) fn persist_access(&self) -> Result<()> {
        let mut file = AccessFile::default();
        for c in self.collections.read().values() {
            let per = file.collections.entry(c.name().to_owned()).or_default();
            for h in &c.snapshot().segments {
                if let Some(last) = h.access.last() {
                    per.insert(h.entry.id, (last, h.access.count.load(Ordering::Relaxed)));
                }
            }
        }
        let bytes = serde_json::to_vec(&file)
            .map_err(|e| Error::internal(format!("encode access stats: {e}")))?;
        crate::fsutil::write_atomic(&self.dir.join(ACCESS_FILE), &bytes)
    }

    pub(crate) fn tiering_status(&self) -> Result<TieringStatus> {
        let manifest = self.manifest.snapshot()?;
        let mut tiers: BTreeMap<StorageTier, TierStats> = BTreeMap::new();
        let mut collections = Vec::new();
        let mut in_progress = Vec::new();
        for c in self.collections.read().values() {
            let Some(entry) = manifest.collections.get(c.name()) else {
                continue;
            };
            let snap = c.snapshot();
            let busy = c.busy().snapshot();
            let mut ctiers: BTreeMap<StorageTier, TierStats> = BTreeMap::new();
            let mut segments = Vec::new();
            for s in &entry.segments {
                for t in [&mut ctiers, &mut tiers] {
                    let ts = t.entry(s.tier).or_default();
                    ts.segments += 1;
                    ts.bytes += s.size_bytes;
                }
                let h = snap.segments.iter().find(|h| h.entry.id == s.id);
                if let Some(what) = busy.get(&s.id) {
                    in_progress.push((entry.name.clone(), s.id, (*what).to_owned()));
                }
                segments.push(SegmentStatus {
                    id: s.id,
                    tier: s.tier,
                    size_bytes: s.size_bytes,
                    rows: s.rows,
                    remote: s.remote_key.is_some(),
                    pinned: s.pinned || entry.pinned,
                    sealed_at_ms: s.created_at_ms,
                    last_access_ms: h.and_then(|h| h.access.last()),
                    access_count: h.map_or(0, |h| h.access.count.load(Ordering::Relaxed)),
                    busy: busy.get(&s.id).map(|w| (*w).to_owned()),
                });
            }
            collections.push(CollectionTierStatus {
                name: entry.name.clone(),
                pinned: entry.pinned,
                overrides: entry.tiering.clone(),
                tiers: ctiers,
                segments,
            });
        }
        let e = &self.env;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let counters = TieringCounters {
            uploads: load(&e.counters.uploads),
            downloads: load(&e.counters.downloads),
            local_copies: load(&e.counters.local_copies),
            bytes_uploaded: load(&e.counters.bytes_uploaded),
            bytes_downloaded: load(&e.counters.bytes_downloaded),
            moves_done: load(&e.counters.moves_done),
            moves_failed: load(&e.counters.moves_failed),
            move_millis: load(&e.counters.move_millis),
            orphans_deleted: load(&e.counters.orphans_deleted),
            cache_hits: load(&e.cache.counters.hits),
            cache_misses: load(&e.cache.counters.misses),
            cache_evictions: load(&e.cache.counters.evictions),
            cache_bytes: e.cache.bytes(),
            cache_budget_bytes: e.cache.budget(),
            heads_kept: e.cache.kept_usage().0,
            heads_kept_bytes: e.cache.kept_usage().1,
            remote_requests: load(&e.cold.counters.requests),
            remote_failures: load(&e.cold.counters.failures),
            remote_bytes_fetched: load(&e.cold.counters.bytes_fetched),
        };
        Ok(TieringStatus {
            cold_store: e.cold.description().to_owned(),
            warm_dir: e.warm_dir.clone(),
            tiers,
            collections,
            in_progress,
            last_errors: self.tier_state.errors.lock().values().cloned().collect(),
            counters,
            last_maintenance_ms: *self.tier_state.last_maintenance_ms.lock(),
            cold_store_reachable: None,
            cold_store_error: None,
            cold_store_health: e.cold.health(),
            poisoned: self.poison.reason().map(str::to_owned),
            bucket: self.bucket.status(e, &manifest, &self.poison),
        })
    }
}
