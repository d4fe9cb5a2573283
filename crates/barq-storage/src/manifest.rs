//! The manifest: the single source of truth for what exists (docs/design.md §4).
//!
//! `DIR/MANIFEST` is a JSON document `{"checksum": "crc32c:…", "manifest": {…}}` holding every
//! collection and every sealed segment. It is replaced atomically (write `MANIFEST.tmp`, fsync,
//! rename, fsync the directory): after a crash the file is either the old or the new version. A
//! segment exists iff the manifest lists it; a segment file it does not list is garbage.
//!
//! [`ManifestStore`] serializes commits: a caller edits a copy under the store's lock, the copy is
//! written, and only then becomes the current version. A failed write leaves the in-memory
//! version unchanged and poisons the store (a failed fsync is not retried).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use barq_core::{Error, ErrorKind, Metric, Result};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::fsutil;

/// File name of the manifest in the data directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Version of the manifest's JSON layout.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

pub use crate::tier::StorageTier;

/// One sealed segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Unique within its collection, increasing in creation order.
    pub id: u64,
    /// File name inside the collection's `segments/` directory.
    pub file_name: String,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// Rows, tombstones included.
    pub rows: u64,
    /// Smallest sequence number of any row.
    pub min_seq: u64,
    /// Largest sequence number of any row.
    pub max_seq: u64,
    /// When the segment was sealed, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Where the bytes live.
    pub tier: StorageTier,
    /// Object key when a copy exists in object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_key: Option<String>,
    /// Checksum of the whole file, `crc32c:xxxxxxxx`.
    pub checksum: String,
    /// Pinned segments stay Hot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    /// When the segment last changed tier (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_at_ms: Option<u64>,
}

/// One collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionEntry {
    /// The collection's name.
    pub name: String,
    /// Vector dimension.
    pub dimension: u32,
    /// Distance metric.
    pub metric: Metric,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Every write with a sequence number up to this one is in a sealed segment; WAL records at
    /// or below it are skipped on replay.
    pub flushed_seq: u64,
    /// Next segment id to hand out.
    pub next_segment_id: u64,
    /// Sealed segments, ordered by sequence range (oldest first). Ranges never overlap.
    pub segments: Vec<SegmentEntry>,
    /// A pinned collection's segments stay Hot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    /// The collection's tiering policy overrides (omitted when empty, so manifests written
    /// before tiering existed keep their checksum).
    #[serde(
        default,
        skip_serializing_if = "crate::tier::TieringOverrides::is_empty"
    )]
    pub tiering: crate::tier::TieringOverrides,
}

/// The whole manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of this document.
    pub format_version: u32,
    /// Incremented by every commit.
    pub version: u64,
    /// Collections by name.
    pub collections: BTreeMap<String, CollectionEntry>,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    checksum: String,
    manifest: serde_json::Value,
}

/// `crc32c:xxxxxxxx` of `bytes`.
pub(crate) fn checksum_string(crc: u32) -> String {
    format!("crc32c:{crc:08x}")
}

/// The checksummed bytes: the manifest serialized from its typed form (struct fields in
/// declaration order, `BTreeMap` keys sorted), so the checksum does not depend on how a JSON
/// library orders object keys.
fn canonical(manifest: &Manifest) -> Result<Vec<u8>> {
    serde_json::to_vec(manifest).map_err(|e| Error::internal(format!("encode manifest: {e}")))
}

fn encode(manifest: &Manifest) -> Result<Vec<u8>> {
    let checksum = checksum_string(crc32c::crc32c(&canonical(manifest)?));
    let body = serde_json::to_value(manifest)
        .map_err(|e| Error::internal(format!("encode manifest: {e}")))?;
    let env = Envelope {
        checksum,
        manifest: body,
    };
    serde_json::to_vec_pretty(&env).map_err(|e| Error::internal(format!("encode manifest: {e}")))
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Manifest> {
    let corrupt = |why: String| Error::corruption(format!("manifest {}: {why}", path.display()));
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let manifest: Manifest =
        serde_json::from_value(env.manifest).map_err(|e| corrupt(e.to_string()))?;
    if manifest.format_version > MANIFEST_FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} is newer than this build supports ({MANIFEST_FORMAT_VERSION})",
            manifest.format_version
        )));
    }
    let actual = checksum_string(crc32c::crc32c(&canonical(&manifest)?));
    if actual != env.checksum {
        return Err(corrupt(format!(
            "checksum mismatch: stored {}, computed {actual}",
            env.checksum
        )));
    }
    Ok(manifest)
}

/// The current manifest and the lock that serializes commits.
#[derive(Debug)]
pub(crate) struct ManifestStore {
    path: PathBuf,
    current: Mutex<Result<Manifest, String>>,
}

