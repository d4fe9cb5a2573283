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
///
/// This struct is the one model of these knobs: the engine reads it, and its serde form is the
/// `[tiering]` keys of the config file (flattened into `barq_config::TieringSettings`):
/// durations as humantime strings (`"7d"`; serde's `{"secs", "nanos"}` is read too), sizes as
/// an integer number of bytes or a string like `"10GiB"` (see `barq_core::units`). Missing keys
/// take the [`Default`]. The rules between the knobs are [`TieringPolicy::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TieringPolicy {
    /// A Hot segment idle this long moves to Warm (only when a warm directory is configured).
    /// Default: never.
    #[serde(
        with = "barq_core::units::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub move_to_warm_after: Option<Duration>,
    /// A Hot or Warm segment idle this long moves to Cold. Default: never.
    #[serde(
        with = "barq_core::units::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub move_to_cold_after: Option<Duration>,
    /// When the Hot segments hold more bytes than this, the least recently used move down.
    /// Default: no limit.
    #[serde(
        with = "barq_core::units::opt_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_hot_size_bytes: Option<u64>,
    /// When the Warm segments hold more bytes than this, the least recently used move to Cold.
    /// Default: no limit.
    #[serde(
        with = "barq_core::units::opt_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_warm_size_bytes: Option<u64>,
    /// A segment that moved less than this long ago is not moved again by the policy (pins
    /// excepted). Default 10 min: longer keeps a segment from bouncing between tiers, shorter
    /// lets a budget react sooner.
    #[serde(with = "barq_core::units::duration")]
    pub min_residency: Duration,
}

impl TieringPolicy {
    /// The rules between the knobs, with messages that name each knob by its config key and its
    /// variable: `move_to_warm_after` needs a warm tier, and with a warm tier
    /// `move_to_cold_after` must not be shorter than `move_to_warm_after` (segments would skip
    /// the warm tier). [`barq_core::ErrorKind::InvalidArgument`] when one is broken.
    pub fn validate(&self, has_warm_tier: bool) -> barq_core::Result<()> {
        use barq_core::units::HumanDuration;
        if self.move_to_warm_after.is_some() && !has_warm_tier {
            return Err(barq_core::Error::invalid(
                "tiering.move_to_warm_after (BARQ_TIER_MOVE_TO_WARM_AFTER) needs a warm tier \
                 (BARQ_WARM_DIR)",
            ));
        }
        if let (true, Some(warm), Some(cold)) = (
            has_warm_tier,
            self.move_to_warm_after,
            self.move_to_cold_after,
        ) && cold < warm
        {
            return Err(barq_core::Error::invalid(format!(
                "tiering.move_to_cold_after (BARQ_TIER_MOVE_TO_COLD_AFTER) is {}, shorter than \
                 tiering.move_to_warm_after (BARQ_TIER_MOVE_TO_WARM_AFTER) {}: segments would \
                 skip the warm tier",
                HumanDuration(cold),
                HumanDuration(warm)
            )));
        }
        Ok(())
    }
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
///
/// Stored in the manifest and shown by the HTTP API in the same form as [`TieringPolicy`]:
/// durations as humantime strings (serde's `{"secs", "nanos"}` of older manifests is read
/// too), sizes as integers (a string like `"10GiB"` is read too); absent fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TieringOverrides {
    /// See [`TieringPolicy::move_to_warm_after`].
    #[serde(
        default,
        with = "barq_core::units::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub move_to_warm_after: Option<Duration>,
    /// See [`TieringPolicy::move_to_cold_after`].
    #[serde(
        default,
        with = "barq_core::units::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub move_to_cold_after: Option<Duration>,
    /// A budget for this collection's Hot bytes (the database-wide budget still applies too).
    #[serde(
        default,
        with = "barq_core::units::opt_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_hot_size_bytes: Option<u64>,
    /// A budget for this collection's Warm bytes (the database-wide budget still applies too).
    #[serde(
        default,
        with = "barq_core::units::opt_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_warm_size_bytes: Option<u64>,
    /// See [`TieringPolicy::min_residency`].
    #[serde(
        default,
        with = "barq_core::units::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_residency: Option<Duration>,
}

