//! Options for [`Database::open`](crate::Database::open) and
//! [`DatabaseBuilder`](crate::DatabaseBuilder).

#[cfg(feature = "failpoints")]
use std::collections::HashSet;
#[cfg(feature = "failpoints")]
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "failpoints")]
use parking_lot::RwLock;

/// When an acknowledged write becomes durable.
///
/// In every mode a write is appended to the WAL with a `write(2)` before it is acknowledged, so
/// an acknowledged write survives a crash of the *process* in every mode. The modes differ in
/// what survives a crash of the *machine* (power loss, kernel panic):
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The WAL is fsynced before the write is acknowledged: an acknowledged write survives power
    /// loss. Concurrent writers share one fsync (group commit). The default.
    Sync,
    /// The WAL is fsynced every `interval` by a background thread: power loss can lose the writes
    /// acknowledged during the last `interval`.
    Interval(Duration),
    /// The WAL is never fsynced (only at flush and close): power loss can lose every write since
    /// the last flush.
    None,
}

/// Settings of a database, fixed while it is open.
#[derive(Debug, Clone)]
pub struct Options {
    /// When acknowledged writes become durable. Default [`Durability::Sync`].
    pub durability: Durability,
    /// A collection's memtable is flushed into a segment once it holds this many bytes.
    /// Default 64 MiB. Larger means fewer, bigger segments and a longer WAL replay after a crash.
    pub memtable_max_bytes: usize,
    /// A memtable holding writes is flushed once its oldest unflushed write is this old, however
    /// small it is (default 5 minutes; `None`: only when full or asked). This bounds the WAL a
    /// restart replays and how long a write lives only in the WAL.
    pub max_unflushed_age: Option<Duration>,
    /// Back-pressure: when a collection's active memtable reaches twice `memtable_max_bytes`
    /// because flushing has not kept up, writers wait for the flush for at most this long and
    /// then fail with `Unavailable` without writing. Default 60 s.
    pub write_stall_timeout: Duration,
    /// Run size-tiered compaction in the background. Default `true`.
    pub background_compaction: bool,
    /// How often the background worker looks for compaction work. Default 10 s.
    pub compaction_check_interval: Duration,
    /// Size-tiered compaction: merge at least this many segments of similar size. Default 4.
    pub compaction_min_segments: usize,
    /// Size-tiered compaction: merge at most this many segments at once. Default 10.
    pub compaction_max_segments: usize,
    /// Size-tiered compaction: segments are "similar" when the largest of a run is at most this
    /// many times the smallest. Default 4.0.
    pub compaction_size_ratio: f64,
    /// Where sealed segments may live besides the data directory, and when they move.
    pub tiering: crate::tiering::TieringOptions,
    /// A compaction output with at least this many rows is written with an IVF index (format
    /// version 2), and the background compaction pass indexes any sealed Hot segment this
    /// large that has none. Default 20,000: below that an exact scan of a segment costs about
    /// half a millisecond at 128 dimensions, less than probing an index, and k-means has too
    /// few rows per cluster to be worth it. `u64::MAX` turns indexing off.
    pub index_min_rows: u64,
    /// Background passes index a flushed segment once it has been sealed this long (default
    /// 5 s): under a burst of writes, young segments are merged by compaction first (which
    /// writes its output with an index) instead of being indexed and then rewritten by the
    /// merge. [`Database::build_indexes`](crate::Database::build_indexes) does not wait.
    pub index_delay: Duration,
    /// How indexes are built (cluster size, code width, seed, calibration).
    pub index: barq_index::IndexParams,
    /// Fraction of the searches through an index that are run again exactly in the background
    /// to measure recall (`CollectionStats::sampled_recall`); 0 turns it off. Default 0.01.
    pub recall_sample_rate: f64,
    /// With a filter, an indexed segment with at most this many live matching rows is searched
    /// by exact distances over just those rows; above it, through its index with the matches
    /// applied inside the scan. Default 2,048 (at 128 dimensions, 1 MiB of vectors: for a cold
    /// segment about what an unfiltered search fetches).
    pub filter_exact_max_rows: u64,
}

