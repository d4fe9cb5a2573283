//! The tiering policy: a pure function from a snapshot of segment states and the clock to the
//! moves to make. No I/O, no clock reads, no randomness; table-tested in `policy_tests.rs`.
//!
//! [`plan`] only says *what* should move ([`PlannedMove`]); the tiering manager decides when, runs
//! the copy → verify → commit → delete sequence (docs/design.md §6) and reports failures. Running
//! `plan` twice on the same [`PlanInput`] gives the same moves in the same order.
//!
//! # Knobs
//!
//! Each collection's *effective* `move_to_warm_after`, `move_to_cold_after` and `min_residency`
//! are the database-wide [`TieringPolicy`] values, replaced by the collection's
//! [`TieringOverrides`] fields that are `Some` (an override cannot switch a global rule off).
//! Budgets are different: `TieringPolicy::max_{hot,warm}_size_bytes` bound the whole database, and
//! an override's `max_{hot,warm}_size_bytes` adds a second, per-collection bound.
//!
//! # Times
//!
//! All arithmetic on times saturates. A segment's *reference time* is `last_access_ms` if it was
//! ever read, else `sealed_at_ms`; its idle time is `now_ms - reference` (0 if the reference is in
//! the future). A segment is *settling* when it moved less than `min_residency` ago
//! (`now_ms - last_move_ms < min_residency`; a `last_move_ms` in the future counts as just now).
//!
//! # Rules, in the order they are applied
//!
//! 1. **Busy** segments are never moved and are never candidates, but their bytes count toward
//!    their tier's totals.
//! 2. **Pins**: a pinned segment that is not Hot moves to Hot (`Pinned`), even while settling. A
//!    pinned segment is never demoted by any other rule. A collection pin is expressed by the
//!    caller setting `pinned` on each of its segments.
//! 3. **Inactivity** (not pinned, not settling): a Hot or Warm segment idle for at least
//!    `move_to_cold_after` moves to Cold; otherwise a Hot segment idle for at least
//!    `move_to_warm_after` moves to Warm, only if `warm_enabled` (`Inactive`). Cold wins when both
//!    thresholds are passed.
//! 4. **Hot budget** (`HotBudget`): first each collection with an override budget, then the
//!    database-wide budget. The Hot total is counted *after* the moves already planned (a segment
//!    planned out of Hot no longer counts; a pinned segment planned into Hot does). While the total
//!    is over budget, eligible Hot segments move to Warm (or to Cold without `warm_enabled`) in
//!    least-recently-used order: oldest reference time first, then collection name, then segment
//!    id. It stops as soon as the total is at most the budget, or when no eligible segment is left
//!    (no error: the next pass tries again).
//! 5. **Warm budget** (`WarmBudget`): the same, Warm to Cold. Segments planned into Warm by the
//!    rules above count toward the Warm total but are not eligible themselves (one move each).
//!
//! *Eligible* for a budget move means: currently in that tier, not pinned, not busy, not settling
//! and no move planned yet.
//!
//! # Invariants of the output
//!
//! - At most one move per segment, and `from != to` (`from` is the segment's current tier).
//! - Only pins move a segment up (to Hot); every other move goes down (Hot → Warm → Cold).
//! - No move for a busy segment; no move but a pin for a settling segment.
//! - Order: pin moves first, then by collection name, then by segment id.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::tier::StorageTier;
pub use crate::tier::{TieringOverrides, TieringPolicy};

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

