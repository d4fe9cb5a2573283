//! Table tests for [`plan`]: every case states the whole snapshot and the exact moves expected.
//!
//! Unless a case says otherwise: warm is enabled, `min_residency` is 10 minutes, no rule is on,
//! and a segment is Hot, 100 bytes, sealed at the epoch, read just now and never moved. Every case
//! is also run with the snapshot in reverse order, which must not change the output.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use MoveReason::{HotBudget, Inactive, Pinned, WarmBudget};
use StorageTier::{Cold, Hot, Warm};

const MIN: u64 = 60 * 1_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
const NOW: u64 = 1_000 * DAY;

/// `ms` milliseconds before `NOW`.
fn ago(ms: u64) -> u64 {
    NOW - ms
}

fn after(ms: u64) -> Option<Duration> {
    Some(Duration::from_millis(ms))
}

fn seg(collection: &str, segment_id: u64, tier: StorageTier) -> SegmentState {
    SegmentState {
        collection: collection.to_owned(),
        segment_id,
        tier,
        size_bytes: 100,
        sealed_at_ms: 0,
        last_access_ms: Some(NOW),
        last_move_ms: None,
        pinned: false,
        busy: false,
    }
}

/// Test-only setters, so that each case reads as one line per segment.
trait With {
    fn size(self, bytes: u64) -> Self;
    fn read_at(self, ms: u64) -> Self;
    fn never_read(self) -> Self;
    fn sealed_at(self, ms: u64) -> Self;
    fn moved_at(self, ms: u64) -> Self;
    fn pinned(self) -> Self;
    fn busy(self) -> Self;
}

impl With for SegmentState {
    fn size(self, size_bytes: u64) -> Self {
        SegmentState { size_bytes, ..self }
    }
    fn read_at(self, ms: u64) -> Self {
        SegmentState {
            last_access_ms: Some(ms),
            ..self
        }
    }
    fn never_read(self) -> Self {
        SegmentState {
            last_access_ms: None,
            ..self
        }
    }
    fn sealed_at(self, sealed_at_ms: u64) -> Self {
        SegmentState {
            sealed_at_ms,
            ..self
        }
    }
    fn moved_at(self, ms: u64) -> Self {
        SegmentState {
            last_move_ms: Some(ms),
            ..self
        }
    }
    fn pinned(self) -> Self {
        SegmentState {
            pinned: true,
            ..self
        }
    }
    fn busy(self) -> Self {
        SegmentState { busy: true, ..self }
    }
}

fn mv(
    collection: &str,
    segment_id: u64,
    from: StorageTier,
    to: StorageTier,
    reason: MoveReason,
) -> PlannedMove {
    PlannedMove {
        collection: collection.to_owned(),
        segment_id,
        from,
        to,
        size_bytes: 100,
        reason,
    }
}

fn sized(size_bytes: u64, m: PlannedMove) -> PlannedMove {
    PlannedMove { size_bytes, ..m }
}

fn policy() -> TieringPolicy {
    TieringPolicy {
        min_residency: Duration::from_millis(10 * MIN),
        ..TieringPolicy::default()
    }
}

fn overrides(entries: Vec<(&str, TieringOverrides)>) -> HashMap<String, TieringOverrides> {
    entries
        .into_iter()
        .map(|(name, o)| (name.to_owned(), o))
        .collect()
}

struct Case {
    name: &'static str,
    policy: TieringPolicy,
    overrides: HashMap<String, TieringOverrides>,
    warm_enabled: bool,
    now_ms: u64,
    segments: Vec<SegmentState>,
    expected: Vec<PlannedMove>,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            name: "",
            policy: policy(),
            overrides: HashMap::new(),
            warm_enabled: true,
            now_ms: NOW,
            segments: Vec::new(),
            expected: Vec::new(),
        }
    }
}

