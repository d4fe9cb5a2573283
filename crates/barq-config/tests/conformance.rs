//! One conformance suite for the cold tier, run against every backend: object_store's
//! `InMemory`, a local directory (`LocalFileSystem`, built by barq-config from
//! `BARQ_COLD_STORE_URL=file://…`), S3 (SeaweedFS), Azure (Azurite) and GCS (fake-gcs-server),
//! the last three built by `barq_config::build_cold_store` as in production.
//!
//! Each test body below is generic over a [`Backend`]; `conformance!` instantiates all of them
//! per backend (`cargo test --test conformance s3::` runs one backend). Every test uses its own
//! key prefix. Covered: the safe-move protocol (offload = upload → verify → commit → local
//! delete; hydration keeps the remote copy; offloading again is a local delete), ranged reads (a
//! cold `get` fetches < 1% of the segment), listing scoped to the prefix, deletes (of documents in
//! cold segments, and of the objects compaction leaves behind), and orphan collection after the
//! grace period (an injected clock).
//!
//! GCS: fake-gcs-server refuses object_store's writes, so there the segments are offloaded by
//! another node to a local directory and placed in the bucket through the emulator's upload API
//! (as are the test's orphans), and the startup probe is off. Everything after that — cold
//! reads, ranged reads, hydration, offloading again (a HEAD), listing, deletes, orphan
//! collection — runs against the emulator. The first upload of the safe-move protocol is the
//! part GCS does not cover.
//!
//! The cloud backends need the test servers (`eval "$(scripts/test-services.sh env)"`): without
//! them their tests fail under `CI=true` and are skipped, with a printed reason, elsewhere.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use barq_core::{CollectionConfig, Document, Metric};
use barq_storage::tiering::ColdStoreSpec;
use barq_storage::{Database, SearchRequest, StorageTier};
use barq_testkit::ManualClock;
use common::{COLLECTION, list, manifest_keys, observe};
use object_store::{ObjectStore, ObjectStoreExt};

const GRACE: Duration = Duration::from_secs(3600);

/// A cold store under test: what the engine is given, and an independent view of the bucket.
struct Backend {
    spec: ColdStoreSpec,
    /// A client of the same bucket that is not Barq's (for `InMemory`, the store itself).
    independent: Arc<dyn ObjectStore>,
    /// fake-gcs-server (URL, bucket): writes go through its upload API, not object_store.
    gcs: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn in_memory() -> Option<Backend> {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        Some(Backend {
            spec: ColdStoreSpec {
                store: Arc::clone(&store),
                prefix: common::unique_prefix("mem"),
                description: "in memory".into(),
            },
            independent: store,
            gcs: None,
            _dir: None,
        })
    }

