//! The bucket as the shared engine: every sealed segment and manifest version in the cold
//! store, so that the bucket alone can rebuild a node ([`crate::Database::restore`]) and
//! several nodes can read one database.
//!
//! # Layout under the store's prefix
//!
//! ```text
//! <prefix>/<collection>/segments/<id:020>.seg   segment files (uploaded on seal or offloaded)
//! <prefix>/manifest/<version:020>.json          manifest versions, written once each
//! <prefix>/epoch/<epoch:020>                    writer epochs, written once each
//! ```
//!
//! A manifest version is published only after every segment it names has a verified copy in
//! the store, with a create-only put (`PutMode::Create`), so no version is ever overwritten. A
//! version is `{"checksum": "crc32c:…", "published": {epoch, published_at_ms, manifest}}`;
//! the checksum covers the canonical bytes of `published`, so a torn or altered object is
//! detected and skipped by readers.
//!
//! A writer claims the next epoch at its first publish (a create-only put of
//! `epoch/<n+1>`). Before each publish it checks that `epoch/<own+1>` does not exist; once it
//! does, a newer writer owns the bucket and this one is *fenced*: it publishes nothing more and
//! takes no more writes (`Conflict`, in status and logs). Two processes started on one prefix
//! by mistake therefore cannot both commit to it: the later one wins.
//!
//! Versions older than the retention are deleted (the newest always stays), and an object
//! that lost its last reference is collected only after it has been unreferenced for the
//! retention too, so every version a reader may still hold names objects that exist.

mod follow;
mod publish;
pub(crate) mod restore;

pub(crate) use follow::Follower;
pub use follow::ReplicaStatus;
pub use publish::BucketStatus;
pub(crate) use publish::Publisher;
pub use restore::RestoreReport;

use barq_core::{Error, ErrorKind, Result};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::manifest::{Manifest, StorageTier, checksum_string};
use crate::tiering::ColdStore;
use crate::tiering::store::path;

/// Directory of manifest versions under the prefix.
pub const MANIFEST_DIR: &str = "manifest";
/// Directory of writer epochs under the prefix.
pub const EPOCH_DIR: &str = "epoch";

/// One manifest version as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedManifest {
    /// The epoch of the writer that published it.
    pub epoch: u64,
    /// When it was published, ms since the Unix epoch.
    pub published_at_ms: u64,
    /// Where clients reach the writer, if it says ([`TieringOptions::writer_url`](crate::tiering::TieringOptions::writer_url)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_url: Option<String>,
    /// The manifest (its `version` is the object's number).
    pub manifest: Manifest,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    checksum: String,
    published: serde_json::Value,
}

fn canonical(p: &PublishedManifest) -> Result<Vec<u8>> {
    serde_json::to_vec(p).map_err(|e| Error::internal(format!("encode manifest version: {e}")))
}

/// The bytes of a published version.
pub(crate) fn encode(p: &PublishedManifest) -> Result<Vec<u8>> {
    let checksum = checksum_string(crc32c::crc32c(&canonical(p)?));
    let published = serde_json::to_value(p)
        .map_err(|e| Error::internal(format!("encode manifest version: {e}")))?;
    serde_json::to_vec(&Envelope {
        checksum,
        published,
    })
    .map_err(|e| Error::internal(format!("encode manifest version: {e}")))
}

/// Decode and check a published version read from `key`.
pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<PublishedManifest> {
    let corrupt = |why: String| {
        Error::new(
            ErrorKind::DataCorruption,
            format!("manifest version {key}: {why}"),
        )
    };
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let p: PublishedManifest =
        serde_json::from_value(env.published).map_err(|e| corrupt(e.to_string()))?;
    if p.manifest.format_version > crate::manifest::MANIFEST_FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} is newer than this build supports ({})",
            p.manifest.format_version,
            crate::manifest::MANIFEST_FORMAT_VERSION
        )));
    }
    let actual = checksum_string(crc32c::crc32c(&canonical(&p)?));
    if actual != env.checksum {
        return Err(corrupt(format!(
            "checksum mismatch: stored {}, computed {actual}",
            env.checksum
        )));
    }
    Ok(p)
}

