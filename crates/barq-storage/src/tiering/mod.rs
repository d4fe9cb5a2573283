//! Tiering: sealed segments move between the hot data directory, an optional warm directory and
//! object storage, and every read stays correct wherever the data is (docs/design.md §5–§6).
//!
//! Names: [`TieringPolicy`] and [`plan`] decide (pure); the `Mover` (`mover/`) executes one
//! move with the safe protocol; [`TieringManager`] runs the loop that connects them and answers
//! `status()`. [`ColdStore`] wraps the `object_store` crate, [`RemoteSource`] reads a cold
//! segment by range through the [`ColdCache`].
//!
//! # Per-segment state machine
//!
//! ```text
//!            offload: upload → verify → commit → delete local
//!   Local ───────────────────────────────────────────────▶ Remote
//!  (Hot/Warm,                                            (Cold: bytes only in the store,
//!   no remote copy)                                        ranges cached locally)
//!     ▲                                                     │
//!     │ (compaction output, flush)                          │ hydrate: download *.tmp → verify
//!     │                                                     ▼          → rename+fsync → commit
//!   Local+Remote  ◀──────────────────────────────────────── Downloading
//!  (Hot/Warm with remote_key: offloading again is verify-by-size → commit → delete local)
//! ```
//! Upload on seal ([`TieringOptions::upload_on_seal`]) takes a sealed Local segment straight to
//! Local+Remote (upload → verify → commit the `remote_key`; nothing is deleted), and the
//! manifest versions that name it are then published to the bucket ([`crate::bucket`]).
//!
//! The transitional states (Uploading, Downloading, Copying between Hot and Warm) exist only
//! while a move or an upload holds the segment's *busy* mark and are never written to the
//! manifest.
//!
//! Invariants:
//! - the manifest names exactly one tier per segment, and the bytes are there before the
//!   manifest says so (copy → verify → commit → delete, never another order);
//! - a source copy is deleted only after the commit that made it unnecessary;
//! - a segment that is busy (being moved or compacted) is not picked by another move or
//!   compaction;
//! - after a crash at any step, opening the database reconciles: copies the manifest does not
//!   point at are deleted, `*.tmp` files are swept, and objects no manifest entry references are
//!   deleted by maintenance once older than the grace period.

pub mod cache;
mod health;
pub mod kept;
mod limiter;
pub(crate) mod manager;
mod mover;
mod permits;
pub mod policy;
mod reconcile;
mod remote;
pub(crate) mod state;
pub(crate) mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::options::FailPoints;
pub use barq_core::{Clock, SystemClock};
pub use cache::ColdCache;
pub use health::{ColdStoreHealth, ColdStoreState};
pub(crate) use limiter::Limiter;
pub use manager::{
    BatchMoves, CollectionTierStatus, MaintenanceReport, MoveError, SegmentStatus, TieringCounters,
    TieringManager, TieringStatus,
};
pub use mover::{CopyKind, MoveOutcome, MoverError, Progress};
pub use policy::{
    MoveReason, PlanInput, PlannedMove, SegmentState, TieringOverrides, TieringPolicy, plan,
};
pub(crate) use reconcile::reconcile_collection;
pub use remote::RemoteSource;
pub use store::{ColdStore, ColdStoreError, StoreCounters};

/// An object store for the cold tier, with the key prefix Barq's objects live under.
#[derive(Clone)]
pub struct ColdStoreSpec {
    /// The store (S3, GCS, Azure, local directory, in memory, …).
    pub store: Arc<dyn object_store::ObjectStore>,
    /// Key prefix (may be empty).
    pub prefix: String,
    /// How to name the store in logs and errors (no secrets).
    pub description: String,
}

impl std::fmt::Debug for ColdStoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdStoreSpec")
            .field("description", &self.description)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// How an upload is verified before the manifest points at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadVerification {
    /// Read the whole object back and compare its size and CRC32C with the manifest's: catches
    /// any corruption on the way and in the store, at the cost of a second transfer. The default.
    #[default]
    ReadBack,
    /// Compare only the size the store reports (a HEAD request). For stores that verify
    /// request checksums themselves (S3 with `x-amz-checksum-*`, GCS with CRC32C), where a read
    /// back adds cost and no safety. Reads still check every block's CRC32C.
    Size,
}