fn run(cases: Vec<Case>) {
    for case in cases {
        let mut input = PlanInput {
            segments: &case.segments,
            policy: &case.policy,
            overrides: &case.overrides,
            warm_enabled: case.warm_enabled,
            now_ms: case.now_ms,
        };
        assert_eq!(plan(&input), case.expected, "case: {}", case.name);
        let reversed: Vec<SegmentState> = case.segments.iter().rev().cloned().collect();
        input.segments = &reversed;
        assert_eq!(
            plan(&input),
            case.expected,
            "case (reversed input): {}",
            case.name
        );
    }
}

#[test]
fn inactivity_moves() {
    let warm1_cold7 = TieringPolicy {
        move_to_warm_after: after(DAY),
        move_to_cold_after: after(7 * DAY),
        ..policy()
    };
    run(vec![
        Case {
            name: "hot idle past move_to_warm_after goes warm",
            policy: warm1_cold7.clone(),
            segments: vec![seg("a", 1, Hot).read_at(ago(2 * DAY))],
            expected: vec![mv("a", 1, Hot, Warm, Inactive)],
            ..Case::default()
        },
        Case {
            name: "hot idle exactly move_to_warm_after goes warm",
            policy: warm1_cold7.clone(),
            segments: vec![seg("a", 1, Hot).read_at(ago(DAY))],
            expected: vec![mv("a", 1, Hot, Warm, Inactive)],
            ..Case::default()
        },
        Case {
            name: "hot idle 1ms short of move_to_warm_after stays",
            policy: warm1_cold7.clone(),
            segments: vec![seg("a", 1, Hot).read_at(ago(DAY - 1))],
            ..Case::default()
        },
        Case {
            name: "cold wins: hot idle past both thresholds goes straight to cold",
            policy: warm1_cold7.clone(),
            segments: vec![seg("a", 1, Hot).read_at(ago(8 * DAY))],
            expected: vec![mv("a", 1, Hot, Cold, Inactive)],
            ..Case::default()
        },
        Case {
            name: "warm idle past move_to_cold_after goes cold",
            policy: warm1_cold7.clone(),
            segments: vec![seg("a", 1, Warm).read_at(ago(8 * DAY))],
            expected: vec![mv("a", 1, Warm, Cold, Inactive)],
            ..Case::default()
        },
        Case {
            name: "warm idle short of move_to_cold_after stays",
            policy: warm1_cold7.clone(),
            segments: vec![seg("a", 1, Warm).read_at(ago(2 * DAY))],
            ..Case::default()
        },
        Case {
            name: "cold stays cold however idle",
            policy: warm1_cold7.clone(),
            segments: vec![seg("a", 1, Cold).read_at(ago(500 * DAY))],
            ..Case::default()
        },
        Case {
            name: "without warm, move_to_warm_after is ignored",
            policy: warm1_cold7.clone(),
            warm_enabled: false,
            segments: vec![seg("a", 1, Hot).read_at(ago(2 * DAY))],
            ..Case::default()
        },
        Case {
            name: "without warm, hot idle past move_to_cold_after goes cold",
            policy: warm1_cold7.clone(),
            warm_enabled: false,
            segments: vec![seg("a", 1, Hot).read_at(ago(8 * DAY))],
            expected: vec![mv("a", 1, Hot, Cold, Inactive)],
            ..Case::default()
        },
        Case {
            name: "only move_to_warm_after set: a very idle hot segment goes warm, not cold",
            policy: TieringPolicy {
                move_to_warm_after: after(DAY),
                ..policy()
            },
            segments: vec![seg("a", 1, Hot).read_at(ago(500 * DAY))],
            expected: vec![mv("a", 1, Hot, Warm, Inactive)],
            ..Case::default()
        },
        Case {
            name: "no rule set: nothing moves",
            segments: vec![
                seg("a", 1, Hot).read_at(ago(500 * DAY)),
                seg("a", 2, Warm).read_at(0),
            ],
            ..Case::default()
        },
    ]);
}

