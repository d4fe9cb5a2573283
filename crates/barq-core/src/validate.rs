//! Validation of names, ids, vectors, payloads and query parameters (docs/design.md §1).
//!
//! Every function returns an [`ErrorKind::InvalidArgument`](crate::ErrorKind) error whose
//! message names the collection, the field and the limit, so that a client can fix its request.

use crate::{CollectionConfig, Document, Error, Result};

/// Largest vector dimension a collection may have.
pub const MAX_DIMENSION: u32 = 4096;
/// Largest document id, in UTF-8 bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Largest serialized payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Largest `k` a search may ask for.
pub const MAX_K: usize = 1000;

/// Check a collection name against `[a-z0-9][a-z0-9_-]{0,63}`.
///
/// The pattern also guarantees the name is safe as a path component and an object-key segment.
pub fn validate_collection_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid collection name {name:?}: expected 1 to 64 characters of [a-z0-9_-], \
             starting with a letter or digit"
        )))
    }
}

/// Check a document id: 1..=256 bytes of UTF-8 without control characters.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid("invalid document id: the id is empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(format!(
            "invalid document id: {} bytes, the limit is {MAX_ID_BYTES}",
            id.len()
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "invalid document id {id:?}: control characters are not allowed"
        )));
    }
    Ok(())
}

fn validate_vector(config: &CollectionConfig, what: &str, vector: &[f32]) -> Result<()> {
    if vector.len() != config.dimension as usize {
        return Err(Error::invalid(format!(
            "dimension mismatch: collection \"{}\" expects {}, got {} ({what})",
            config.name,
            config.dimension,
            vector.len()
        )));
    }
    if let Some(pos) = vector.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid(format!(
            "invalid vector ({what}): component {pos} is {}, only finite numbers are allowed",
            vector[pos]
        )));
    }
    Ok(())
}

/// Check one document for `config`; returns the serialized payload (if any) so the caller
/// does not serialize twice.
pub fn validate_document(config: &CollectionConfig, doc: &Document) -> Result<Option<Vec<u8>>> {
    validate_id(&doc.id)?;
    validate_vector(config, &format!("document {:?}", doc.id), &doc.vector)?;
    match &doc.payload {
        None => Ok(None),
        Some(payload) => {
            let bytes = serde_json::to_vec(payload)
                .map_err(|e| Error::invalid(format!("payload of document {:?}: {e}", doc.id)))?;
            if bytes.len() > MAX_PAYLOAD_BYTES {
                return Err(Error::invalid(format!(
                    "payload of document {:?} is {} bytes, the limit is {MAX_PAYLOAD_BYTES}",
                    doc.id,
                    bytes.len()
                )));
            }
            Ok(Some(bytes))
        }
    }
}

/// Check a query vector for `config`.
pub fn validate_query_vector(config: &CollectionConfig, vector: &[f32]) -> Result<()> {
    validate_vector(config, "query", vector)
}

/// Check a search's `k`.
pub fn validate_k(k: usize) -> Result<()> {
    if k == 0 || k > MAX_K {
        return Err(Error::invalid(format!(
            "invalid k {k}: expected 1..={MAX_K}"
        )));
    }
    Ok(())
}

/// Check a dimension for a new collection.
pub(crate) fn validate_dimension(dimension: u32) -> Result<()> {
    if dimension == 0 || dimension > MAX_DIMENSION {
        return Err(Error::invalid(format!(
            "invalid dimension {dimension}: expected 1..={MAX_DIMENSION}"
        )));
    }
    Ok(())
}

impl CollectionConfig {
    /// Validated settings for a new collection.
    pub fn new(name: impl Into<String>, dimension: u32, metric: crate::Metric) -> Result<Self> {
        let name = name.into();
        validate_collection_name(&name)?;
        validate_dimension(dimension)?;
        Ok(CollectionConfig {
            name,
            dimension,
            metric,
            indexed_fields: Vec::new(),
        })
    }

    /// The same settings, with these payload fields indexed (validated).
    pub fn with_indexed_fields(mut self, fields: Vec<crate::IndexedField>) -> Result<Self> {
        crate::filter::validate_indexed_fields(&fields)?;
        self.indexed_fields = fields;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Metric};

    fn cfg() -> CollectionConfig {
        CollectionConfig::new("docs", 3, Metric::Cosine).expect("valid")
    }

    #[test]
    fn collection_names() {
        for ok in ["a", "docs", "0x_1-b", &"a".repeat(64)] {
            assert!(validate_collection_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "_a",
            "-a",
            "a/b",
            "../x",
            "a.b",
            " a",
            &"a".repeat(65),
            "é",
        ] {
            let err = validate_collection_name(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        }
    }

    #[test]
    fn dimension_limits() {
        assert!(CollectionConfig::new("x", 0, Metric::L2).is_err());
        assert!(CollectionConfig::new("x", 4097, Metric::L2).is_err());
        assert!(CollectionConfig::new("x", 4096, Metric::L2).is_ok());
    }

    #[test]
    fn dimension_mismatch_names_collection_and_sizes() {
        let err = validate_document(&cfg(), &Document::new("a", vec![1.0; 768])).expect_err("dim");
        assert!(
            err.message()
                .starts_with("dimension mismatch: collection \"docs\" expects 3, got 768"),
            "{err}"
        );
    }

    #[test]
    fn non_finite_and_ids() {
        assert!(validate_document(&cfg(), &Document::new("a", vec![1.0, f32::NAN, 0.0])).is_err());
        assert!(
            validate_document(&cfg(), &Document::new("a", vec![1.0, f32::INFINITY, 0.0])).is_err()
        );
        assert!(validate_document(&cfg(), &Document::new("", vec![1.0; 3])).is_err());
        assert!(validate_document(&cfg(), &Document::new("x".repeat(257), vec![1.0; 3])).is_err());
        assert!(validate_document(&cfg(), &Document::new("x".repeat(256), vec![1.0; 3])).is_ok());
        assert!(validate_document(&cfg(), &Document::new("a\nb", vec![1.0; 3])).is_err());
    }

    #[test]
    fn payload_limit() {
        let mut p = crate::Payload::new();
        p.insert(
            "big".into(),
            serde_json::Value::String("x".repeat(MAX_PAYLOAD_BYTES)),
        );
        let err = validate_document(&cfg(), &Document::new("a", vec![0.0; 3]).with_payload(p))
            .expect_err("too big");
        assert!(err.message().contains("limit is 65536"), "{err}");
    }

    #[test]
    fn k_limits() {
        assert!(validate_k(0).is_err());
        assert!(validate_k(1001).is_err());
        assert!(validate_k(1000).is_ok());
    }
}
