//! Building a data directory from the bucket alone: the newest manifest version that checks,
//! with every segment Cold (read lazily by range, hydrated by policy as usual).

use std::path::Path;
use std::time::Instant;

use barq_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use super::newest_version;
use crate::manifest::ManifestStore;
use crate::tiering::{ColdStore, ColdStoreSpec};

/// What a restore found and built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The store it read.
    pub store: String,
    /// The manifest version restored.
    pub version: u64,
    /// The epoch of the writer that published it.
    pub epoch: u64,
    /// When it was published, ms since the Unix epoch.
    pub published_at_ms: u64,
    /// Collections restored.
    pub collections: u64,
    /// Segments restored (all Cold).
    pub segments: u64,
    /// Their bytes (in the store, none copied).
    pub bytes: u64,
    /// Newer versions that were skipped because they did not read or check.
    pub skipped: Vec<String>,
    /// Wall time of the restore, in milliseconds.
    pub took_ms: u64,
}

/// Write `dir/MANIFEST` from the newest good manifest version in `spec`'s bucket. `dir` must
/// be absent or empty.
pub(crate) fn restore_manifest(
    dir: &Path,
    spec: &ColdStoreSpec,
    now_ms: u64,
) -> Result<RestoreReport> {
    let started = Instant::now();
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()) {
        Ok(true) => {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} is not empty: restore builds a new data directory",
                    dir.display()
                ),
            ));
        }
        Ok(false) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format_args!("list {}", dir.display()), e)),
    }
    let cold = ColdStore::new(spec.store.clone(), &spec.prefix, spec.description.clone())?;
    let (found, skipped) = cold.block_on(newest_version(&cold))?;
    let Some(published) = found else {
        let why = if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({} unreadable: {})", skipped.len(), skipped.join("; "))
        };
        return Err(Error::not_found(format!(
            "{} holds no manifest version under {}/{}{why}: a writer publishes there when \
             upload on seal is on",
            cold.description(),
            cold.prefix(),
            super::MANIFEST_DIR
        )));
    };
    let mut manifest = published.manifest;
    let (segments, bytes) = super::all_cold(&mut manifest, now_ms)?;
    crate::fsutil::create_dir_durable(dir)?;
    ManifestStore::install(dir, &manifest)?;
    Ok(RestoreReport {
        store: cold.description().to_owned(),
        version: manifest.version,
        epoch: published.epoch,
        published_at_ms: published.published_at_ms,
        collections: manifest.collections.len() as u64,
        segments,
        bytes,
        skipped,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
