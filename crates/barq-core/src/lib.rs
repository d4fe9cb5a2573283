//! Barq DB core: the vocabulary every other crate shares.
//!
//! This crate has no I/O. It holds the [`Clock`] the engine reads time through, the data model (collection names, [`Metric`],
//! [`Document`], [`CollectionConfig`]), the validation rules of docs/design.md §1 with their limits,
//! the distance kernels used by exact search, and the public [`Error`] with its small set of
//! [`ErrorKind`]s that the server maps to HTTP statuses in one place. [`units`] holds the human
//! forms of durations and sizes (`7d`, `10GiB`) that settings, the API and the manifest share.

mod clock;
mod distance;
mod document;
mod error;
pub mod filter;
mod metric;
pub mod units;
mod validate;

pub use clock::{Clock, SystemClock};
pub use distance::{Kernel, dot, l2_squared, norm};
pub use document::{
    CollectionConfig, Document, Payload, SearchHit, decode_base64_vector, deserialize_vector,
    encode_base64_vector,
};
pub use error::{Error, ErrorKind, Result};
pub use filter::{FieldType, Filter, IndexedField};
pub use metric::Metric;
pub use validate::{
    MAX_DIMENSION, MAX_ID_BYTES, MAX_K, MAX_PAYLOAD_BYTES, validate_collection_name,
    validate_document, validate_id, validate_k, validate_query_vector,
};