#[test]
fn idle_time_reference_and_saturating_time() {
    let cold7 = TieringPolicy {
        move_to_cold_after: after(7 * DAY),
        ..policy()
    };
    run(vec![
        Case {
            name: "never read: idle since sealed_at_ms",
            policy: cold7.clone(),
            segments: vec![seg("a", 1, Hot).never_read().sealed_at(ago(8 * DAY))],
            expected: vec![mv("a", 1, Hot, Cold, Inactive)],
            ..Case::default()
        },
        Case {
            name: "never read, sealed recently: stays",
            policy: cold7.clone(),
            segments: vec![seg("a", 1, Hot).never_read().sealed_at(ago(HOUR))],
            ..Case::default()
        },
        Case {
            name: "a recent read counts, not the old seal",
            policy: cold7.clone(),
            segments: vec![seg("a", 1, Hot).sealed_at(ago(30 * DAY)).read_at(ago(HOUR))],
            ..Case::default()
        },
        Case {
            name: "now before sealed_at saturates to idle 0 (no wrap-around)",
            policy: TieringPolicy {
                move_to_cold_after: after(1),
                ..policy()
            },
            now_ms: 5,
            segments: vec![seg("a", 1, Hot).never_read().sealed_at(1_000)],
            ..Case::default()
        },
        Case {
            name: "last access in the future saturates to idle 0",
            policy: TieringPolicy {
                move_to_cold_after: after(1),
                ..policy()
            },
            segments: vec![seg("a", 1, Hot).read_at(NOW + HOUR)],
            ..Case::default()
        },
        Case {
            name: "last move in the future counts as just moved",
            policy: cold7.clone(),
            segments: vec![seg("a", 1, Hot).read_at(ago(30 * DAY)).moved_at(NOW + HOUR)],
            ..Case::default()
        },
        Case {
            name: "a zero threshold moves at once, even at time 0",
            policy: TieringPolicy {
                move_to_cold_after: Some(Duration::ZERO),
                ..policy()
            },
            now_ms: 0,
            segments: vec![seg("a", 1, Hot).never_read().sealed_at(0)],
            expected: vec![mv("a", 1, Hot, Cold, Inactive)],
            ..Case::default()
        },
    ]);
}

#[test]
fn ping_pong_guard() {
    let cold7 = TieringPolicy {
        move_to_cold_after: after(7 * DAY),
        ..policy()
    };
    run(vec![
        Case {
            name: "just moved: stays even though idle",
            policy: cold7.clone(),
            segments: vec![seg("a", 1, Hot).read_at(ago(30 * DAY)).moved_at(ago(MIN))],
            ..Case::default()
        },
        Case {
            name: "moved exactly min_residency ago: may move again",
            policy: cold7.clone(),
            segments: vec![
                seg("a", 1, Hot)
                    .read_at(ago(30 * DAY))
                    .moved_at(ago(10 * MIN)),
            ],
            expected: vec![mv("a", 1, Hot, Cold, Inactive)],
            ..Case::default()
        },
        Case {
            name: "just moved: stays even though over the hot budget; the next LRU goes instead",
            policy: TieringPolicy {
                max_hot_size_bytes: Some(200),
                ..policy()
            },
            segments: vec![
                seg("a", 1, Hot).read_at(ago(30 * DAY)).moved_at(ago(MIN)),
                seg("a", 2, Hot).read_at(ago(20 * DAY)),
                seg("a", 3, Hot).read_at(ago(DAY)),
            ],
            expected: vec![mv("a", 2, Hot, Warm, HotBudget)],
            ..Case::default()
        },
        Case {
            name: "just moved: stays even though over the warm budget",
            policy: TieringPolicy {
                max_warm_size_bytes: Some(100),
                ..policy()
            },
            segments: vec![
                seg("a", 1, Warm)
                    .read_at(ago(30 * DAY))
                    .moved_at(ago(5 * MIN)),
                seg("a", 2, Warm).read_at(ago(DAY)),
            ],
            expected: vec![mv("a", 2, Warm, Cold, WarmBudget)],
            ..Case::default()
        },
        Case {
            name: "min_residency zero never guards",
            policy: TieringPolicy {
                min_residency: Duration::ZERO,
                ..cold7.clone()
            },
            segments: vec![seg("a", 1, Hot).read_at(ago(30 * DAY)).moved_at(NOW)],
            expected: vec![mv("a", 1, Hot, Cold, Inactive)],
            ..Case::default()
        },
        Case {
            name: "a per-collection min_residency applies to that collection only",
            policy: cold7.clone(),
            overrides: overrides(vec![(
                "b",
                TieringOverrides {
                    min_residency: Some(Duration::from_millis(MIN)),
                    ..Default::default()
                },
            )]),
            segments: vec![
                seg("a", 1, Hot)
                    .read_at(ago(30 * DAY))
                    .moved_at(ago(5 * MIN)),
                seg("b", 1, Hot)
                    .read_at(ago(30 * DAY))
                    .moved_at(ago(5 * MIN)),
            ],
            expected: vec![mv("b", 1, Hot, Cold, Inactive)],
            ..Case::default()
        },
    ]);
}

