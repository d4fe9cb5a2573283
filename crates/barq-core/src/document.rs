//! Documents, collection settings and search hits.

use serde::{Deserialize, Serialize};

use crate::Metric;

/// A document's optional payload: a JSON object.
pub type Payload = serde_json::Map<String, serde_json::Value>;

/// One document: an id, a vector and an optional JSON object payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// UTF-8, 1..=256 bytes, unique within a collection.
    pub id: String,
    /// Exactly the collection's dimension, every component finite.
    pub vector: Vec<f32>,
    /// Optional JSON object, at most 64 KiB serialized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
}

impl Document {
    /// A document without payload.
    pub fn new(id: impl Into<String>, vector: Vec<f32>) -> Self {
        Document {
            id: id.into(),
            vector,
            payload: None,
        }
    }

    /// Attach a payload.
    pub fn with_payload(mut self, payload: Payload) -> Self {
        self.payload = Some(payload);
        self
    }
}

/// A collection's settings, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionConfig {
    /// `[a-z0-9][a-z0-9_-]{0,63}`.
    pub name: String,
    /// 1..=4096.
    pub dimension: u32,
    /// How vectors are compared.
    pub metric: Metric,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The document id.
    pub id: String,
    /// Similarity (cosine, dot; higher is closer) or distance (l2; lower is closer).
    pub score: f32,
    /// The payload, when requested and present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
}