/// The moves to make now, at most one per segment, following the rules of the module doc.
///
/// The result is sorted: moves with reason [`MoveReason::Pinned`] first, then by collection name,
/// then by segment id (then by position in `input.segments`, should a snapshot repeat a segment).
/// An empty result means nothing needs to move. Pure: no I/O, and `input.now_ms` is the only clock.
pub fn plan(input: &PlanInput<'_>) -> Vec<PlannedMove> {
    let now = input.now_ms;
    let mut slots: Vec<Slot<'_>> = input
        .segments
        .iter()
        .map(|seg| Slot {
            seg,
            knobs: Knobs::for_collection(input.policy, input.overrides.get(&seg.collection)),
            planned: None,
        })
        .collect();

    // Rules 1–3: pins and inactivity, segment by segment.
    for slot in &mut slots {
        let seg = slot.seg;
        if seg.busy {
            continue;
        }
        if seg.pinned {
            if seg.tier != StorageTier::Hot {
                slot.planned = Some((StorageTier::Hot, MoveReason::Pinned));
            }
            continue;
        }
        if slot.knobs.is_settling(seg, now) {
            continue;
        }
        if let Some(to) = slot.knobs.inactivity_target(seg, input.warm_enabled, now) {
            slot.planned = Some((to, MoveReason::Inactive));
        }
    }

    // Rules 4–5: budgets, per collection (in name order) before database-wide.
    let mut budgeted: Vec<(&String, &TieringOverrides)> = input.overrides.iter().collect();
    budgeted.sort_by(|a, b| a.0.cmp(b.0));
    let hot_overflow = if input.warm_enabled {
        StorageTier::Warm
    } else {
        StorageTier::Cold
    };
    let budgets = [
        (StorageTier::Hot, hot_overflow, MoveReason::HotBudget),
        (StorageTier::Warm, StorageTier::Cold, MoveReason::WarmBudget),
    ];
    for (from, to, reason) in budgets {
        let demotion = Demotion {
            from,
            to,
            reason,
            now,
        };
        for (collection, overrides) in &budgeted {
            if let Some(budget) = overrides.budget(from) {
                demotion.enforce(&mut slots, budget, Some(collection.as_str()));
            }
        }
        if let Some(budget) = input.policy.budget(from) {
            demotion.enforce(&mut slots, budget, None);
        }
    }

    let mut moves: Vec<PlannedMove> = slots
        .iter()
        .filter_map(|slot| {
            let (to, reason) = slot.planned?;
            debug_assert_ne!(slot.seg.tier, to, "a planned move changes tier");
            Some(PlannedMove {
                collection: slot.seg.collection.clone(),
                segment_id: slot.seg.segment_id,
                from: slot.seg.tier,
                to,
                size_bytes: slot.seg.size_bytes,
                reason,
            })
        })
        .collect();
    // Stable: a repeated segment keeps its snapshot order.
    moves.sort_by(|a, b| output_key(a).cmp(&output_key(b)));
    moves
}

/// Pins first, then collection name, then segment id.
fn output_key(m: &PlannedMove) -> (bool, &str, u64) {
    (m.reason != MoveReason::Pinned, &m.collection, m.segment_id)
}

/// One segment of the snapshot and what the plan has decided for it so far.
#[derive(Debug)]
struct Slot<'a> {
    seg: &'a SegmentState,
    knobs: Knobs,
    /// Target tier and reason, once a rule has claimed the segment.
    planned: Option<(StorageTier, MoveReason)>,
}

impl Slot<'_> {
    /// The tier the segment will be in once the planned moves are done.
    fn tier_after(&self) -> StorageTier {
        self.planned.map_or(self.seg.tier, |(to, _)| to)
    }
}

/// The knobs that apply to one collection (global values with its overrides on top).
#[derive(Debug, Clone, Copy)]
struct Knobs {
    warm_after_ms: Option<u64>,
    cold_after_ms: Option<u64>,
    min_residency_ms: u64,
}

impl Knobs {
    fn for_collection(policy: &TieringPolicy, overrides: Option<&TieringOverrides>) -> Knobs {
        let local = |get: fn(&TieringOverrides) -> Option<Duration>| overrides.and_then(get);
        Knobs {
            warm_after_ms: local(|o| o.move_to_warm_after)
                .or(policy.move_to_warm_after)
                .map(millis),
            cold_after_ms: local(|o| o.move_to_cold_after)
                .or(policy.move_to_cold_after)
                .map(millis),
            min_residency_ms: millis(local(|o| o.min_residency).unwrap_or(policy.min_residency)),
        }
    }

