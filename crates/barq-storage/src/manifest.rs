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

/// An error of the manifest. Converted into [`barq_core::Error`] at the module's edge; find it
/// again with [`barq_core::Error::find_source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Reading the manifest file failed.
    #[error("read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse, or its checksum does not match its contents.
    #[error("manifest {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by a newer build.
    #[error("manifest {}: format version {found} is newer than this build supports ({supported})", path.display())]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// Serializing the manifest failed (a bug).
    #[error("encode manifest: {0}")]
    Encode(#[source] serde_json::Error),
    /// An earlier commit failed to write; the manifest takes no more commits.
    #[error("database poisoned by a failed manifest write ({0}); reopen it")]
    Poisoned(String),
}

impl ManifestError {
    /// The coarse kind callers see.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ManifestError::Read { .. } | ManifestError::Encode(_) => ErrorKind::Internal,
            ManifestError::Corrupt { .. } | ManifestError::NewerFormat { .. } => {
                ErrorKind::DataCorruption
            }
            ManifestError::Poisoned(_) => ErrorKind::Closed,
        }
    }
}

barq_core::subsystem_error!(ManifestError);

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
    /// Payload fields each indexed segment indexes (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexed_fields: Vec<barq_core::IndexedField>,
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
    Ok(serde_json::to_vec(manifest).map_err(ManifestError::Encode)?)
}