    fn local() -> Option<Backend> {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = common::local_spec(dir.path(), &common::unique_prefix("fs"));
        let independent: Arc<dyn ObjectStore> = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("fs"),
        );
        Some(Backend {
            spec,
            independent,
            gcs: None,
            _dir: Some(dir),
        })
    }

    fn s3() -> Option<Backend> {
        let (endpoint, bucket) = common::s3_service()?;
        let prefix = common::unique_prefix("s3");
        Some(Backend {
            spec: common::s3_spec(&endpoint, &bucket, &prefix, Path::new("/unused")),
            independent: common::s3_independent(&endpoint, &bucket),
            gcs: None,
            _dir: None,
        })
    }

    fn azure() -> Option<Backend> {
        let container = common::azure_service()?;
        let prefix = common::unique_prefix("az");
        Some(Backend {
            spec: common::azure_spec(&container, &prefix, Path::new("/unused")),
            independent: common::azure_independent(&container),
            gcs: None,
            _dir: None,
        })
    }

    fn gcs() -> Option<Backend> {
        let (url, bucket) = common::gcs_service()?;
        let prefix = common::unique_prefix("gcs");
        Some(Backend {
            spec: common::gcs_spec(&bucket, &prefix, Path::new("/unused")),
            independent: common::gcs_independent(&url, &bucket),
            gcs: Some((url, bucket)),
            _dir: None,
        })
    }

    fn prefix(&self) -> &str {
        &self.spec.prefix
    }

    /// The same backend under another prefix (a second database in the same bucket).
    fn with_prefix(&self, prefix: String) -> Backend {
        Backend {
            spec: ColdStoreSpec {
                prefix,
                ..self.spec.clone()
            },
            independent: Arc::clone(&self.independent),
            gcs: self.gcs.clone(),
            _dir: None,
        }
    }

    /// Open the database in `data` on this backend, reading `clock`, with the grace period
    /// [`GRACE`].
    fn open(&self, data: &Path, clock: &Arc<ManualClock>) -> barq_core::Result<Database> {
        let mut o = if self.gcs.is_some() {
            common::gcs_options()
        } else {
            common::options()
        };
        o.tiering.orphan_grace = GRACE;
        Database::builder(data)
            .options(o)
            .cold_store(self.spec.clone())
            .clock(Arc::clone(clock) as _)
            .open()
    }

    /// Put an object behind Barq's back.
    fn put(&self, key: &str, body: &[u8]) {
        match &self.gcs {
            Some((url, bucket)) => common::gcs_upload(url, bucket, key, body.to_vec()),
            None => common::runtime().block_on(async {
                self.independent
                    .put(
                        &object_store::path::Path::from(key),
                        object_store::PutPayload::from(body.to_vec()),
                    )
                    .await
                    .expect("put");
            }),
        }
    }

    /// A database in `data` holding what `fill` writes, every segment offloaded to this backend
    /// (for GCS: by another node, see the module docs).
    fn cold_db(
        &self,
        data: &Path,
        clock: &Arc<ManualClock>,
        fill: impl FnOnce(&Database),
    ) -> Database {
        if let Some((url, bucket)) = &self.gcs {
            let writer = data.with_extension("writer");
            common::offload_to_gcs_from_another_node(url, bucket, self.prefix(), &writer, fill);
            common::copy_data_dir(&writer, data);
        } else {
            let db = self.open(data, clock).expect("open");
            fill(&db);
            common::offload_all(&db);
            db.close().expect("close");
        }
        let db = self.open(data, clock).expect("open");
        for c in db.list_collections() {
            for s in db.tiering().segments(&c.name).expect("segments") {
                assert_eq!(s.tier, StorageTier::Cold, "segment {} of {}", s.id, c.name);
            }
        }
        db
    }

    fn keys(&self) -> BTreeSet<String> {
        list(&self.independent, self.prefix()).into_iter().collect()
    }
}

fn clock() -> Arc<ManualClock> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    Arc::new(ManualClock::new(now))
}

fn local_file(data: &Path, name: &str) -> Option<Vec<u8>> {
    std::fs::read(
        data.join("collections")
            .join(COLLECTION)
            .join("segments")
            .join(name),
    )
    .ok()
}

fn entry(db: &Database, id: u64) -> barq_storage::SegmentEntry {
    db.tiering()
        .segments(COLLECTION)
        .expect("segments")
        .into_iter()
        .find(|s| s.id == id)
        .expect("segment")
}

