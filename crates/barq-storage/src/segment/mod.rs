//! Immutable segment files: the format, a streaming writer and a range-reading reader.
//!
//! A segment is written once (by a flush or a compaction), sealed when its manifest entry is
//! committed, and never changed afterwards. The id pages are sorted by id, so a point lookup is a
//! binary search over the id-page fences in the footer and then inside one page. Rows are in id
//! order in a version 1 segment; a version 2 segment (see [`write_indexed`]) stores them in the
//! cluster order of its IVF index, each id-page entry naming its row.

mod error;
pub mod filters;
pub mod format;
mod indexed;
mod reader;
mod source;
mod tally;
mod writer;

pub use error::SegmentError;
pub use filters::{FilterBuilder, FilterIndex};
pub use indexed::{ClusterCodes, ExtentRef, SegmentIndex, write_indexed};
pub use reader::{Block, Lookup, OwnedEntry, Segment, SpreadRows};
pub use source::{MmapSource, RangeSource};
pub use tally::Tally;
pub use writer::{RowInput, SegmentInfo, SegmentWriter};

#[cfg(test)]
mod tests;
