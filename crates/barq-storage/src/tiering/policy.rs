//! The tiering policy: a pure function from a snapshot of segment states and the clock to the
//! moves to make. No I/O; table-tested.
//!
//! (Being written: see `plan`.)

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::manifest::StorageTier;

/// Database-wide tiering knobs. `None` disables a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TieringPolicy {
    /// A Hot segment idle this long moves to Warm (only when a warm directory is configured).
    pub move_to_warm_after: Option<Duration>,
    /// A Hot or Warm segment idle this long moves to Cold.
    pub move_to_cold_after: Option<Duration>,
    /// When the Hot segments hold more bytes than this, the least recently used move down.
    pub max_hot_size_bytes: Option<u64>,
    /// When the Warm segments hold more bytes than this, the least recently used move to Cold.
    pub max_warm_size_bytes: Option<u64>,
    /// A segment that moved less than this long ago is not moved again by the policy.
    pub min_residency: Duration,
}

impl Default for TieringPolicy {
    fn default() -> Self {
        TieringPolicy {
            move_to_warm_after: None,
            move_to_cold_after: None,
            max_hot_size_bytes: None,
            max_warm_size_bytes: None,
            min_residency: Duration::from_secs(600),
        }
    }
}

/// Per-collection overrides: `Some` replaces the database-wide value for that collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TieringOverrides {
    /// See [`TieringPolicy::move_to_warm_after`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_to_warm_after: Option<Duration>,
    /// See [`TieringPolicy::move_to_cold_after`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_to_cold_after: Option<Duration>,
    /// A budget for this collection's Hot bytes (the database-wide budget still applies too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hot_size_bytes: Option<u64>,
    /// A budget for this collection's Warm bytes (the database-wide budget still applies too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_warm_size_bytes: Option<u64>,
    /// See [`TieringPolicy::min_residency`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_residency: Option<Duration>,
}

/// What the policy knows about one sealed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentState {
    /// Its collection.
    pub collection: String,
    /// Its id (unique within the collection).
    pub segment_id: u64,
    /// Where it is now.
    pub tier: StorageTier,
    /// File size.
    pub size_bytes: u64,
    /// When it was sealed (ms since the Unix epoch).
    pub sealed_at_ms: u64,
    /// Last read, if it was ever read.
    pub last_access_ms: Option<u64>,
    /// Last time it changed tier, if ever.
    pub last_move_ms: Option<u64>,
    /// Pinned (itself or its collection): it must be Hot.
    pub pinned: bool,
    /// Being flushed, compacted or moved: not eligible now.
    pub busy: bool,
}

/// Why a move was planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveReason {
    /// Pinned but not Hot.
    Pinned,
    /// Idle past `move_to_warm_after` / `move_to_cold_after`.
    Inactive,
    /// Hot bytes over budget.
    HotBudget,
    /// Warm bytes over budget.
    WarmBudget,
}

/// One move the policy wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedMove {
    /// The segment's collection.
    pub collection: String,
    /// The segment.
    pub segment_id: u64,
    /// Where it is.
    pub from: StorageTier,
    /// Where it should go.
    pub to: StorageTier,
    /// Its size.
    pub size_bytes: u64,
    /// Why.
    pub reason: MoveReason,
}

/// Everything `plan` looks at.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// Every sealed segment of every collection.
    pub segments: &'a [SegmentState],
    /// Database-wide knobs.
    pub policy: &'a TieringPolicy,
    /// Per-collection overrides.
    pub overrides: &'a HashMap<String, TieringOverrides>,
    /// Whether a warm directory is configured (without one, Warm is skipped).
    pub warm_enabled: bool,
    /// The clock.
    pub now_ms: u64,
}

/// The moves to make now, at most one per segment.
pub fn plan(input: &PlanInput<'_>) -> Vec<PlannedMove> {
    let _ = input;
    Vec::new()
}
