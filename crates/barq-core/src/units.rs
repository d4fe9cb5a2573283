//! Durations (`7d`, `90s`, `500ms`) and sizes (`10GiB`, `512 MiB`, `1000`) as people write them
//! in the configuration file, the environment and the HTTP API.
//!
//! [`HumanDuration`] and [`Size`] are newtypes for settings. The `#[serde(with = "…")]` modules
//! give plain std fields the same forms, so a type such as the tiering policy is one struct that
//! the engine, the config file, the API and the manifest all use:
//! - [`duration`] (`Duration`) and [`opt_duration`] (`Option<Duration>`) write a humantime string,
//!   the text of [`HumanDuration`]'s `Display` (`"10m"`, `"7days"`, `"1h 30m"`; exact to the
//!   nanosecond). They read such a string, or serde's own form of a `Duration`,
//!   `{"secs": u64, "nanos": u32}`, which manifests written before this form hold.
//! - [`opt_size`] (`Option<u64>`) writes an integer number of bytes (exact, where `Size`'s
//!   `Display` rounds to one decimal) and reads an integer or a string that [`Size`] parses
//!   (`"10GiB"`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| format!("{s:?} is not a duration like 90s, 15m, 7d ({e})"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A byte count written for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Ok(n) = t.parse::<u64>() {
            return Ok(Size(n));
        }
        t.parse::<bytesize::ByteSize>()
            .map(|b| Size(b.as_u64()))
            .map_err(|e| {
                format!("{s:?} is not a size like 512MiB, 10GiB or a number of bytes ({e})")
            })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize::b(self.0).display().iec())
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `#[serde(with = "barq_core::units::duration")]` for a `Duration`: written as a humantime
/// string, read from one or from `{"secs": u64, "nanos": u32}` (see the module doc).
pub mod duration {
    use super::*;

    /// Writes `d` as [`HumanDuration`] does (`"10m"`).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        HumanDuration(*d).serialize(s)
    }

    /// Reads a humantime string or serde's `{"secs", "nanos"}` map.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

/// `#[serde(with = "barq_core::units::opt_duration")]` for an `Option<Duration>`: `None` is
/// `null` (or, with `skip_serializing_if`, absent); `Some` as in [`duration`].
pub mod opt_duration {
    use super::*;

    /// Writes `Some(d)` as [`HumanDuration`] does, `None` as none.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&HumanDuration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads `null` as `None`, else what [`duration::deserialize`] reads.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<AnyDuration>::deserialize(d)?.map(|a| a.0))
    }
}

/// `#[serde(with = "barq_core::units::opt_size")]` for an `Option<u64>` of bytes: written as an
/// integer, read from an integer or a [`Size`] string such as `"10GiB"`.
pub mod opt_size {
    use super::*;

    /// Writes `Some(n)` as the integer `n`, `None` as none.
    pub fn serialize<S: Serializer>(n: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match n {
            Some(n) => s.serialize_some(n),
            None => s.serialize_none(),
        }
    }

    /// Reads `null` as `None`, else what [`Size`] reads.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(Option::<Size>::deserialize(d)?.map(|s| s.0))
    }
}

/// A `Duration` read by [`DurationVisitor`] (the `Some` of [`opt_duration`]).
struct AnyDuration(Duration);

impl<'de> Deserialize<'de> for AnyDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        duration::deserialize(d).map(AnyDuration)
    }
}

/// A humantime string, or serde's `{"secs": u64, "nanos": u32}`.
struct DurationVisitor;

