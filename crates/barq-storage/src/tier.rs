//! The value types of tiering that the manifest, the policy and the manager all use, in a leaf
//! module that imports none of them: where a segment is ([`StorageTier`]), the database-wide
//! policy ([`TieringPolicy`]), a collection's overrides of it ([`TieringOverrides`]), the bytes
//! in a tier ([`TierStats`]) and a failed move ([`MoveError`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a sealed segment's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageTier {
    /// The data directory.
    Hot,
    /// The optional second local directory.
    Warm,
    /// Object storage.
    Cold,
}

impl StorageTier {
    /// The lowercase name used in the manifest, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageTier::Hot => "hot",
            StorageTier::Warm => "warm",
            StorageTier::Cold => "cold",
        }
    }
}

impl std::fmt::Display for StorageTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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

impl TieringOverrides {
    /// `true` when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == TieringOverrides::default()
    }

    /// Check these overrides of `collection` against the database-wide `policy`, by the rules
    /// the configuration follows: a warm delay needs a warm tier, and with a warm tier the cold
    /// delay (overridden or not) must not be shorter than the warm one.
    pub fn validate(
        &self,
        collection: &str,
        policy: &TieringPolicy,
        has_warm_tier: bool,
    ) -> barq_core::Result<()> {
        let bad = |m: String| {
            Err(barq_core::Error::new(
                barq_core::ErrorKind::InvalidArgument,
                format!("tiering overrides of collection {collection:?}: {m}"),
            ))
        };
        if self.move_to_warm_after.is_some() && !has_warm_tier {
            return bad(
                "move_to_warm_after needs a warm tier, and this database has none (BARQ_WARM_DIR)"
                    .into(),
            );
        }
        let warm = self.move_to_warm_after.or(policy.move_to_warm_after);
        let cold = self.move_to_cold_after.or(policy.move_to_cold_after);
        if let (true, Some(w), Some(c)) = (has_warm_tier, warm, cold)
            && c < w
        {
            return bad(format!(
                "move_to_cold_after ({}) is shorter than move_to_warm_after ({}): segments would skip the warm tier",
                humantime::format_duration(c),
                humantime::format_duration(w)
            ));
        }
        Ok(())
    }
}

/// Statistics of one tier of one collection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierStats {
    /// Sealed segments in this tier.
    pub segments: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// A move that failed; the segment stayed where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveError {
    /// The segment's collection.
    pub collection: String,
    /// The segment.
    pub segment_id: u64,
    /// Where it was going.
    pub to: StorageTier,
    /// What went wrong.
    pub error: String,
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
}