/// Place every segment of a published manifest in the cold tier (the bucket is where a
/// restored node or a replica finds them). Returns the segments and their bytes.
/// `DataCorruption` if one has no copy in the store (a writer never publishes such a version).
pub(crate) fn all_cold(manifest: &mut Manifest, now_ms: u64) -> Result<(u64, u64)> {
    let version = manifest.version;
    let (mut segments, mut bytes) = (0, 0);
    for c in manifest.collections.values_mut() {
        for s in &mut c.segments {
            if s.remote_key.is_none() {
                return Err(Error::new(
                    ErrorKind::DataCorruption,
                    format!(
                        "manifest version {version} names segment {} of \"{}\" without a copy in the store",
                        s.id, c.name
                    ),
                ));
            }
            if s.tier != StorageTier::Cold {
                s.tier = StorageTier::Cold;
                s.moved_at_ms = Some(now_ms);
            }
            segments += 1;
            bytes += s.size_bytes;
        }
    }
    Ok((segments, bytes))
}

/// `<prefix>/<dir>/<n:020>` plus `suffix`.
pub(crate) fn numbered_key(cold: &ColdStore, dir: &str, n: u64, suffix: &str) -> String {
    cold.key(&format!("{dir}/{n:020}{suffix}"))
}

/// The key of manifest version `version`.
pub(crate) fn manifest_key(cold: &ColdStore, version: u64) -> String {
    numbered_key(cold, MANIFEST_DIR, version, ".json")
}

/// The key of writer epoch `epoch`.
pub(crate) fn epoch_key(cold: &ColdStore, epoch: u64) -> String {
    numbered_key(cold, EPOCH_DIR, epoch, "")
}

/// The numbers under `<prefix>/<dir>/`, ascending, with each object's last-modified time (ms).
pub(crate) async fn list_numbered(cold: &ColdStore, dir: &str) -> Result<Vec<(u64, i64)>> {
    list_numbered_after(cold, dir, None).await
}

/// [`list_numbered`], only the numbers above `after` (the listing starts there).
pub(crate) async fn list_numbered_after(
    cold: &ColdStore,
    dir: &str,
    after: Option<u64>,
) -> Result<Vec<(u64, i64)>> {
    let root = path(&cold.key(dir));
    cold.counters
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut listing = match after {
        None => cold.inner().list(Some(&root)),
        Some(n) => {
            let offset = path(&numbered_key(
                cold,
                dir,
                n,
                if dir == MANIFEST_DIR { ".json" } else { "" },
            ));
            cold.inner().list_with_offset(Some(&root), &offset)
        }
    };
    let mut found = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| cold.error(&format!("list {root}"), e))?;
        let Some(name) = meta.location.filename() else {
            continue;
        };
        let stem = name.strip_suffix(".json").unwrap_or(name);
        if stem.len() == 20
            && let Ok(n) = stem.parse::<u64>()
            && after.is_none_or(|a| n > a)
        {
            found.push((n, meta.last_modified.timestamp_millis()));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Read and check manifest version `version`.
pub(crate) async fn read_version(cold: &ColdStore, version: u64) -> Result<PublishedManifest> {
    let key = manifest_key(cold, version);
    let p = path(&key);
    let bytes = cold
        .retry(&format!("get {key}"), || async {
            cold.inner().get(&p).await?.bytes().await
        })
        .await?;
    decode(&key, &bytes)
}

/// The newest manifest version in the bucket that reads and checks, and a message for each
/// newer one that did not (torn, altered, unreadable): `None` when the bucket holds none.
pub(crate) async fn newest_version(
    cold: &ColdStore,
) -> Result<(Option<PublishedManifest>, Vec<String>)> {
    let versions = list_numbered(cold, MANIFEST_DIR).await?;
    let mut skipped = Vec::new();
    for (v, _) in versions.iter().rev() {
        match read_version(cold, *v).await {
            Ok(p) => return Ok((Some(p), skipped)),
            Err(e) if e.kind() == ErrorKind::DataCorruption || e.kind() == ErrorKind::NotFound => {
                tracing::error!(version = v, error = %e, "skipping a manifest version of the bucket");
                skipped.push(e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    Ok((None, skipped))
}