#[test]
fn hot_budget_evicts_least_recently_used() {
    let hot = |bytes| TieringPolicy {
        max_hot_size_bytes: Some(bytes),
        ..policy()
    };
    run(vec![
        Case {
            name: "exactly at budget: nothing moves",
            policy: hot(400),
            segments: (1..=4)
                .map(|id| seg("a", id, Hot).read_at(ago(id * HOUR)))
                .collect(),
            ..Case::default()
        },
        Case {
            name: "over budget: the oldest go first, until under",
            policy: hot(250),
            segments: vec![
                seg("a", 1, Hot).read_at(ago(4 * HOUR)),
                seg("a", 2, Hot).read_at(ago(HOUR)),
                seg("a", 3, Hot).read_at(ago(3 * HOUR)),
                seg("a", 4, Hot).read_at(ago(2 * HOUR)),
            ],
            expected: vec![
                mv("a", 1, Hot, Warm, HotBudget),
                mv("a", 3, Hot, Warm, HotBudget),
            ],
            ..Case::default()
        },
        Case {
            name: "stops as soon as under: one big segment is enough",
            policy: hot(250),
            segments: vec![
                seg("a", 1, Hot).read_at(ago(3 * HOUR)),
                seg("a", 2, Hot).size(400).read_at(ago(2 * HOUR)),
                seg("a", 3, Hot).read_at(ago(HOUR)),
            ],
            expected: vec![
                mv("a", 1, Hot, Warm, HotBudget),
                sized(400, mv("a", 2, Hot, Warm, HotBudget)),
            ],
            ..Case::default()
        },
        Case {
            name: "a never-read segment is as old as its seal",
            policy: hot(100),
            segments: vec![
                seg("a", 1, Hot).never_read().sealed_at(ago(10 * HOUR)),
                seg("a", 2, Hot)
                    .sealed_at(ago(20 * HOUR))
                    .read_at(ago(5 * HOUR)),
            ],
            expected: vec![mv("a", 1, Hot, Warm, HotBudget)],
            ..Case::default()
        },
        Case {
            name: "ties: by collection name, then segment id",
            policy: hot(100),
            segments: vec![
                seg("b", 1, Hot).read_at(ago(HOUR)),
                seg("a", 2, Hot).read_at(ago(HOUR)),
                seg("a", 1, Hot).read_at(ago(HOUR)),
            ],
            expected: vec![
                mv("a", 1, Hot, Warm, HotBudget),
                mv("a", 2, Hot, Warm, HotBudget),
            ],
            ..Case::default()
        },
        Case {
            name: "the database-wide budget spans collections",
            policy: hot(200),
            segments: vec![
                seg("a", 1, Hot).read_at(ago(3 * HOUR)),
                seg("b", 1, Hot).read_at(ago(4 * HOUR)),
                seg("c", 1, Hot).read_at(ago(HOUR)),
            ],
            expected: vec![mv("b", 1, Hot, Warm, HotBudget)],
            ..Case::default()
        },
        Case {
            name: "without warm, hot overflow goes to cold",
            policy: hot(100),
            warm_enabled: false,
            segments: vec![
                seg("a", 1, Hot).read_at(ago(2 * HOUR)),
                seg("a", 2, Hot).read_at(ago(HOUR)),
            ],
            expected: vec![mv("a", 1, Hot, Cold, HotBudget)],
            ..Case::default()
        },
        Case {
            name: "not enough eligible segments: demote what is eligible and stop",
            policy: hot(100),
            segments: vec![
                seg("a", 1, Hot)
                    .size(300)
                    .read_at(ago(DAY))
                    .moved_at(ago(MIN)),
                seg("a", 2, Hot).read_at(ago(HOUR)),
            ],
            expected: vec![mv("a", 2, Hot, Warm, HotBudget)],
            ..Case::default()
        },
        Case {
            name: "inactivity moves out of hot are counted before the budget",
            policy: TieringPolicy {
                move_to_cold_after: after(7 * DAY),
                ..hot(200)
            },
            segments: vec![
                seg("a", 1, Hot).read_at(ago(8 * DAY)),
                seg("a", 2, Hot).read_at(ago(2 * HOUR)),
                seg("a", 3, Hot).read_at(ago(HOUR)),
            ],
            expected: vec![mv("a", 1, Hot, Cold, Inactive)],
            ..Case::default()
        },
        Case {
            name: "warm and cold bytes do not count toward hot",
            policy: hot(100),
            segments: vec![
                seg("a", 1, Hot),
                seg("a", 2, Warm).size(500).read_at(ago(DAY)),
                seg("a", 3, Cold).size(500).read_at(ago(DAY)),
            ],
            ..Case::default()
        },
    ]);
}