impl TieringOverrides {
    /// `true` when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == TieringOverrides::default()
    }

    /// The policy in effect for the collection: `policy` with the overridden
    /// `move_to_warm_after`, `move_to_cold_after` and `min_residency` replaced. The budgets stay
    /// the database-wide ones: an override budget does not replace them but adds a second,
    /// per-collection bound (see `tiering::plan`).
    pub fn apply(&self, policy: &TieringPolicy) -> TieringPolicy {
        TieringPolicy {
            move_to_warm_after: self.move_to_warm_after.or(policy.move_to_warm_after),
            move_to_cold_after: self.move_to_cold_after.or(policy.move_to_cold_after),
            max_hot_size_bytes: policy.max_hot_size_bytes,
            max_warm_size_bytes: policy.max_warm_size_bytes,
            min_residency: self.min_residency.unwrap_or(policy.min_residency),
        }
    }

    /// Check these overrides of `collection` against the database-wide `policy`: the effective
    /// policy ([`TieringOverrides::apply`]) must follow [`TieringPolicy::validate`]. The error
    /// ([`barq_core::ErrorKind::InvalidArgument`]) names the collection.
    pub fn validate(
        &self,
        collection: &str,
        policy: &TieringPolicy,
        has_warm_tier: bool,
    ) -> barq_core::Result<()> {
        self.apply(policy).validate(has_warm_tier).map_err(|e| {
            barq_core::Error::invalid(format!(
                "tiering overrides of collection {collection:?}: {}",
                e.message()
            ))
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use barq_core::ErrorKind;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn overrides_read_the_legacy_duration_form_and_write_strings() {
        // A collection's `tiering` as manifests written before the human form hold it.
        let legacy = r#"{"move_to_cold_after":{"secs":604800,"nanos":0},"max_hot_size_bytes":10737418240,"min_residency":{"nanos":500000000,"secs":60}}"#;
        let o: TieringOverrides = serde_json::from_str(legacy).expect("legacy overrides");
        assert_eq!(
            o,
            TieringOverrides {
                move_to_cold_after: Some(Duration::from_secs(7 * 86_400)),
                max_hot_size_bytes: Some(10 << 30),
                min_residency: Some(Duration::from_millis(60_500)),
                ..TieringOverrides::default()
            }
        );
        let written = serde_json::to_string(&o).expect("encode");
        assert_eq!(
            written,
            r#"{"move_to_cold_after":"7days","max_hot_size_bytes":10737418240,"min_residency":"1m 500ms"}"#
        );
        let again: TieringOverrides = serde_json::from_str(&written).expect("decode");
        assert_eq!(again, o, "round trip");
        let human: TieringOverrides =
            serde_json::from_str(r#"{"move_to_warm_after":"1d","max_warm_size_bytes":"1GiB"}"#)
                .expect("human input");
        assert_eq!(human.move_to_warm_after, Some(24 * HOUR));
        assert_eq!(human.max_warm_size_bytes, Some(1 << 30));
        assert_eq!(
            serde_json::to_string(&TieringOverrides::default()).expect("encode"),
            "{}"
        );
        let e = serde_json::from_str::<TieringOverrides>(r#"{"move_to_frozen_after":"1d"}"#)
            .expect_err("unknown field");
        assert!(e.to_string().contains("move_to_frozen_after"), "{e}");
    }

    #[test]
    fn policy_serde_form_is_the_config_keys_with_defaults() {
        let p: TieringPolicy =
            serde_json::from_str(r#"{"move_to_cold_after":"7d","max_hot_size_bytes":"10GiB"}"#)
                .expect("policy");
        assert_eq!(
            p,
            TieringPolicy {
                move_to_cold_after: Some(7 * 24 * HOUR),
                max_hot_size_bytes: Some(10 << 30),
                ..TieringPolicy::default()
            }
        );
        assert_eq!(
            serde_json::to_string(&p).expect("encode"),
            r#"{"move_to_cold_after":"7days","max_hot_size_bytes":10737418240,"min_residency":"10m"}"#
        );
        let e = serde_json::from_str::<TieringPolicy>(r#"{"min_residence":"1m"}"#)
            .expect_err("unknown key");
        assert!(e.to_string().contains("min_residence"), "{e}");
    }

    #[test]
    fn policy_rules_name_the_knob() {
        let p = |warm: Option<Duration>, cold: Option<Duration>| TieringPolicy {
            move_to_warm_after: warm,
            move_to_cold_after: cold,
            ..TieringPolicy::default()
        };
        assert!(TieringPolicy::default().validate(false).is_ok());
        assert!(p(Some(HOUR), Some(2 * HOUR)).validate(true).is_ok());
        assert!(
            p(Some(HOUR), Some(HOUR)).validate(true).is_ok(),
            "equal is fine"
        );
        assert!(p(None, Some(HOUR)).validate(false).is_ok());
        let e = p(Some(2 * HOUR), Some(HOUR))
            .validate(true)
            .expect_err("cold before warm");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            e.message(),
            "tiering.move_to_cold_after (BARQ_TIER_MOVE_TO_COLD_AFTER) is 1h, shorter than \
             tiering.move_to_warm_after (BARQ_TIER_MOVE_TO_WARM_AFTER) 2h: segments would skip \
             the warm tier"
        );
        let e = p(Some(HOUR), None)
            .validate(false)
            .expect_err("no warm tier");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            e.message(),
            "tiering.move_to_warm_after (BARQ_TIER_MOVE_TO_WARM_AFTER) needs a warm tier (BARQ_WARM_DIR)"
        );
    }

    #[test]
    fn overrides_apply_on_top_of_the_policy() {
        let policy = TieringPolicy {
            move_to_warm_after: Some(HOUR),
            move_to_cold_after: Some(24 * HOUR),
            max_hot_size_bytes: Some(100),
            max_warm_size_bytes: None,
            min_residency: Duration::from_secs(600),
        };
        assert_eq!(TieringOverrides::default().apply(&policy), policy);
        let o = TieringOverrides {
            move_to_cold_after: Some(2 * HOUR),
            max_hot_size_bytes: Some(10),
            max_warm_size_bytes: Some(20),
            min_residency: Some(Duration::ZERO),
            ..TieringOverrides::default()
        };
        assert_eq!(
            o.apply(&policy),
            TieringPolicy {
                move_to_cold_after: Some(2 * HOUR),
                min_residency: Duration::ZERO,
                ..policy.clone()
            },
            "delays replaced, database-wide budgets kept"
        );
        let e = TieringOverrides {
            move_to_cold_after: Some(HOUR / 2),
            ..TieringOverrides::default()
        }
        .validate("docs", &policy, true)
        .expect_err("cold before the database's warm");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(
            e.message().starts_with(
                r#"tiering overrides of collection "docs": tiering.move_to_cold_after"#
            ),
            "{e}"
        );
    }
}
