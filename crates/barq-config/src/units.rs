//! Durations (`7d`, `90s`, `500ms`) and sizes (`10GiB`, `512 MiB`, `1000`) as they are written
//! in the configuration file and the environment: the types of `barq_core::units`, shared with
//! the engine's policy types and the HTTP API.

pub use barq_core::units::{HumanDuration, Size};