#[test]
fn warm_budget_cascade() {
    let budgets = |hot, warm| TieringPolicy {
        max_hot_size_bytes: hot,
        max_warm_size_bytes: Some(warm),
        ..policy()
    };
    run(vec![
        Case {
            name: "hot overflow pushes warm over its budget: the oldest warm goes cold",
            policy: budgets(Some(100), 200),
            segments: vec![
                seg("a", 1, Hot).read_at(ago(HOUR)),
                seg("a", 2, Hot).read_at(ago(2 * HOUR)),
                seg("a", 3, Warm).read_at(ago(5 * DAY)),
                seg("a", 4, Warm).read_at(ago(3 * DAY)),
            ],
            expected: vec![
                mv("a", 2, Hot, Warm, HotBudget),
                mv("a", 3, Warm, Cold, WarmBudget),
            ],
            ..Case::default()
        },
        Case {
            name: "a segment demoted from hot is not moved twice, even if warm stays over",
            policy: budgets(Some(0), 0),
            segments: vec![seg("a", 1, Hot)],
            expected: vec![mv("a", 1, Hot, Warm, HotBudget)],
            ..Case::default()
        },
        Case {
            name: "an inactivity move into warm counts toward the warm budget",
            policy: TieringPolicy {
                move_to_warm_after: after(DAY),
                ..budgets(None, 100)
            },
            segments: vec![
                seg("a", 1, Hot).read_at(ago(2 * DAY)),
                seg("a", 2, Warm).read_at(ago(3 * DAY)),
            ],
            expected: vec![
                mv("a", 1, Hot, Warm, Inactive),
                mv("a", 2, Warm, Cold, WarmBudget),
            ],
            ..Case::default()
        },
        Case {
            name: "an inactivity move out of warm frees the warm budget",
            policy: TieringPolicy {
                move_to_cold_after: after(7 * DAY),
                ..budgets(None, 100)
            },
            segments: vec![
                seg("a", 1, Warm).read_at(ago(8 * DAY)),
                seg("a", 2, Warm).read_at(ago(DAY)),
            ],
            expected: vec![mv("a", 1, Warm, Cold, Inactive)],
            ..Case::default()
        },
        Case {
            name: "without warm, hot overflow goes to cold and leaves the warm total alone",
            policy: budgets(Some(100), 100),
            warm_enabled: false,
            segments: vec![
                seg("a", 1, Hot).read_at(ago(2 * HOUR)),
                seg("a", 2, Hot).read_at(ago(HOUR)),
                seg("a", 3, Warm).read_at(ago(DAY)),
            ],
            expected: vec![mv("a", 1, Hot, Cold, HotBudget)],
            ..Case::default()
        },
    ]);
}