/// Offload = upload → verify → commit → delete the local file: afterwards the store holds exactly
/// the file's bytes under the manifest's key and the file is gone. Hydration brings the same
/// bytes back and keeps the remote copy; offloading the hydrated segment again uploads nothing.
fn safe_move_protocol(b: &Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let clock = clock();
    let (db, before, id, file_bytes) = if b.gcs.is_none() {
        let db = b.open(&data, &clock).expect("open");
        common::load(&db);
        let before = observe(&db);
        let s = db.tiering().segments(COLLECTION).expect("segments")[0].clone();
        let file_bytes = local_file(&data, &s.file_name).expect("a hot segment is a local file");
        assert!(
            b.keys().is_empty(),
            "nothing in the store before the offload"
        );
        let o = db
            .tiering()
            .offload_segment(COLLECTION, s.id)
            .expect("offload");
        assert_eq!(
            (o.from, o.to, o.bytes),
            (StorageTier::Hot, StorageTier::Cold, s.size_bytes)
        );
        let e = entry(&db, s.id);
        let key = e.remote_key.clone().expect("the manifest names the object");
        assert_eq!(e.tier, StorageTier::Cold);
        assert_eq!(b.keys(), BTreeSet::from([key.clone()]));
        assert_eq!(
            common::read_object(&b.independent, &key),
            file_bytes,
            "the store holds exactly the segment file"
        );
        assert!(
            local_file(&data, &s.file_name).is_none(),
            "local copy deleted after the commit"
        );
        assert_eq!(db.tiering().status().expect("status").counters.uploads, 1);
        (db, before, s.id, file_bytes)
    } else {
        let mut before = None;
        let db = b.cold_db(&data, &clock, |db| {
            common::load(db);
            before = Some(observe(db));
        });
        let e = db.tiering().segments(COLLECTION).expect("segments")[0].clone();
        let key = e.remote_key.clone().expect("key");
        let bytes = common::read_object(&b.independent, &key);
        assert_eq!(bytes.len() as u64, e.size_bytes);
        (db, before.expect("observed"), e.id, bytes)
    };
    let key = entry(&db, id).remote_key.expect("key");
    assert_eq!(observe(&db), before, "reads from the cold segment");

    let o = db
        .tiering()
        .hydrate_segment(COLLECTION, id)
        .expect("hydrate");
    assert_eq!(
        (o.from, o.to, o.bytes),
        (StorageTier::Cold, StorageTier::Hot, file_bytes.len() as u64)
    );
    let e = entry(&db, id);
    assert_eq!(e.tier, StorageTier::Hot);
    assert_eq!(
        e.remote_key.as_deref(),
        Some(key.as_str()),
        "hydration keeps the remote key"
    );
    assert_eq!(
        local_file(&data, &e.file_name),
        Some(file_bytes.clone()),
        "the same bytes back"
    );
    assert!(b.keys().contains(&key), "hydration keeps the remote copy");
    assert_eq!(observe(&db), before, "after hydration");

    let uploads = db.tiering().status().expect("status").counters.uploads;
    let o = db
        .tiering()
        .offload_segment(COLLECTION, id)
        .expect("offload again");
    assert_eq!(
        (o.to, o.bytes),
        (StorageTier::Cold, 0),
        "only a local delete"
    );
    assert_eq!(
        db.tiering().status().expect("status").counters.uploads,
        uploads
    );
    assert!(local_file(&data, &e.file_name).is_none());
    assert_eq!(
        common::read_object(&b.independent, &key),
        file_bytes,
        "object unchanged"
    );
    assert_eq!(observe(&db), before);
    db.close().expect("close");

    let db = b.open(&data, &clock).expect("reopen");
    assert_eq!(observe(&db), before, "after reopening");
    common::assert_one_state_each(&db, &data, &b.independent, b.prefix());
    db.close().expect("close");
}

