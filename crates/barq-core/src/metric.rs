//! The distance metrics a collection can use, and how each turns into a score.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// How vectors are compared.
///
/// Results are always ordered best first. For `cosine` and `dot` the score is a similarity
/// (higher is closer); for `l2` it is the Euclidean distance (lower is closer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity, in [-1, 1]. A zero vector has similarity 0 with everything.
    Cosine,
    /// Euclidean distance.
    L2,
    /// Inner product.
    Dot,
}

impl Metric {
    /// `true` when a higher score means closer.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::L2)
    }

    /// A stable numeric code used in file formats.
    pub fn code(self) -> u8 {
        match self {
            Metric::Cosine => 1,
            Metric::L2 => 2,
            Metric::Dot => 3,
        }
    }

    /// The inverse of [`Metric::code`].
    pub fn from_code(code: u8) -> Option<Metric> {
        match code {
            1 => Some(Metric::Cosine),
            2 => Some(Metric::L2),
            3 => Some(Metric::Dot),
            _ => None,
        }
    }

    /// The name used in the API, the CLI and the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Dot => "dot",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" => Ok(Metric::Cosine),
            "l2" | "euclidean" => Ok(Metric::L2),
            "dot" | "ip" => Ok(Metric::Dot),
            other => Err(Error::invalid(format!(
                "unknown metric \"{other}\": expected cosine, l2 or dot"
            ))),
        }
    }
}