/// Named points between the steps of a durable operation where a test can make the operation
/// fail, leaving the files exactly as a crash at that point would. Per database, so tests that
/// run in parallel do not see each other's points; given with
/// [`DatabaseBuilder::failpoints`](crate::DatabaseBuilder::failpoints). Only with the `failpoints` feature (the test
/// suites); without it every check compiles to nothing.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct FailPoints(#[cfg(feature = "failpoints")] Arc<RwLock<HashSet<&'static str>>>);

#[cfg(feature = "failpoints")]
impl FailPoints {
    /// Make `point` fail from now on.
    pub fn enable(&self, point: &'static str) {
        self.0.write().insert(point);
    }

    /// Stop failing at `point`.
    pub fn disable(&self, point: &'static str) {
        self.0.write().remove(point);
    }

    /// Panic if `point` is enabled (for the points that stand for a bug in a worker).
    pub(crate) fn panic_if(&self, point: &'static str) {
        if self.0.read().contains(point) {
            panic!("failpoint {point}");
        }
    }

    /// `Err` if `point` is enabled.
    pub(crate) fn check(&self, point: &'static str) -> barq_core::Result<()> {
        if self.0.read().contains(point) {
            return Err(barq_core::Error::internal(format!("failpoint {point}")));
        }
        Ok(())
    }
}

#[cfg(not(feature = "failpoints"))]
impl FailPoints {
    #[inline(always)]
    pub(crate) fn panic_if(&self, _point: &'static str) {}

    #[inline(always)]
    pub(crate) fn check(&self, _point: &'static str) -> barq_core::Result<()> {
        Ok(())
    }
}

/// Failpoint (a panic, not an error): the background flusher panics when it picks up a
/// collection whose memtable asks for a flush.
pub const FP_FLUSHER_PANIC: &str = "flusher:panic";
/// Failpoint: a flush wrote and renamed its segment file, before the manifest commit.
pub const FP_FLUSH_AFTER_SEGMENT_WRITE: &str = "flush:after-segment-write";
/// Failpoint: a flush committed the manifest, before installing and truncating the WAL.
pub const FP_FLUSH_AFTER_MANIFEST_COMMIT: &str = "flush:after-manifest-commit";
/// Failpoint: a compaction committed the manifest, before deleting its inputs.
pub const FP_COMPACTION_AFTER_COMMIT: &str = "compaction:after-commit";
/// Failpoint: a segment was uploaded, before it was verified.
pub const FP_TIER_AFTER_UPLOAD: &str = "tiering:after-upload";
/// Failpoint: an upload was verified, before the manifest commit.
pub const FP_TIER_AFTER_VERIFY: &str = "tiering:after-verify";
/// Failpoint: a move was committed, before the source copy was deleted.
pub const FP_TIER_AFTER_COMMIT: &str = "tiering:after-commit";
/// Failpoint: a download was renamed into place, before the manifest commit.
pub const FP_TIER_AFTER_DOWNLOAD: &str = "tiering:after-download";
/// Failpoint: a compaction wrote its output without an index, before indexing it.
pub const FP_INDEX_BEFORE_BUILD: &str = "index:before-build";
/// Failpoint: a compaction wrote its output, before the manifest commit.
pub const FP_COMPACTION_BEFORE_COMMIT: &str = "compaction:before-commit";

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            memtable_max_bytes: 64 * 1024 * 1024,
            max_unflushed_age: Some(Duration::from_secs(300)),
            write_stall_timeout: Duration::from_secs(60),
            background_compaction: true,
            compaction_check_interval: Duration::from_secs(10),
            compaction_min_segments: 4,
            compaction_max_segments: 10,
            compaction_size_ratio: 4.0,
            tiering: crate::tiering::TieringOptions::default(),
            index_min_rows: 20_000,
            index_delay: Duration::from_secs(5),
            index: barq_index::IndexParams::default(),
            recall_sample_rate: 0.01,
            filter_exact_max_rows: 2048,
        }
    }
}