const LEGACY_FIELDS: &[&str] = &["secs", "nanos"];

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a duration like "90s", "15m" or "7d""#)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        v.parse::<HumanDuration>().map(|d| d.0).map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Duration, A::Error> {
        let mut secs: Option<u64> = None;
        let mut nanos: Option<u32> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "secs" if secs.is_none() => secs = Some(map.next_value::<u64>()?),
                "nanos" if nanos.is_none() => nanos = Some(map.next_value::<u32>()?),
                "secs" => return Err(<A::Error as de::Error>::duplicate_field("secs")),
                "nanos" => return Err(<A::Error as de::Error>::duplicate_field("nanos")),
                other => return Err(<A::Error as de::Error>::unknown_field(other, LEGACY_FIELDS)),
            }
        }
        let Some(secs) = secs else {
            return Err(<A::Error as de::Error>::missing_field("secs"));
        };
        let Some(nanos) = nanos else {
            return Err(<A::Error as de::Error>::missing_field("nanos"));
        };
        // `Duration::new` carries whole seconds out of `nanos` and panics if that overflows.
        if secs.checked_add(u64::from(nanos / 1_000_000_000)).is_none() {
            return Err(<A::Error as de::Error>::custom(
                "overflow deserializing a duration",
            ));
        }
        Ok(Duration::new(secs, nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(d("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(d("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert!(d("soon").expect_err("bad").contains("not a duration"));
        let z = |s: &str| s.parse::<Size>().map(|s| s.0);
        assert_eq!(z("10GiB"), Ok(10 << 30));
        assert_eq!(z("512 MiB"), Ok(512 << 20));
        assert_eq!(z("1000"), Ok(1000));
        assert_eq!(z("1KB"), Ok(1000));
        assert!(z("lots").expect_err("bad").contains("not a size"));
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Knobs {
        #[serde(with = "duration")]
        every: Duration,
        #[serde(
            default,
            with = "opt_duration",
            skip_serializing_if = "Option::is_none"
        )]
        after: Option<Duration>,
        #[serde(default, with = "opt_size", skip_serializing_if = "Option::is_none")]
        budget: Option<u64>,
    }

    fn knobs(json: &str) -> Result<Knobs, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn duration_writes_what_human_duration_displays_and_reads_both_forms() {
        let k = Knobs {
            every: Duration::from_secs(600),
            after: Some(Duration::from_secs(7 * 86400) + Duration::from_millis(5)),
            budget: None,
        };
        let text = serde_json::to_string(&k).expect("encode");
        assert_eq!(text, r#"{"every":"10m","after":"7days 5ms"}"#);
        assert_eq!(
            serde_json::to_value(HumanDuration(Duration::from_secs(5400))).expect("encode"),
            serde_json::json!("1h 30m")
        );
        assert_eq!(knobs(&text), Ok(k), "round trip");
        // serde's own form of a Duration, as older manifests hold it.
        let legacy =
            knobs(r#"{"every":{"secs":90,"nanos":500},"after":{"nanos":0,"secs":604800}}"#)
                .expect("legacy");
        assert_eq!(legacy.every, Duration::new(90, 500));
        assert_eq!(legacy.after, Some(Duration::from_secs(604_800)));
        assert_eq!(
            knobs(r#"{"every":"1h","after":null}"#).expect("null").after,
            None
        );
        assert_eq!(knobs(r#"{"every":"1h"}"#).expect("absent").after, None);
        for (bad, words) in [
            (r#"{"every":"soon"}"#, "not a duration"),
            (r#"{"every":90}"#, "a duration like"),
            (r#"{"every":{"secs":1}}"#, "missing field `nanos`"),
            (
                r#"{"every":{"secs":1,"nanos":0,"ms":3}}"#,
                "unknown field `ms`",
            ),
            (
                r#"{"every":"1h","after":{"secs":-1,"nanos":0}}"#,
                "invalid value",
            ),
            (
                r#"{"every":{"secs":18446744073709551615,"nanos":1000000000}}"#,
                "overflow",
            ),
        ] {
            let e = knobs(bad).expect_err(bad);
            assert!(e.contains(words), "{bad}: {e}");
        }
    }

    #[test]
    fn opt_size_writes_an_integer_and_reads_integers_and_strings() {
        let k = Knobs {
            every: Duration::ZERO,
            after: None,
            budget: Some(1_234_567),
        };
        let text = serde_json::to_string(&k).expect("encode");
        assert_eq!(text, r#"{"every":"0s","budget":1234567}"#);
        assert_eq!(knobs(&text), Ok(k), "round trip is exact");
        let budget = |json: &str| knobs(json).map(|k| k.budget);
        assert_eq!(
            budget(r#"{"every":"0s","budget":"10GiB"}"#),
            Ok(Some(10 << 30))
        );
        assert_eq!(budget(r#"{"every":"0s","budget":"1000"}"#), Ok(Some(1000)));
        assert_eq!(budget(r#"{"every":"0s","budget":null}"#), Ok(None));
        let e = budget(r#"{"every":"0s","budget":"lots"}"#).expect_err("bad size");
        assert!(e.contains("not a size"), "{e}");
    }
}