#[test]
fn pins() {
    let cold7 = TieringPolicy {
        move_to_cold_after: after(7 * DAY),
        ..policy()
    };
    run(vec![
        Case {
            name: "pinned cold goes hot despite min_residency",
            segments: vec![seg("a", 1, Cold).pinned().moved_at(ago(MIN))],
            expected: vec![mv("a", 1, Cold, Hot, Pinned)],
            ..Case::default()
        },
        Case {
            name: "pinned warm goes hot",
            segments: vec![seg("a", 1, Warm).pinned()],
            expected: vec![mv("a", 1, Warm, Hot, Pinned)],
            ..Case::default()
        },
        Case {
            name: "pinned hot stays even though idle",
            policy: cold7.clone(),
            segments: vec![seg("a", 1, Hot).pinned().read_at(ago(30 * DAY))],
            ..Case::default()
        },
        Case {
            name: "pinned hot is never demoted over budget, but its bytes count",
            policy: TieringPolicy {
                max_hot_size_bytes: Some(100),
                ..policy()
            },
            segments: vec![
                seg("a", 1, Hot).pinned().read_at(ago(30 * DAY)),
                seg("a", 2, Hot).read_at(ago(HOUR)),
            ],
            expected: vec![mv("a", 2, Hot, Warm, HotBudget)],
            ..Case::default()
        },
        Case {
            name: "only pinned segments over budget: nothing moves",
            policy: TieringPolicy {
                max_hot_size_bytes: Some(100),
                ..policy()
            },
            segments: vec![seg("a", 1, Hot).size(300).pinned().read_at(ago(30 * DAY))],
            ..Case::default()
        },
        Case {
            name: "a pin coming into hot counts toward the hot budget",
            policy: TieringPolicy {
                max_hot_size_bytes: Some(200),
                ..policy()
            },
            segments: vec![
                seg("a", 1, Cold).pinned(),
                seg("a", 2, Hot).read_at(ago(2 * HOUR)),
                seg("a", 3, Hot).read_at(ago(HOUR)),
            ],
            expected: vec![
                mv("a", 1, Cold, Hot, Pinned),
                mv("a", 2, Hot, Warm, HotBudget),
            ],
            ..Case::default()
        },
        Case {
            name: "a pin leaving warm no longer counts toward the warm budget",
            policy: TieringPolicy {
                max_warm_size_bytes: Some(100),
                ..policy()
            },
            segments: vec![
                seg("a", 1, Warm).pinned(),
                seg("a", 2, Warm).read_at(ago(DAY)),
            ],
            expected: vec![mv("a", 1, Warm, Hot, Pinned)],
            ..Case::default()
        },
        Case {
            name: "collection pin: the caller pins each segment of the collection",
            policy: cold7.clone(),
            segments: vec![
                seg("a", 1, Cold).pinned(),
                seg("a", 2, Warm).pinned(),
                seg("a", 3, Hot).pinned().read_at(ago(30 * DAY)),
                seg("b", 1, Hot).read_at(ago(30 * DAY)),
            ],
            expected: vec![
                mv("a", 1, Cold, Hot, Pinned),
                mv("a", 2, Warm, Hot, Pinned),
                mv("b", 1, Hot, Cold, Inactive),
            ],
            ..Case::default()
        },
        Case {
            name: "a busy pinned segment waits",
            segments: vec![seg("a", 1, Cold).pinned().busy()],
            ..Case::default()
        },
    ]);
}

#[test]
fn busy_segments_are_skipped_but_counted() {
    run(vec![
        Case {
            name: "busy and idle: stays",
            policy: TieringPolicy {
                move_to_cold_after: after(7 * DAY),
                ..policy()
            },
            segments: vec![seg("a", 1, Hot).busy().read_at(ago(30 * DAY))],
            ..Case::default()
        },
        Case {
            name: "busy bytes count toward hot; the others make room",
            policy: TieringPolicy {
                max_hot_size_bytes: Some(250),
                ..policy()
            },
            segments: vec![
                seg("a", 1, Hot).size(200).busy().read_at(ago(30 * DAY)),
                seg("a", 2, Hot).read_at(ago(2 * HOUR)),
                seg("a", 3, Hot).read_at(ago(HOUR)),
            ],
            expected: vec![
                mv("a", 2, Hot, Warm, HotBudget),
                mv("a", 3, Hot, Warm, HotBudget),
            ],
            ..Case::default()
        },
        Case {
            name: "busy bytes count toward warm",
            policy: TieringPolicy {
                max_warm_size_bytes: Some(100),
                ..policy()
            },
            segments: vec![
                seg("a", 1, Warm).busy().read_at(ago(30 * DAY)),
                seg("a", 2, Warm).read_at(ago(DAY)),
            ],
            expected: vec![mv("a", 2, Warm, Cold, WarmBudget)],
            ..Case::default()
        },
    ]);
}

