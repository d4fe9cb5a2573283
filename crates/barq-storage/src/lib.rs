//! The Barq DB storage engine.
//!
//! Writes go to a per-collection write-ahead log ([`Durability`] says when they are durable) and
//! a memtable; full memtables are flushed into immutable, checksummed segment files that are
//! designed to be read by byte range (see `docs/format.md`); a manifest, replaced atomically,
//! says which segments exist. Size-tiered compaction merges segments in the background. Exact
//! k-NN search scans memtables and segments in parallel. See `docs/architecture.md`.
//!
//! ```
//! use barq_core::{CollectionConfig, Document, Metric};
//! use barq_storage::{Database, Options, SearchRequest};
//!
//! # fn main() -> barq_core::Result<()> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let db = Database::open(dir.path(), Options::default())?;
//! db.create_collection(CollectionConfig::new("docs", 3, Metric::Cosine)?)?;
//! db.upsert("docs", &[
//!     Document::new("a", vec![1.0, 0.0, 0.0]),
//!     Document::new("b", vec![0.0, 1.0, 0.0]),
//! ])?;
//! let hits = db.search("docs", &SearchRequest::new(vec![0.9, 0.1, 0.0], 1))?;
//! assert_eq!(hits[0].id, "a");
//! db.close()?;
//! # Ok(())
//! # }
//! ```

mod background;
pub mod bucket;
mod collection;
mod db;
mod fsutil;
mod lock;
mod manifest;
mod memtable;
mod options;
mod poison;
mod recall;
pub mod segment;
mod shadows;
mod shared;
mod tier;
pub mod tiering;
mod wal;

pub use barq_index::IndexParams;
pub use collection::compaction::{CompactionOutcome, SizeTieredPolicy, plan_size_tiered};
pub use collection::flush::FlushOutcome;
pub use collection::search::{SearchRequest, SearchStats, SegmentSearch};
pub use db::{
    CollectionStats, Database, DatabaseBuilder, DatabaseStats, DeleteReport, SegmentStats,
};
pub use manifest::{
    CollectionEntry, MANIFEST_FILE, Manifest, ManifestError, SegmentEntry, StorageTier,
};
pub use options::{
    Durability, FP_COMPACTION_AFTER_COMMIT, FP_COMPACTION_BEFORE_COMMIT,
    FP_FLUSH_AFTER_MANIFEST_COMMIT, FP_FLUSH_AFTER_SEGMENT_WRITE, FP_FLUSHER_PANIC,
    FP_INDEX_BEFORE_BUILD, FP_TIER_AFTER_COMMIT, FP_TIER_AFTER_DOWNLOAD, FP_TIER_AFTER_UPLOAD,
    FP_TIER_AFTER_VERIFY, FailPoints, Options,
};
pub use segment::SegmentError;
pub use tier::TierStats;
pub use wal::WalError;
