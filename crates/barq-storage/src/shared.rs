//! [`Shared`]: the state of an open database that its handles, the tiering manager and the
//! background jobs share. A struct of its own, so that the modules that use it need not import
//! one another.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::Options;
use crate::collection::Collection;
use crate::manifest::ManifestStore;
use crate::tiering::TierEnv;
use crate::tiering::state::ManagerState;

/// State shared with the background threads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub options: Options,
    pub manifest: Arc<ManifestStore>,
    pub collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    pub env: Arc<TierEnv>,
    pub tier_state: ManagerState,
    /// Set when a background worker panicked.
    pub poison: Arc<crate::poison::Poison>,
}