/// A cold `get` reads ranges, not the segment: a handful of requests and < 1% of its bytes.
fn cold_get_reads_ranges(b: &Backend) {
    const DIM: usize = 128;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let clock = clock();
    let vector = |n: usize| -> Vec<f32> { (0..DIM).map(|d| ((n * 31 + d) % 97) as f32).collect() };
    let db = b.cold_db(&data, &clock, |db| {
        db.create_collection(
            CollectionConfig::new(COLLECTION, DIM as u32, Metric::L2).expect("cfg"),
        )
        .expect("create");
        for chunk in 0..7 {
            let docs: Vec<Document> = (0..5000)
                .map(|i| chunk * 5000 + i)
                .map(|n| Document::new(format!("doc-{n:06}"), vector(n)))
                .collect();
            db.upsert(COLLECTION, &docs).expect("upsert");
        }
        db.flush(COLLECTION).expect("flush");
    });
    db.close().expect("close");
    // A fresh process: nothing cached.
    let db = b.open(&data, &clock).expect("reopen");
    let seg = db.tiering().segments(COLLECTION).expect("segments")[0].clone();
    assert!(
        seg.size_bytes >= 16 << 20,
        "a segment of at least 16 MiB: {}",
        seg.size_bytes
    );
    let counters = || db.tiering().status().expect("status").counters;
    let c0 = counters();
    let first = db
        .get(COLLECTION, "doc-000123")
        .expect("get")
        .expect("found");
    assert_eq!(first.vector, vector(123));
    let c1 = counters();
    let second = db
        .get(COLLECTION, "doc-031999")
        .expect("get")
        .expect("found");
    assert_eq!(second.vector, vector(31999));
    let c2 = counters();
    let (req1, bytes1) = (
        c1.remote_requests - c0.remote_requests,
        c1.remote_bytes_fetched - c0.remote_bytes_fetched,
    );
    let (req2, bytes2) = (
        c2.remote_requests - c1.remote_requests,
        c2.remote_bytes_fetched - c1.remote_bytes_fetched,
    );
    println!(
        "{}: first cold get {req1} requests, {bytes1} bytes; second {req2} requests, {bytes2} bytes; segment {} bytes",
        b.spec.description, seg.size_bytes
    );
    assert!(req2 >= 1 && bytes2 > 0, "the second get went to the store");
    assert!(req1 <= 4, "the first get also reads the footer: {req1}");
    assert!(req2 <= 3, "a cold get in at most 3 requests: {req2}");
    assert!(
        bytes1 * 100 < seg.size_bytes,
        "first cold get < 1% of the segment: {bytes1}"
    );
    assert!(
        bytes2 * 100 < seg.size_bytes,
        "second cold get < 1% of the segment: {bytes2}"
    );
    assert_eq!(c2.remote_failures, 0);
    db.close().expect("close");
}

/// What the store lists under a database's prefix is exactly what its manifest references, and
/// a second database under a sibling prefix (`P` and `P-2`) is invisible to the first one's
/// orphan collection.
fn listing_is_scoped_to_the_prefix(b: &Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = clock();
    let other = b.with_prefix(format!("{}-2", b.prefix()));
    let db1 = b.cold_db(&dir.path().join("one"), &clock, common::load);
    let db2 = other.cold_db(&dir.path().join("two"), &clock, common::load);
    let (k1, k2) = (b.keys(), other.keys());
    assert_eq!(k1.len(), 2, "{k1:?}");
    assert_eq!(k1, manifest_keys(&db1));
    assert_eq!(k2, manifest_keys(&db2));
    assert!(k1.is_disjoint(&k2));
    clock.advance(GRACE * 3);
    for _ in 0..2 {
        assert_eq!(db1.tiering().collect_orphans().expect("gc"), 0);
        clock.advance(GRACE * 3);
    }
    assert_eq!((b.keys(), other.keys()), (k1, k2), "nothing deleted");
    db1.close().expect("close");
    db2.close().expect("close");
}

