//! [`Shared`]: the state of an open database that its handles, the tiering manager and the
//! background jobs share. A struct of its own, so that the modules that use it need not import
//! one another.

use std::path::PathBuf;
use std::sync::Arc;

use crate::Options;
use crate::manifest::ManifestStore;
use crate::tiering::TierEnv;
use crate::tiering::TieringManager;
use crate::tiering::manager::Collections;

/// State shared with the background threads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub options: Options,
    pub manifest: Arc<ManifestStore>,
    pub collections: Arc<Collections>,
    pub env: Arc<TierEnv>,
    pub tiering: TieringManager,
    /// Set when a background worker panicked.
    pub poison: Arc<crate::poison::Poison>,
    /// Re-runs a sample of indexed searches exactly.
    pub recall: crate::recall::RecallSampler,
    /// A read-only replica's view of the bucket it follows, and its poll interval.
    pub replica: Option<(crate::bucket::Follower, std::time::Duration)>,
}
