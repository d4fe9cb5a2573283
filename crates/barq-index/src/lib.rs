//! Barq DB's approximate-search index, one per sealed segment.
//!
//! An IVF index: the segment's rows are partitioned by balanced hierarchical k-means
//! ([`kmeans`]) into clusters of about a thousand rows, and each row is stored in its cluster
//! with a RaBitQ code of its residual to the centroid ([`rabitq`]). A query ranks the
//! centroids, scans the codes of the nearest clusters (the probe count comes from a calibration
//! at build time, [`ivf::calibrate`]), and re-ranks the best candidates with their f32
//! vectors. Pure computation: where the clusters' bytes live is the storage engine's concern.

pub mod ivf;
pub mod kmeans;
pub mod rabitq;
mod rng;
pub mod rotation;

pub use ivf::{
    BuiltIndex, CALIBRATED_RECALLS, IndexHead, IndexParams, Partitioned, PreparedQuery, build,
    partition,
};
pub use rabitq::Quantizer;