/// Deleting documents whose live version is in a cold segment; compacting the cold segments; the
/// objects of the replaced segments deleted from the store once the grace period has passed.
fn deletes(b: &Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let clock = clock();
    let db = b.cold_db(&data, &clock, common::load);
    let old_keys = b.keys();
    assert_eq!(old_keys.len(), 2);
    db.delete(COLLECTION, "d0")
        .expect("delete in cold segment 1");
    db.delete_many(COLLECTION, &["d1500", "d1501"])
        .expect("delete in cold segment 2");
    let check = |db: &Database, when: &str| {
        for gone in ["d0", "d1500", "d1501", "d3"] {
            assert!(
                db.get(COLLECTION, gone).expect("get").is_none(),
                "{gone} {when}"
            );
        }
        assert_eq!(
            db.get(COLLECTION, "d1").expect("get").expect("d1").vector,
            common::vector(1)
        );
        assert_eq!(db.count(COLLECTION).expect("count"), 1996, "{when}");
        let hits = db
            .search(COLLECTION, &SearchRequest::new(common::vector(0), 50))
            .expect("search");
        assert!(
            hits.iter()
                .all(|h| !["d0", "d1500", "d1501"].contains(&h.id.as_str())),
            "{when}: {hits:?}"
        );
        assert_eq!(hits.len(), 50);
    };
    check(&db, "before flushing");
    db.flush(COLLECTION).expect("flush");
    db.close().expect("close");
    let db = b.open(&data, &clock).expect("reopen");
    check(&db, "after reopening");
    db.compact(COLLECTION).expect("compact the cold segments");
    check(&db, "after compaction");
    assert!(
        manifest_keys(&db).is_empty(),
        "the compacted segment is local"
    );
    assert_eq!(
        b.keys(),
        old_keys,
        "the replaced objects stay for the grace period"
    );
    assert_eq!(
        db.tiering().collect_orphans().expect("gc"),
        0,
        "just unreferenced"
    );
    clock.advance(GRACE + Duration::from_secs(60));
    assert_eq!(
        db.tiering().collect_orphans().expect("gc"),
        2,
        "after the grace period"
    );
    assert!(b.keys().is_empty(), "deleted from the store");
    check(&db, "after orphan collection");
    db.close().expect("close");
}

/// An object no manifest entry references is deleted by `collect_orphans` only once it has been
/// unreferenced for the grace period; referenced objects and objects that are not segments stay.
fn orphans_collected_after_the_grace_period(b: &Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let clock = clock();
    let db = b.cold_db(&data, &clock, common::load);
    let before = observe(&db);
    let referenced = b.keys();
    let orphan = format!(
        "{}/{COLLECTION}/segments/00000000000000000099.seg",
        b.prefix()
    );
    let unrelated = format!("{}/notes.txt", b.prefix());
    b.put(&orphan, b"left by a crashed upload");
    b.put(&unrelated, b"not a segment");
    assert_eq!(db.tiering().collect_orphans().expect("gc"), 0, "too young");
    clock.advance(GRACE / 2);
    assert_eq!(
        db.tiering().collect_orphans().expect("gc"),
        0,
        "half the grace period"
    );
    assert!(b.keys().contains(&orphan));
    clock.advance(GRACE / 2 + Duration::from_secs(60));
    assert_eq!(
        db.tiering().collect_orphans().expect("gc"),
        1,
        "past the grace period"
    );
    let mut want = referenced.clone();
    want.insert(unrelated);
    assert_eq!(b.keys(), want, "only the orphan deleted");
    assert_eq!(referenced, manifest_keys(&db));
    assert_eq!(observe(&db), before);
    assert_eq!(
        db.tiering()
            .status()
            .expect("status")
            .counters
            .orphans_deleted,
        1
    );
    db.close().expect("close");
}

macro_rules! conformance {
    ($($backend:ident),* $(,)?) => {$(
        mod $backend {
            use super::*;

            fn backend() -> Option<Backend> {
                Backend::$backend()
            }

            #[test]
            fn safe_move_protocol() {
                if let Some(b) = backend() {
                    super::safe_move_protocol(&b);
                }
            }

            #[test]
            fn cold_get_reads_ranges() {
                if let Some(b) = backend() {
                    super::cold_get_reads_ranges(&b);
                }
            }

            #[test]
            fn listing_is_scoped_to_the_prefix() {
                if let Some(b) = backend() {
                    super::listing_is_scoped_to_the_prefix(&b);
                }
            }

            #[test]
            fn deletes() {
                if let Some(b) = backend() {
                    super::deletes(&b);
                }
            }

            #[test]
            fn orphans_collected_after_the_grace_period() {
                if let Some(b) = backend() {
                    super::orphans_collected_after_the_grace_period(&b);
                }
            }
        }
    )*};
}

conformance!(in_memory, local, s3, azure, gcs);
