//! The tiering manager's state that is not in the manifest ([`ManagerState`]: move errors, the
//! maintenance lock, the orphan-collection lock and first-seen times) and the files it persists
//! in the data directory: `ACCESS` (access statistics) and `ORPHANS` (when each unreferenced
//! object was first seen).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::tier::MoveError;

/// The per-database tiering state that is not in the manifest.
#[derive(Debug, Default)]
pub(crate) struct ManagerState {
    pub errors: Mutex<BTreeMap<(String, u64), MoveError>>,
    pub last_maintenance_ms: Mutex<Option<u64>>,
    pub maintenance: Mutex<()>,
    /// Moves hold it shared, orphan collection exclusively: an object cannot be judged an
    /// orphan while a move that may be about to reference it is running.
    pub gc: parking_lot::RwLock<()>,
    /// When orphan collection first saw each unreferenced object: the grace period runs from
    /// there (an object a compaction just left behind may still be read by a query).
    pub orphan_seen: Mutex<HashMap<String, i64>>,
}

/// The persisted access statistics: collection → segment → (last access ms, count).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct AccessFile {
    pub collections: BTreeMap<String, HashMap<u64, (u64, u64)>>,
}

/// File name of the first-seen times of unreferenced objects.
pub(crate) const ORPHANS_FILE: &str = "ORPHANS";

/// File name of the access statistics in the data directory.
pub(crate) const ACCESS_FILE: &str = "ACCESS";

impl ManagerState {
    /// The state of a database opening in `dir`: the orphan first-seen times from `ORPHANS`
    /// (an unreadable file only delays deletions).
    pub(crate) fn open(dir: &Path) -> ManagerState {
        ManagerState {
            orphan_seen: Mutex::new(
                std::fs::read(dir.join(ORPHANS_FILE))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default(),
            ),
            ..ManagerState::default()
        }
    }
}

impl AccessFile {
    /// The access statistics persisted in `dir` (none if missing; an unreadable file is
    /// ignored with a warning).
    pub(crate) fn load(dir: &Path) -> AccessFile {
        match std::fs::read(dir.join(ACCESS_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ignoring unreadable access statistics");
                AccessFile::default()
            }),
            Err(_) => AccessFile::default(),
        }
    }
}
