//! Startup reconciliation of one collection: the manifest says where each segment lives; local
//! copies it does not point at are leftovers of a move interrupted after its commit, and are
//! deleted; `*.tmp` files (half-done copies and downloads) are swept. Objects in the store that no
//! manifest entry references are the business of maintenance (after a grace period), since the
//! store may be unreachable while the database opens.

use std::collections::HashSet;
use std::path::Path;

use barq_core::{Error, Result};

use super::TierEnv;
use crate::fsutil;
use crate::manifest::{CollectionEntry, ManifestStore, StorageTier};

fn remove_if_exists(path: &Path, why: &str) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(file = %path.display(), why, "removing segment copy the manifest does not point at");
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format_args!("remove {}", path.display()), e)),
    }
}

/// Remove `*.seg` files in `dir` whose names are not in `keep`.
fn sweep_unreferenced(dir: &Path, keep: &HashSet<&str>) -> Result<bool> {
    let mut removed = false;
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format_args!("list {}", dir.display()), e)),
    };
    for item in rd {
        let path = item
            .map_err(|e| Error::io(format_args!("list {}", dir.display()), e))?
            .path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".seg") && !keep.contains(name) {
            removed |= remove_if_exists(&path, "no manifest entry places it here")?;
        }
    }
    Ok(removed)
}

/// Reconcile `entry` with the disks; returns the entry as it now stands (a segment whose local
/// file vanished but which has a verified remote copy is marked Cold, and that is committed).
pub(crate) fn reconcile_collection(
    env: &TierEnv,
    hot_collection_dir: &Path,
    entry: &CollectionEntry,
    manifest: &ManifestStore,
) -> Result<CollectionEntry> {
    let hot_dir = hot_collection_dir.join("segments");
    fsutil::create_dir_durable(&hot_dir)?;
    fsutil::sweep_tmp_files(&hot_dir)?;
    let warm_dir = match &env.warm_dir {
        Some(w) => {
            let d = w.join("collections").join(&entry.name).join("segments");
            fsutil::create_dir_durable(&d)?;
            fsutil::sweep_tmp_files(&d)?;
            Some(d)
        }
        None => None,
    };
    let mut fixed = entry.clone();
    let mut now_cold = Vec::new();
    for s in &mut fixed.segments {
        let hot = hot_dir.join(&s.file_name);
        let warm = warm_dir.as_ref().map(|d| d.join(&s.file_name));
        match s.tier {
            StorageTier::Hot => {
                if !hot.exists() && s.remote_key.is_some() {
                    tracing::warn!(collection = %entry.name, segment = s.id, "hot segment file is missing; serving it from its remote copy");
                    s.tier = StorageTier::Cold;
                    now_cold.push(s.id);
                }
                if let Some(w) = &warm {
                    remove_if_exists(w, "the segment is hot")?;
                }
            }
            StorageTier::Warm => {
                let Some(w) = &warm else {
                    return Err(Error::invalid(format!(
                        "segment {} of collection \"{}\" is in the warm tier but no warm_dir is configured",
                        s.id, entry.name
                    )));
                };
                if !w.exists() && s.remote_key.is_some() {
                    tracing::warn!(collection = %entry.name, segment = s.id, "warm segment file is missing; serving it from its remote copy");
                    s.tier = StorageTier::Cold;
                    now_cold.push(s.id);
                }
                remove_if_exists(&hot, "the segment is warm")?;
            }
            StorageTier::Cold => {
                remove_if_exists(&hot, "the segment is cold")?;
                if let Some(w) = &warm {
                    remove_if_exists(w, "the segment is cold")?;
                }
            }
        }
    }
    let keep = |tier: StorageTier| -> HashSet<&str> {
        fixed
            .segments
            .iter()
            .filter(|s| s.tier == tier)
            .map(|s| s.file_name.as_str())
            .collect()
    };
    sweep_unreferenced(&hot_dir, &keep(StorageTier::Hot))?;
    fsutil::fsync_dir(&hot_dir)?;
    if let Some(d) = &warm_dir {
        sweep_unreferenced(d, &keep(StorageTier::Warm))?;
        fsutil::fsync_dir(d)?;
    }
    if !now_cold.is_empty() {
        let name = entry.name.clone();
        manifest.commit(|m| {
            if let Some(c) = m.collections.get_mut(&name) {
                for s in c.segments.iter_mut().filter(|s| now_cold.contains(&s.id)) {
                    s.tier = StorageTier::Cold;
                    s.moved_at_ms = Some(env.clock.now_ms());
                }
            }
            Ok(())
        })?;
    }
    Ok(fixed)
}