#[test]
fn per_collection_overrides() {
    let only = |name, o| overrides(vec![(name, o)]);
    run(vec![
        Case {
            name: "a shorter move_to_cold_after for one collection only",
            policy: TieringPolicy {
                move_to_cold_after: after(30 * DAY),
                ..policy()
            },
            overrides: only(
                "b",
                TieringOverrides {
                    move_to_cold_after: after(DAY),
                    ..Default::default()
                },
            ),
            segments: vec![
                seg("a", 1, Hot).read_at(ago(2 * DAY)),
                seg("b", 1, Hot).read_at(ago(2 * DAY)),
            ],
            expected: vec![mv("b", 1, Hot, Cold, Inactive)],
            ..Case::default()
        },
        Case {
            name: "a longer move_to_warm_after for one collection only",
            policy: TieringPolicy {
                move_to_warm_after: after(DAY),
                ..policy()
            },
            overrides: only(
                "b",
                TieringOverrides {
                    move_to_warm_after: after(7 * DAY),
                    ..Default::default()
                },
            ),
            segments: vec![
                seg("a", 1, Hot).read_at(ago(2 * DAY)),
                seg("b", 1, Hot).read_at(ago(2 * DAY)),
            ],
            expected: vec![mv("a", 1, Hot, Warm, Inactive)],
            ..Case::default()
        },
        Case {
            name: "a per-collection hot budget touches that collection only",
            overrides: only(
                "b",
                TieringOverrides {
                    max_hot_size_bytes: Some(100),
                    ..Default::default()
                },
            ),
            segments: vec![
                seg("a", 1, Hot).read_at(ago(30 * DAY)),
                seg("b", 1, Hot).read_at(ago(2 * HOUR)),
                seg("b", 2, Hot).read_at(ago(HOUR)),
            ],
            expected: vec![mv("b", 1, Hot, Warm, HotBudget)],
            ..Case::default()
        },
        Case {
            name: "per-collection budget first, then the database-wide one",
            policy: TieringPolicy {
                max_hot_size_bytes: Some(200),
                ..policy()
            },
            overrides: only(
                "b",
                TieringOverrides {
                    max_hot_size_bytes: Some(100),
                    ..Default::default()
                },
            ),
            segments: vec![
                seg("a", 1, Hot).read_at(ago(3 * HOUR)),
                seg("a", 2, Hot).read_at(ago(5 * HOUR / 2)),
                seg("b", 1, Hot).read_at(ago(2 * HOUR)),
                seg("b", 2, Hot).read_at(ago(HOUR / 2)),
            ],
            expected: vec![
                mv("a", 1, Hot, Warm, HotBudget),
                mv("b", 1, Hot, Warm, HotBudget),
            ],
            ..Case::default()
        },
        Case {
            name: "a per-collection warm budget",
            overrides: only(
                "b",
                TieringOverrides {
                    max_warm_size_bytes: Some(100),
                    ..Default::default()
                },
            ),
            segments: vec![
                seg("a", 1, Warm).read_at(ago(30 * DAY)),
                seg("b", 1, Warm).read_at(ago(2 * DAY)),
                seg("b", 2, Warm).read_at(ago(DAY)),
            ],
            expected: vec![mv("b", 1, Warm, Cold, WarmBudget)],
            ..Case::default()
        },
        Case {
            name: "overrides for a collection without segments change nothing",
            overrides: only(
                "zzz",
                TieringOverrides {
                    max_hot_size_bytes: Some(0),
                    ..Default::default()
                },
            ),
            segments: vec![seg("a", 1, Hot)],
            ..Case::default()
        },
    ]);
}