/// Tiering settings of a database.
#[derive(Debug, Clone)]
pub struct TieringOptions {
    /// The warm tier: a second local directory. `None`: no warm tier.
    pub warm_dir: Option<PathBuf>,
    /// When segments move.
    pub policy: TieringPolicy,
    /// How often the maintenance loop runs (±10 % jitter). `None`: only on demand. Default 60 s.
    pub maintenance_interval: Option<Duration>,
    /// Byte budget of the local cache of cold data. Default 1 GiB.
    pub cold_cache_bytes: u64,
    /// Moves running at once, all callers together (maintenance, engine and CLI calls, HTTP
    /// operations); a move waits for a free slot. Default 2.
    pub move_concurrency: usize,
    /// Bytes per second all moves together may transfer. `None`: unlimited.
    pub move_bandwidth_bytes_per_sec: Option<u64>,
    /// An object no manifest entry references is deleted once it is this old. Default 1 h.
    pub orphan_grace: Duration,
    /// Uploads larger than this use multipart, in parts of this size. Default 8 MiB.
    pub multipart_part_bytes: usize,
    /// How uploads are verified before the commit. Default [`UploadVerification::ReadBack`].
    pub verify_uploads: UploadVerification,
    /// At open, write, read back and delete a small probe object under the prefix, so that a
    /// misconfigured or unreachable store is reported at once (an error log naming the store
    /// and the step that failed, and a `degraded` status) rather than at the first move.
    /// Default true.
    pub probe_on_open: bool,
    /// Refuse to open when the probe at open fails (it is otherwise logged, the store is
    /// degraded, and hot data is served). Default false.
    pub cold_store_required: bool,
    /// While the store is degraded, probe it this often until it answers. Default 10 s.
    pub store_recheck_interval: Duration,
    /// Share the database through the store: copy each sealed segment there soon after it is
    /// sealed (it stays local too, Local+Remote, so a later offload is only a local delete),
    /// and publish each manifest version under `<prefix>/manifest/` once every segment it
    /// names is in the store, so that the bucket alone can restore the database or feed
    /// read replicas (see [`crate::bucket`]). `None`, the default: on when a cold store is
    /// configured, off for the default local `DATA_DIR/cold`.
    pub upload_on_seal: Option<bool>,
    /// How often pending uploads and the manifest are published. Default 200 ms: a pass with
    /// nothing new to upload or publish costs no request.
    pub upload_interval: Duration,
    /// Where clients reach this writer (e.g. `http://10.0.0.5:6464`), published with each
    /// manifest version so that replicas can name it when they refuse a write. `None`: not
    /// published.
    pub writer_url: Option<String>,
    /// Manifest versions in the bucket older than this are deleted (the newest always stays),
    /// and an object is not collected as an orphan before it has been unreferenced this long,
    /// so a reader of any retained version finds every segment it names. Default 1 h.
    pub manifest_retention: Duration,
}

impl Default for TieringOptions {
    fn default() -> Self {
        TieringOptions {
            warm_dir: None,
            policy: TieringPolicy::default(),
            maintenance_interval: Some(Duration::from_secs(60)),
            cold_cache_bytes: 1 << 30,
            move_concurrency: 2,
            move_bandwidth_bytes_per_sec: None,
            orphan_grace: Duration::from_secs(3600),
            multipart_part_bytes: 8 << 20,
            verify_uploads: UploadVerification::ReadBack,
            probe_on_open: true,
            cold_store_required: false,
            store_recheck_interval: Duration::from_secs(10),
            upload_on_seal: None,
            upload_interval: Duration::from_millis(200),
            writer_url: None,
            manifest_retention: Duration::from_secs(3600),
        }
    }
}

/// Last access and access count of one segment, in memory; persisted by maintenance.
#[derive(Debug, Default)]
pub(crate) struct AccessStats {
    pub last_ms: AtomicU64,
    pub count: AtomicU64,
}

