//! Documents, collection settings and search hits.

use serde::{Deserialize, Serialize};

use crate::Metric;

/// A document's optional payload: a JSON object.
pub type Payload = serde_json::Map<String, serde_json::Value>;

/// One document: an id, a vector and an optional JSON object payload. Unknown fields are errors
/// (a misspelt `"paylod"` must not drop the payload silently).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// UTF-8, 1..=256 bytes, unique within a collection.
    pub id: String,
    /// Exactly the collection's dimension, every component finite. In JSON: an array of
    /// numbers, or a base64 string of the little-endian `f32` components (4 bytes each), which
    /// is smaller to send and several times faster to parse.
    #[serde(deserialize_with = "deserialize_vector")]
    pub vector: Vec<f32>,
    /// Optional JSON object, at most 64 KiB serialized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
}

/// A vector from JSON: an array of numbers or a base64 string (see [`Document::vector`]).
pub fn deserialize_vector<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<f32>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of numbers, or a base64 string of little-endian f32 components")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<f32>, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(x) = seq.next_element::<f32>()? {
                v.push(x);
            }
            Ok(v)
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<f32>, E> {
            decode_base64_vector(s).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

/// The components of a base64 vector (standard alphabet, padded).
pub fn decode_base64_vector(s: &str) -> Result<Vec<f32>, String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("vector is not valid base64: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "base64 vector has {} bytes, not a multiple of 4 (little-endian f32 components)",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A vector as base64 of its little-endian `f32` components (what [`Document`] accepts).
pub fn encode_base64_vector(v: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
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

/// A collection's settings: name, dimension and metric are fixed at creation; indexed fields
/// can be added later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionConfig {
    /// `[a-z0-9][a-z0-9_-]{0,63}`.
    pub name: String,
    /// 1..=4096.
    pub dimension: u32,
    /// How vectors are compared.
    pub metric: Metric,
    /// Payload fields each indexed segment indexes for filters (more can be added later).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexed_fields: Vec<crate::IndexedField>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_is_an_array_or_base64_of_little_endian_f32() {
        let v = vec![1.5f32, -0.25, 3.0e-7, f32::MAX];
        let b64 = encode_base64_vector(&v);
        let from_b64: Document =
            serde_json::from_str(&format!(r#"{{"id":"a","vector":"{b64}"}}"#)).expect("base64");
        assert_eq!(from_b64.vector, v);
        let from_array: Document =
            serde_json::from_str(r#"{"id":"a","vector":[1.5,-0.25,3e-7,3.4028235e38]}"#)
                .expect("array");
        assert_eq!(from_array.vector, v);
        // Known bytes: 1.0f32 is 00 00 80 3f.
        assert_eq!(decode_base64_vector("AACAPw==").expect("1.0"), vec![1.0]);
    }

    #[test]
    fn bad_vectors_and_unknown_fields_are_named() {
        let err = |json: &str| {
            serde_json::from_str::<Document>(json)
                .expect_err(json)
                .to_string()
        };
        assert!(err(r#"{"id":"a","vector":"AACA"}"#).contains("not a multiple of 4"));
        assert!(err(r#"{"id":"a","vector":"not base64!"}"#).contains("not valid base64"));
        assert!(err(r#"{"id":"a","vector":{"x":1}}"#).contains("base64 string"));
        assert!(err(r#"{"id":"a","vector":[1],"paylod":{}}"#).contains("unknown field `paylod`"));
    }
}
