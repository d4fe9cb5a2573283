//! Immutable segment files: the format, a streaming writer and a range-reading reader.
//!
//! A segment is written once (by a flush or a compaction), sealed when its manifest entry is
//! committed, and never changed afterwards. Rows are sorted by id, so a point lookup is a binary
//! search over the id-page fences in the footer and then inside one page.

mod error;
pub mod format;
mod reader;
mod source;
mod writer;

pub use error::SegmentError;
pub use reader::{Block, Lookup, OwnedEntry, Segment};
pub use source::{MmapSource, RangeSource};
pub use writer::{RowInput, SegmentInfo, SegmentWriter};

#[cfg(test)]
mod tests;
