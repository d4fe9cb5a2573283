//! Tiering: sealed segments move between the hot data directory, an optional warm directory and
//! object storage, and every read stays correct wherever the data is (DESIGN.md §5–§6).
//!
//! (Being written.)

mod clock;
pub mod policy;

pub use clock::{Clock, ManualClock, SystemClock};
pub use policy::{MoveReason, PlanInput, PlannedMove, SegmentState, TieringOverrides, TieringPolicy, plan};