    /// Moved less than `min_residency` ago: only a pin may move it.
    fn is_settling(&self, seg: &SegmentState, now_ms: u64) -> bool {
        seg.last_move_ms
            .is_some_and(|moved| now_ms.saturating_sub(moved) < self.min_residency_ms)
    }

    /// Where the inactivity rule sends the segment, if anywhere.
    fn inactivity_target(
        &self,
        seg: &SegmentState,
        warm_enabled: bool,
        now_ms: u64,
    ) -> Option<StorageTier> {
        let idle = now_ms.saturating_sub(reference_ms(seg));
        let passed = |threshold: Option<u64>| threshold.is_some_and(|t| idle >= t);
        match seg.tier {
            StorageTier::Hot | StorageTier::Warm if passed(self.cold_after_ms) => {
                Some(StorageTier::Cold)
            }
            StorageTier::Hot if warm_enabled && passed(self.warm_after_ms) => {
                Some(StorageTier::Warm)
            }
            _ => None,
        }
    }
}

/// One budget rule: move `from` → `to` for `reason` until a total fits.
#[derive(Debug, Clone, Copy)]
struct Demotion {
    from: StorageTier,
    to: StorageTier,
    reason: MoveReason,
    now: u64,
}

impl Demotion {
    /// Brings the bytes that will be in `self.from` (within `collection`, or the whole database
    /// for `None`) down to `budget`, least recently used first, as far as eligible segments allow.
    fn enforce(&self, slots: &mut [Slot<'_>], budget: u64, collection: Option<&str>) {
        let in_scope = |slot: &Slot<'_>| collection.is_none_or(|c| slot.seg.collection == c);
        // u128: a sum of u64 sizes cannot overflow it.
        let mut total: u128 = slots
            .iter()
            .filter(|slot| in_scope(slot) && slot.tier_after() == self.from)
            .map(|slot| u128::from(slot.seg.size_bytes))
            .sum();
        let budget = u128::from(budget);
        if total <= budget {
            return;
        }
        let mut candidates: Vec<usize> = (0..slots.len())
            .filter(|&i| {
                let slot = &slots[i];
                let seg = slot.seg;
                in_scope(slot)
                    && slot.planned.is_none()
                    && seg.tier == self.from
                    && !seg.pinned
                    && !seg.busy
                    && !slot.knobs.is_settling(seg, self.now)
            })
            .collect();
        candidates.sort_by(|&a, &b| lru_key(slots[a].seg).cmp(&lru_key(slots[b].seg)));
        for i in candidates {
            if total <= budget {
                break;
            }
            slots[i].planned = Some((self.to, self.reason));
            total -= u128::from(slots[i].seg.size_bytes);
        }
    }
}

/// The budget bound for `tier`, if any (Cold has none).
trait Budgets {
    fn budget(&self, tier: StorageTier) -> Option<u64>;
}

impl Budgets for TieringPolicy {
    fn budget(&self, tier: StorageTier) -> Option<u64> {
        match tier {
            StorageTier::Hot => self.max_hot_size_bytes,
            StorageTier::Warm => self.max_warm_size_bytes,
            StorageTier::Cold => None,
        }
    }
}

impl Budgets for TieringOverrides {
    fn budget(&self, tier: StorageTier) -> Option<u64> {
        match tier {
            StorageTier::Hot => self.max_hot_size_bytes,
            StorageTier::Warm => self.max_warm_size_bytes,
            StorageTier::Cold => None,
        }
    }
}

/// Least recently used first: reference time, then collection name, then segment id.
fn lru_key(seg: &SegmentState) -> (u64, &str, u64) {
    (reference_ms(seg), &seg.collection, seg.segment_id)
}

/// Last read if ever read, else sealed: what "idle" and "least recently used" are measured from.
fn reference_ms(seg: &SegmentState) -> u64 {
    seg.last_access_ms.unwrap_or(seg.sealed_at_ms)
}

/// A duration in whole milliseconds, saturating at `u64::MAX`.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