#[test]
fn output_order() {
    run(vec![Case {
        name: "pins first, then by collection name, then by segment id",
        policy: TieringPolicy {
            move_to_cold_after: after(7 * DAY),
            ..policy()
        },
        segments: vec![
            seg("z", 1, Cold).pinned(),
            seg("a", 10, Hot).read_at(ago(30 * DAY)),
            seg("b", 1, Warm).read_at(ago(30 * DAY)),
            seg("a", 2, Hot).read_at(ago(30 * DAY)),
            seg("m", 5, Warm).pinned(),
        ],
        expected: vec![
            mv("m", 5, Warm, Hot, Pinned),
            mv("z", 1, Cold, Hot, Pinned),
            mv("a", 2, Hot, Cold, Inactive),
            mv("a", 10, Hot, Cold, Inactive),
            mv("b", 1, Warm, Cold, Inactive),
        ],
        ..Case::default()
    }]);
}

/// Overrides follow the configuration's rules: a warm delay needs a warm tier, and the cold delay
/// (the override's or the database's) is not shorter than the warm one when there is a warm tier.
#[test]
fn overrides_are_checked_against_the_database_policy() {
    let warm1_cold7 = TieringPolicy {
        move_to_warm_after: after(DAY),
        move_to_cold_after: after(7 * DAY),
        ..TieringPolicy::default()
    };
    let cold7 = TieringPolicy {
        move_to_cold_after: after(7 * DAY),
        ..TieringPolicy::default()
    };
    let o = |warm: Option<Duration>, cold: Option<Duration>| TieringOverrides {
        move_to_warm_after: warm,
        move_to_cold_after: cold,
        ..TieringOverrides::default()
    };
    // (overrides, policy, warm tier, the error's words or None)
    let cases: [(TieringOverrides, &TieringPolicy, bool, Option<&str>); 8] = [
        (TieringOverrides::default(), &warm1_cold7, true, None),
        (o(None, after(2 * DAY)), &warm1_cold7, true, None),
        (
            o(after(3 * DAY), after(2 * DAY)),
            &warm1_cold7,
            true,
            Some(
                "is 2days, shorter than tiering.move_to_warm_after (BARQ_TIER_MOVE_TO_WARM_AFTER) 3days",
            ),
        ),
        (
            o(None, after(HOUR)),
            &warm1_cold7,
            true,
            Some(
                "is 1h, shorter than tiering.move_to_warm_after (BARQ_TIER_MOVE_TO_WARM_AFTER) 1day",
            ),
        ),
        (
            o(after(8 * DAY), None),
            &warm1_cold7,
            true,
            Some(
                "is 7days, shorter than tiering.move_to_warm_after (BARQ_TIER_MOVE_TO_WARM_AFTER) 8days",
            ),
        ),
        (
            o(after(DAY), None),
            &cold7,
            false,
            Some("tiering.move_to_warm_after (BARQ_TIER_MOVE_TO_WARM_AFTER) needs a warm tier"),
        ),
        // Without a warm tier the cold delay alone matters.
        (o(None, after(HOUR)), &cold7, false, None),
        (
            TieringOverrides {
                max_hot_size_bytes: Some(0),
                min_residency: Some(Duration::ZERO),
                ..TieringOverrides::default()
            },
            &cold7,
            false,
            None,
        ),
    ];
    for (i, (overrides, policy, warm, want)) in cases.into_iter().enumerate() {
        let got = overrides.validate("docs", policy, warm);
        match want {
            None => assert!(got.is_ok(), "case {i}: {got:?}"),
            Some(words) => {
                let e = got.expect_err(&format!("case {i} is refused"));
                assert_eq!(e.kind(), barq_core::ErrorKind::InvalidArgument, "case {i}");
                assert!(e.to_string().contains(words), "case {i}: {e}");
                assert!(
                    e.to_string().contains(r#"collection "docs""#),
                    "case {i}: {e}"
                );
            }
        }
    }
}