impl AccessStats {
    pub(crate) fn touch(&self, now_ms: u64) {
        self.last_ms.fetch_max(now_ms, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn last(&self) -> Option<u64> {
        Some(self.last_ms.load(Ordering::Relaxed)).filter(|v| *v > 0)
    }
}

/// Counters of moves.
#[derive(Debug, Default)]
pub(crate) struct MoveCounters {
    pub uploads: AtomicU64,
    pub downloads: AtomicU64,
    pub local_copies: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub bytes_downloaded: AtomicU64,
    pub moves_done: AtomicU64,
    pub moves_failed: AtomicU64,
    pub orphans_deleted: AtomicU64,
    /// Copies made by upload on seal (also counted in `uploads`).
    pub seal_uploads: AtomicU64,
    /// Wall time spent in moves that were done, in milliseconds.
    pub move_millis: AtomicU64,
}

/// What the engine needs to place and read segments in any tier.
#[derive(Debug)]
pub(crate) struct TierEnv {
    pub cold: ColdStore,
    pub cache: Arc<ColdCache>,
    pub warm_dir: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
    pub options: TieringOptions,
    /// Fault injection (empty in production).
    pub failpoints: FailPoints,
    pub limiter: Arc<Limiter>,
    pub counters: MoveCounters,
    /// Whether sealed segments are uploaded and manifests published ([`TieringOptions::upload_on_seal`],
    /// resolved).
    pub shared_bucket: bool,
    /// The bound on moves running at once (`move_concurrency`).
    pub move_permits: permits::MovePermits,
    /// The task that re-probes a degraded store; aborted when the database is dropped.
    _recheck: store::AbortOnDrop<()>,
}

impl TierEnv {
    pub(crate) fn new(
        data_dir: &std::path::Path,
        options: &TieringOptions,
        components: crate::db::Components,
    ) -> barq_core::Result<TierEnv> {
        let crate::db::Components {
            cold_store,
            clock,
            failpoints,
        } = components;
        let shared_bucket = options.upload_on_seal.unwrap_or(cold_store.is_some());
        let spec = match cold_store {
            Some(spec) => spec,
            None => {
                let dir = data_dir.join("cold");
                std::fs::create_dir_all(&dir).map_err(|e| {
                    barq_core::Error::io(format_args!("create {}", dir.display()), e)
                })?;
                let store =
                    object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| {
                        barq_core::Error::internal(format!(
                            "local cold store {}: {e}",
                            dir.display()
                        ))
                    })?;
                ColdStoreSpec {
                    store: Arc::new(store),
                    prefix: String::new(),
                    description: format!("file://{}", dir.display()),
                }
            }
        };
        if let Some(w) = &options.warm_dir {
            crate::fsutil::create_dir_durable(&w.join("collections"))?;
        }
        let cold = ColdStore::new(spec.store, &spec.prefix, spec.description)?;
        Ok(TierEnv {
            _recheck: cold.spawn_recheck(options.store_recheck_interval),
            cold,
            cache: Arc::new(
                ColdCache::open(&data_dir.join("cache"), options.cold_cache_bytes)?
                    .with_kept(kept::KeptRanges::open(&data_dir.join("kept"))?),
            ),
            warm_dir: options.warm_dir.clone(),
            clock,
            failpoints,
            limiter: Arc::new(Limiter::new(options.move_bandwidth_bytes_per_sec)),
            counters: MoveCounters::default(),
            shared_bucket,
            move_permits: permits::MovePermits::new(options.move_concurrency),
            options: options.clone(),
        })
    }

    /// Is the store answering? One HEAD of a key that need not exist (a "not found" answer is
    /// an answer), so that a readiness check costs no write.
    pub(crate) fn check_reachable(&self) -> barq_core::Result<()> {
        use object_store::ObjectStoreExt;
        let cold = &self.cold;
        let key = cold.key(".barq-ready");
        let p = object_store::path::Path::from(key.as_str());
        match cold.block_on(cold.inner().head(&p)) {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(cold.error("check that the store is reachable", e)),
        }
    }

    /// The check at open: probe the store (unless `probe_on_open` is off). A failure is
    /// logged and makes the store degraded, and the database opens all the same; with
    /// `cold_store_required` it fails the open instead.
    pub(crate) fn check_at_open(&self) -> barq_core::Result<()> {
        if !self.options.probe_on_open {
            return Ok(());
        }
        match self.cold.block_on(self.cold.probe()) {
            Ok(()) => Ok(()),
            Err(e) if self.options.cold_store_required => Err(barq_core::Error::new(
                e.kind(),
                format!(
                    "{} (the cold store is required: storage.required / BARQ_COLD_STORE_REQUIRED)",
                    e.message()
                ),
            )
            .with_source(e)),
            Err(_) => Ok(()), // logged and recorded by the probe; re-probed in the background
        }
    }

    /// The directory holding a collection's segments in `tier` (Hot or Warm).
    pub(crate) fn segments_dir(
        &self,
        hot_collection_dir: &std::path::Path,
        collection: &str,
        tier: crate::StorageTier,
    ) -> barq_core::Result<PathBuf> {
        match tier {
            crate::StorageTier::Hot => Ok(hot_collection_dir.join("segments")),
            crate::StorageTier::Warm => self
                .warm_dir
                .as_ref()
                .map(|w| w.join("collections").join(collection).join("segments"))
                .ok_or_else(|| {
                    barq_core::Error::invalid("the warm tier is not configured (set warm_dir)")
                }),
            crate::StorageTier::Cold => Err(barq_core::Error::internal(
                "the cold tier has no local directory",
            )),
        }
    }
}