/// Whether `stored` is the checksum of the canonical bytes as builds that wrote a duration of a
/// collection's `tiering` in serde's `{"secs":…,"nanos":…}` form computed them. Those bytes
/// differ from [`canonical`] only in that form, so only a manifest with a duration override is
/// checked; the next commit rewrites it in the current form.
fn legacy_checksum_matches(manifest: &Manifest, stored: &str) -> Result<bool> {
    use std::time::Duration;

    /// [`Manifest`] with the field order and omissions of its serialization.
    #[derive(Serialize)]
    struct LegacyManifest<'a> {
        format_version: u32,
        version: u64,
        collections: BTreeMap<&'a str, LegacyCollection<'a>>,
    }
    /// [`CollectionEntry`], likewise.
    #[derive(Serialize)]
    struct LegacyCollection<'a> {
        name: &'a str,
        dimension: u32,
        metric: &'a Metric,
        created_at_ms: u64,
        flushed_seq: u64,
        next_segment_id: u64,
        segments: &'a [SegmentEntry],
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        pinned: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        tiering: Option<LegacyOverrides>,
    }
    /// [`crate::tier::TieringOverrides`] with serde's own `Duration` form.
    #[derive(Serialize)]
    struct LegacyOverrides {
        #[serde(skip_serializing_if = "Option::is_none")]
        move_to_warm_after: Option<Duration>,
        #[serde(skip_serializing_if = "Option::is_none")]
        move_to_cold_after: Option<Duration>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max_hot_size_bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max_warm_size_bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        min_residency: Option<Duration>,
    }

    let has_duration = manifest.collections.values().any(|c| {
        let t = &c.tiering;
        t.move_to_warm_after.is_some()
            || t.move_to_cold_after.is_some()
            || t.min_residency.is_some()
    });
    if !has_duration {
        return Ok(false);
    }
    let legacy = LegacyManifest {
        format_version: manifest.format_version,
        version: manifest.version,
        collections: manifest
            .collections
            .iter()
            .map(|(name, c)| {
                let t = &c.tiering;
                let entry = LegacyCollection {
                    name: &c.name,
                    dimension: c.dimension,
                    metric: &c.metric,
                    created_at_ms: c.created_at_ms,
                    flushed_seq: c.flushed_seq,
                    next_segment_id: c.next_segment_id,
                    segments: &c.segments,
                    pinned: c.pinned,
                    tiering: (!t.is_empty()).then_some(LegacyOverrides {
                        move_to_warm_after: t.move_to_warm_after,
                        move_to_cold_after: t.move_to_cold_after,
                        max_hot_size_bytes: t.max_hot_size_bytes,
                        max_warm_size_bytes: t.max_warm_size_bytes,
                        min_residency: t.min_residency,
                    }),
                };
                (name.as_str(), entry)
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&legacy).map_err(ManifestError::Encode)?;
    Ok(checksum_string(crc32c::crc32c(&bytes)) == stored)
}

fn encode(manifest: &Manifest) -> Result<Vec<u8>> {
    let checksum = checksum_string(crc32c::crc32c(&canonical(manifest)?));
    let body = serde_json::to_value(manifest).map_err(ManifestError::Encode)?;
    let env = Envelope {
        checksum,
        manifest: body,
    };
    Ok(serde_json::to_vec_pretty(&env).map_err(ManifestError::Encode)?)
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Manifest> {
    let corrupt = |reason: String| ManifestError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let manifest: Manifest =
        serde_json::from_value(env.manifest).map_err(|e| corrupt(e.to_string()))?;
    if manifest.format_version > MANIFEST_FORMAT_VERSION {
        return Err(ManifestError::NewerFormat {
            path: path.to_owned(),
            found: manifest.format_version,
            supported: MANIFEST_FORMAT_VERSION,
        }
        .into());
    }
    let actual = checksum_string(crc32c::crc32c(&canonical(&manifest)?));
    if actual != env.checksum && !legacy_checksum_matches(&manifest, &env.checksum)? {
        return Err(corrupt(format!(
            "checksum mismatch: stored {}, computed {actual}",
            env.checksum
        ))
        .into());
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
            Err(source) => return Err(ManifestError::Read { path, source }.into()),
        };
        Ok(ManifestStore {
            path,
            current: Mutex::new(Ok(manifest)),
        })
    }

    /// Write `manifest` as `DIR/MANIFEST` exactly as it is (its version included), for a data
    /// directory built from a bucket. The directory must not hold a manifest yet.
    pub(crate) fn install(dir: &Path, manifest: &Manifest) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        if path.exists() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} exists: restore builds a new data directory",
                    path.display()
                ),
            ));
        }
        let mut m = manifest.clone();
        m.format_version = MANIFEST_FORMAT_VERSION;
        fsutil::write_atomic(&path, &encode(&m)?)
    }

    /// Make `manifest` the current version as it is (a replica following its bucket), written
    /// durably first.
    pub(crate) fn replace(&self, manifest: Manifest) -> Result<()> {
        let mut guard = self.current.lock();
        guard.as_ref().map_err(|e| poisoned(e.clone()))?;
        fsutil::write_atomic(&self.path, &encode(&manifest)?)?;
        *guard = Ok(manifest);
        Ok(())
    }

    /// Commit nothing but a version number of at least `min + 1`, so that the next version
    /// published to a bucket follows every version already there.
    pub(crate) fn raise_version_above(&self, min: u64) -> Result<()> {
        let current = self.snapshot()?.version;
        if current > min {
            return Ok(());
        }
        self.commit(|m| {
            m.version = m.version.max(min);
            Ok(())
        })
    }

    /// Why the manifest takes no more commits (a failed write), if it does not.
    pub(crate) fn failed(&self) -> Option<String> {
        self.current.lock().as_ref().err().cloned()
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
    ManifestError::Poisoned(why).into()
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
                        indexed_fields: Vec::new(),
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
        assert!(
            matches!(
                err.find_source::<ManifestError>(),
                Some(ManifestError::Corrupt { reason, .. }) if reason.starts_with("checksum mismatch")
            ),
            "{err}"
        );
    }

    #[test]
    fn a_manifest_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = Manifest {
            format_version: MANIFEST_FORMAT_VERSION + 1,
            ..Manifest::default()
        };
        let path = dir.path().join(MANIFEST_FILE);
        std::fs::write(&path, encode(&m).expect("encode")).expect("write");
        let err = ManifestStore::open(dir.path()).expect_err("newer");
        assert!(
            matches!(
                err.find_source::<ManifestError>(),
                Some(ManifestError::NewerFormat { found, .. }) if *found == MANIFEST_FORMAT_VERSION + 1
            ),
            "{err}"
        );
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

    /// A manifest whose overrides hold serde's `{"secs","nanos"}` durations (and whose checksum
    /// was computed over that form) still opens; the next commit writes humantime strings.
    #[test]
    fn a_manifest_with_legacy_duration_overrides_still_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = r#"{"format_version":1,"version":3,"collections":{"a":{"name":"a","dimension":2,"metric":"l2","created_at_ms":1,"flushed_seq":4,"next_segment_id":2,"segments":[{"id":1,"file_name":"00000000000000000001.seg","size_bytes":10,"rows":2,"min_seq":1,"max_seq":4,"created_at_ms":5,"tier":"hot","checksum":"crc32c:00000009"}],"pinned":true,"tiering":{"move_to_cold_after":{"secs":604800,"nanos":0},"max_hot_size_bytes":1024,"min_residency":{"secs":60,"nanos":0}}},"b":{"name":"b","dimension":2,"metric":"l2","created_at_ms":1,"flushed_seq":0,"next_segment_id":1,"segments":[]}}}"#;
        let file = format!(
            r#"{{"checksum":"{}","manifest":{body}}}"#,
            checksum_string(crc32c::crc32c(body.as_bytes()))
        );
        std::fs::write(dir.path().join(MANIFEST_FILE), file).expect("write");
        let store = ManifestStore::open(dir.path()).expect("legacy manifest opens");
        let t = store.snapshot().expect("snap").collections["a"]
            .tiering
            .clone();
        assert_eq!(
            t.move_to_cold_after,
            Some(std::time::Duration::from_secs(604_800))
        );
        assert_eq!(t.max_hot_size_bytes, Some(1024));
        assert_eq!(t.min_residency, Some(std::time::Duration::from_secs(60)));
        store.commit(|_| Ok(())).expect("commit");
        let text = std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).expect("read");
        assert!(
            text.contains(r#""move_to_cold_after": "7days""#) && !text.contains("secs"),
            "{text}"
        );
        let reopened = ManifestStore::open(dir.path())
            .expect("reopen")
            .snapshot()
            .expect("snap");
        assert_eq!(reopened.collections["a"].tiering, t);
        // Any other change of the legacy bytes is still corruption.
        let tampered = body.replace(r#""secs":60"#, r#""secs":61"#);
        let file = format!(
            r#"{{"checksum":"{}","manifest":{tampered}}}"#,
            checksum_string(crc32c::crc32c(body.as_bytes()))
        );
        std::fs::write(dir.path().join(MANIFEST_FILE), file).expect("write");
        let err = ManifestStore::open(dir.path()).expect_err("tampered");
        assert_eq!(err.kind(), ErrorKind::DataCorruption);
    }
}