impl ManifestStore {
    /// Load `DIR/MANIFEST`, or start an empty one if there is none.
    pub(crate) fn open(dir: &Path) -> Result<ManifestStore> {
        let path = dir.join(MANIFEST_FILE);
        let manifest = match std::fs::read(&path) {
            Ok(bytes) => decode(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let m = Manifest {
                    format_version: MANIFEST_FORMAT_VERSION,
                    ..Manifest::default()
                };
                fsutil::write_atomic(&path, &encode(&m)?)?;
                m
            }
            Err(e) => return Err(Error::io(format_args!("read {}", path.display()), e)),
        };
        Ok(ManifestStore {
            path,
            current: Mutex::new(Ok(manifest)),
        })
    }

    /// A copy of the current manifest.
    pub(crate) fn snapshot(&self) -> Result<Manifest> {
        self.current.lock().clone().map_err(poisoned)
    }

    /// Apply `edit` to a copy, write it durably, then make it current. `edit` may refuse by
    /// returning an error; nothing is written then.
    pub(crate) fn commit<T>(&self, edit: impl FnOnce(&mut Manifest) -> Result<T>) -> Result<T> {
        let mut guard = self.current.lock();
        let current = guard.as_ref().map_err(|e| poisoned(e.clone()))?;
        let mut next = current.clone();
        let out = edit(&mut next)?;
        next.version += 1;
        next.format_version = MANIFEST_FORMAT_VERSION;
        let bytes = encode(&next)?;
        if let Err(e) = fsutil::write_atomic(&self.path, &bytes) {
            tracing::error!(error = %e, "manifest commit failed, the database is poisoned");
            *guard = Err(e.to_string());
            return Err(e);
        }
        *guard = Ok(next);
        Ok(out)
    }
}

fn poisoned(why: String) -> Error {
    Error::new(
        ErrorKind::Closed,
        format!("database poisoned by a failed manifest write ({why}); reopen it"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_then_reopen_roundtrips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ManifestStore::open(dir.path()).expect("open");
        store
            .commit(|m| {
                m.collections.insert(
                    "a".into(),
                    CollectionEntry {
                        name: "a".into(),
                        dimension: 3,
                        metric: Metric::L2,
                        created_at_ms: 1,
                        flushed_seq: 7,
                        next_segment_id: 2,
                        segments: vec![SegmentEntry {
                            id: 1,
                            file_name: "1.seg".into(),
                            size_bytes: 10,
                            rows: 2,
                            min_seq: 1,
                            max_seq: 7,
                            created_at_ms: 5,
                            tier: StorageTier::Hot,
                            remote_key: None,
                            checksum: checksum_string(9),
                            pinned: false,
                            moved_at_ms: None,
                        }],
                        pinned: false,
                        tiering: Default::default(),
                    },
                );
                Ok(())
            })
            .expect("commit");
        let again = ManifestStore::open(dir.path())
            .expect("reopen")
            .snapshot()
            .expect("snap");
        assert_eq!(again, store.snapshot().expect("snap"));
        assert_eq!(again.version, 1);
        assert!(!dir.path().join("MANIFEST.tmp").exists());
    }

    #[test]
    fn a_flipped_byte_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        ManifestStore::open(dir.path()).expect("open");
        let path = dir.path().join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path)
            .expect("read")
            .replace("\"version\": 0", "\"version\": 5");
        std::fs::write(&path, text).expect("write");
        let err = ManifestStore::open(dir.path()).expect_err("corrupt");
        assert_eq!(err.kind(), ErrorKind::DataCorruption);
    }

    #[test]
    fn a_refused_edit_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ManifestStore::open(dir.path()).expect("open");
        let r: Result<()> = store.commit(|m| {
            m.version = 99;
            Err(Error::invalid("no"))
        });
        assert!(r.is_err());
        assert_eq!(store.snapshot().expect("snap").version, 0);
    }

    /// A manifest as written before tiering existed (no pins, overrides or move times) still
    /// opens: fields that hold their defaults are not serialized, so its checksum still matches.
    #[test]
    fn a_manifest_without_tiering_fields_still_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = r#"{"format_version":1,"version":3,"collections":{"a":{"name":"a","dimension":2,"metric":"l2","created_at_ms":1,"flushed_seq":4,"next_segment_id":2,"segments":[{"id":1,"file_name":"00000000000000000001.seg","size_bytes":10,"rows":2,"min_seq":1,"max_seq":4,"created_at_ms":5,"tier":"hot","checksum":"crc32c:00000009"}]}}}"#;
        let file = format!(
            r#"{{"checksum":"{}","manifest":{body}}}"#,
            checksum_string(crc32c::crc32c(body.as_bytes()))
        );
        std::fs::write(dir.path().join(MANIFEST_FILE), file).expect("write");
        let m = ManifestStore::open(dir.path())
            .expect("old manifest opens")
            .snapshot()
            .expect("snap");
        let c = &m.collections["a"];
        assert!(!c.pinned && c.tiering.is_empty() && !c.segments[0].pinned);
        assert_eq!(c.segments[0].moved_at_ms, None);
    }
}
