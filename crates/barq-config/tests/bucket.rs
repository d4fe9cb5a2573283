//! The bucket as the shared engine, against the real S3 test server (SeaweedFS): upload on
//! seal (segments stay local, a later offload is a local delete), manifest versions published
//! after their segments, restore from the bucket alone, fencing of a second writer, a torn
//! version skipped, and publishing that waits out a store that is down.
//!
//! Needs `BARQ_TEST_S3_ENDPOINT`, `BARQ_TEST_S3_BUCKET` and the AWS credential variables
//! (`scripts/test-services.sh start`, `eval "$(scripts/test-services.sh env)"`); without them
//! each test fails under `CI=true` and is skipped, with a printed reason, elsewhere.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use barq_core::{Document, ErrorKind};
use barq_storage::bucket::BucketStatus;
use barq_storage::tiering::{ColdStoreSpec, TieringOptions};
use barq_storage::{Database, Durability, Options, StorageTier};
use barq_testkit::{FaultyStore, Op, wait_until};
use common::{COLLECTION, list, observe, read_object};
use object_store::{ObjectStore, ObjectStoreExt};

/// Options of a writer that shares through the bucket, publishing every 50 ms.
fn sharing() -> Options {
    Options {
        durability: Durability::Sync,
        background_compaction: false,
        tiering: TieringOptions {
            maintenance_interval: None,
            upload_on_seal: Some(true),
            upload_interval: Duration::from_millis(50),
            ..TieringOptions::default()
        },
        ..Options::default()
    }
}

fn open(data: &Path, spec: &ColdStoreSpec) -> Database {
    Database::builder(data)
        .options(sharing())
        .cold_store(spec.clone())
        .open()
        .expect("open")
}

fn bucket(db: &Database) -> BucketStatus {
    db.tiering().status().expect("status").bucket
}

/// Wait until every segment is in the store and the current manifest version is published.
fn wait_published(db: &Database) -> BucketStatus {
    wait_until("the manifest is published", Duration::from_secs(30), || {
        let b = bucket(db);
        b.upload_lag_segments == 0 && b.published_version == Some(b.local_version)
    });
    bucket(db)
}

fn manifest_versions(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    list(store, &format!("{prefix}/manifest"))
}

struct Setup {
    endpoint: String,
    bucket: String,
    prefix: String,
    independent: Arc<dyn ObjectStore>,
}

fn setup(tag: &str) -> Option<Setup> {
    let (endpoint, bucket) = common::s3_service()?;
    Some(Setup {
        independent: common::s3_independent(&endpoint, &bucket),
        prefix: common::unique_prefix(tag),
        endpoint,
        bucket,
    })
}

impl Setup {
    fn spec(&self, data: &Path) -> ColdStoreSpec {
        common::s3_spec(&self.endpoint, &self.bucket, &self.prefix, data)
    }

    /// Restore a new data directory at `data` from this bucket, as a sharing writer.
    fn restore(
        &self,
        data: &Path,
    ) -> barq_core::Result<(Database, barq_storage::bucket::RestoreReport)> {
        Database::builder(data)
            .options(sharing())
            .cold_store(self.spec(data))
            .restore()
    }
}

#[test]
fn sealed_segments_are_uploaded_stay_local_and_are_offloaded_by_a_local_delete() {
    let Some(s) = setup("seal") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let db = open(&data, &s.spec(&data));
    common::load(&db);
    let status = wait_published(&db);
    assert!(status.enabled && status.epoch == Some(1), "{status:?}");
    let segments = db.tiering().segments(COLLECTION).expect("segments");
    assert_eq!(segments.len(), 2);
    let keys = list(&s.independent, &format!("{}/{COLLECTION}", s.prefix));
    for seg in &segments {
        assert_eq!(seg.tier, StorageTier::Hot, "uploaded segments stay local");
        let key = seg.remote_key.clone().expect("a remote copy");
        assert!(keys.contains(&key), "{key} in {keys:?}");
        assert_eq!(
            read_object(&s.independent, &key).len() as u64,
            seg.size_bytes
        );
    }
    assert_eq!(common::local_segment_files(&data).len(), 2);
    // The published version is the local manifest, segments and all.
    let versions = manifest_versions(&s.independent, &s.prefix);
    let newest = versions.last().expect("a version").clone();
    assert!(
        newest.ends_with(&format!("{:020}.json", status.local_version)),
        "{versions:?}"
    );
    let text = String::from_utf8(read_object(&s.independent, &newest)).expect("utf8");
    for seg in &segments {
        assert!(
            text.contains(seg.remote_key.as_deref().expect("key")),
            "{text}"
        );
    }

    // Offloading a segment with a copy uploads nothing.
    let before = db.tiering().status().expect("status").counters;
    for seg in &segments {
        let moved = db
            .tiering()
            .offload_segment(COLLECTION, seg.id)
            .expect("offload");
        assert_eq!(moved.bytes, 0, "no bytes transferred");
    }
    let after = db.tiering().status().expect("status").counters;
    assert_eq!(after.uploads, before.uploads);
    assert_eq!(after.bytes_uploaded, before.bytes_uploaded);
    assert!(common::local_segment_files(&data).is_empty());
    let seen = observe(&db);
    assert_eq!(seen.2, 1999);
    // The move is published too.
    let status = wait_published(&db);
    assert!(status.published_version > Some(segments.len() as u64));
}

#[test]
fn restore_from_the_bucket_alone_serves_every_flushed_document() {
    let Some(s) = setup("restore") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let db = open(&data, &s.spec(&data));
    common::load(&db);
    db.tiering().pin(COLLECTION, Some(1)).expect("pin");
    let published = wait_published(&db);
    let expected = observe(&db);
    let overrides = db.tiering().segments(COLLECTION).expect("segments");
    db.close().expect("close");
    std::fs::remove_dir_all(&data).expect("destroy the data directory");

    let restored_dir = dir.path().join("restored");
    let (restored, report) = s.restore(&restored_dir).expect("restore");
    assert_eq!(report.version, published.local_version);
    assert_eq!((report.collections, report.segments), (1, 2));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(
        observe(&restored),
        expected,
        "every flushed document is there"
    );
    let segments = restored.tiering().segments(COLLECTION).expect("segments");
    assert!(segments.iter().all(|s| s.tier == StorageTier::Cold));
    assert_eq!(
        segments
            .iter()
            .map(|s| (s.id, s.pinned))
            .collect::<Vec<_>>(),
        overrides
            .iter()
            .map(|s| (s.id, s.pinned))
            .collect::<Vec<_>>(),
        "pins are restored"
    );
    assert!(
        common::local_segment_files(&restored_dir).is_empty(),
        "no segment was downloaded"
    );
    // The restored node is the writer now: it takes writes and publishes them with a new epoch.
    restored
        .upsert(COLLECTION, &[Document::new("after", common::vector(7))])
        .expect("upsert");
    restored.flush(COLLECTION).expect("flush");
    let status = wait_published(&restored);
    assert_eq!(status.epoch, Some(2));
    assert!(status.local_version > report.version);

    // A restore into a directory that holds data is refused, and writes nothing.
    let err = s.restore(&restored_dir).expect_err("not empty");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
}

#[test]
fn a_second_writer_on_the_same_prefix_fences_the_first() {
    let Some(s) = setup("fence") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let a = open(&a_dir, &s.spec(&a_dir));
    common::load(&a);
    assert_eq!(wait_published(&a).epoch, Some(1));

    // The second writer's own data, in segments with the same ids as the first's.
    let b = open(&b_dir, &s.spec(&b_dir));
    b.create_collection(
        barq_core::CollectionConfig::new(COLLECTION, common::DIM as u32, barq_core::Metric::Cosine)
            .expect("cfg"),
    )
    .expect("create");
    let docs: Vec<Document> = (0..500)
        .map(|i| Document::new(format!("b{i}"), common::vector(i + 3)))
        .collect();
    b.upsert(COLLECTION, &docs).expect("upsert");
    b.flush(COLLECTION).expect("flush");
    let b_status = wait_published(&b);
    assert_eq!(b_status.epoch, Some(2));
    assert!(
        b_status.local_version > wait_published(&a).local_version,
        "the second writer publishes after every version of the first"
    );

    // The first writer's next publish finds epoch 2 and stops it.
    a.upsert(COLLECTION, &[Document::new("late", common::vector(1))])
        .expect("a write before the fence is noticed");
    a.flush(COLLECTION).expect("flush");
    wait_until(
        "the first writer is fenced",
        Duration::from_secs(30),
        || bucket(&a).fenced.is_some(),
    );
    let err = a
        .upsert(COLLECTION, &[Document::new("x", common::vector(2))])
        .expect_err("fenced");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.message().contains("epoch 2"), "{err}");
    // The bucket's newest version is the second writer's, and every segment it names is there
    // (the first writer's uploads never replaced one: keys carry each segment's checksum).
    let versions = manifest_versions(&s.independent, &s.prefix);
    let newest = read_object(&s.independent, versions.last().expect("a version"));
    let newest: serde_json::Value = serde_json::from_slice(&newest).expect("json");
    assert_eq!(newest["published"]["epoch"], 2, "{newest}");
    let b_segments = b.tiering().segments(COLLECTION).expect("segments");
    for seg in newest["published"]["manifest"]["collections"][COLLECTION]["segments"]
        .as_array()
        .expect("segments")
    {
        let key = seg["remote_key"].as_str().expect("key");
        let size = seg["size_bytes"].as_u64().expect("size");
        assert_eq!(read_object(&s.independent, key).len() as u64, size, "{key}");
        assert!(
            b_segments
                .iter()
                .any(|s| s.remote_key.as_deref() == Some(key))
        );
    }
    // The second writer goes on.
    b.upsert(COLLECTION, &[Document::new("y", common::vector(3))])
        .expect("the newer writer writes");
}

#[test]
fn a_torn_manifest_version_is_skipped_by_restore_with_the_reason() {
    let Some(s) = setup("torn") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let db = open(&data, &s.spec(&data));
    common::load(&db);
    let published = wait_published(&db);
    let expected = observe(&db);
    db.close().expect("close");
    // A version after it that is torn (cut short) and one whose bytes were altered.
    let good = read_object(
        &s.independent,
        &format!("{}/manifest/{:020}.json", s.prefix, published.local_version),
    );
    let torn = good[..good.len() / 2].to_vec();
    let altered = String::from_utf8(good.clone()).expect("utf8").replacen(
        "\"rows\":1000",
        "\"rows\":1001",
        1,
    );
    assert_ne!(altered.as_bytes(), good.as_slice());
    common::runtime().block_on(async {
        for (n, body) in [(1, torn), (2, altered.into_bytes())] {
            let key = format!(
                "{}/manifest/{:020}.json",
                s.prefix,
                published.local_version + n
            );
            s.independent
                .put(&object_store::path::Path::from(key), body.into())
                .await
                .expect("put");
        }
    });
    let restored_dir = dir.path().join("restored");
    let (restored, report) = s.restore(&restored_dir).expect("restore");
    assert_eq!(report.version, published.local_version);
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
    assert!(
        report
            .skipped
            .iter()
            .any(|e| e.contains("checksum mismatch")),
        "{:?}",
        report.skipped
    );
    assert_eq!(observe(&restored), expected);
}

#[test]
fn a_missing_newest_version_leaves_the_one_before_it_to_restore() {
    let Some(s) = setup("missing") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let db = open(&data, &s.spec(&data));
    common::load(&db);
    wait_published(&db);
    let expected = observe(&db);
    db.upsert(COLLECTION, &[Document::new("later", common::vector(9))])
        .expect("upsert");
    db.flush(COLLECTION).expect("flush");
    wait_published(&db);
    db.close().expect("close");
    let versions = manifest_versions(&s.independent, &s.prefix);
    assert!(versions.len() >= 2, "{versions:?}");
    let (newest, before) = (&versions[versions.len() - 1], &versions[versions.len() - 2]);
    common::runtime().block_on(async {
        s.independent
            .delete(&object_store::path::Path::from(newest.as_str()))
            .await
            .expect("delete the newest version");
    });
    let restored_dir = dir.path().join("restored");
    let (restored, report) = s.restore(&restored_dir).expect("restore");
    assert!(
        before.ends_with(&format!("{:020}.json", report.version)),
        "{before} restored, not {}",
        report.version
    );
    // The state of that version: everything but the last flush.
    assert_eq!(observe(&restored), expected);
    assert!(restored.get(COLLECTION, "later").expect("get").is_none());
}

#[test]
fn a_store_that_is_down_while_publishing_delays_it_and_loses_nothing() {
    let Some(s) = setup("down") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let real = s.spec(&data);
    let faulty = Arc::new(FaultyStore::new(Arc::clone(&real.store)));
    let spec = ColdStoreSpec {
        store: Arc::clone(&faulty) as Arc<dyn ObjectStore>,
        ..real
    };
    let db = open(&data, &spec);
    common::load(&db);
    let first = wait_published(&db);

    // The store refuses every write: writes, flushes and reads go on locally.
    faulty.fail_always(Op::Put);
    let docs: Vec<Document> = (0..300)
        .map(|i| Document::new(format!("down{i}"), common::vector(i)))
        .collect();
    db.upsert(COLLECTION, &docs)
        .expect("upsert while the store is down");
    db.flush(COLLECTION).expect("flush while the store is down");
    wait_until(
        "the failure shows in status",
        Duration::from_secs(30),
        || bucket(&db).last_error.is_some(),
    );
    let status = bucket(&db);
    assert_eq!(status.upload_lag_segments, 1, "{status:?}");
    assert!(status.upload_lag_bytes > 0);
    assert_eq!(status.published_version, first.published_version);
    assert!(db.get(COLLECTION, "down7").expect("get").is_some());

    // Back: the segment is uploaded, then the manifest published, after the older versions.
    faulty.heal_all();
    let later = wait_published(&db);
    assert!(later.published_version > first.published_version);
    assert_eq!(later.last_error, None);
    // In order: each later version was published later, and names every segment of the one
    // before that is still live.
    let published_at: Vec<u64> = manifest_versions(&s.independent, &s.prefix)
        .iter()
        .map(|k| {
            let v: serde_json::Value =
                serde_json::from_slice(&read_object(&s.independent, k)).expect("json");
            v["published"]["published_at_ms"]
                .as_u64()
                .expect("published_at_ms")
        })
        .collect();
    assert!(published_at.len() >= 2, "{published_at:?}");
    assert!(
        published_at.windows(2).all(|w| w[0] <= w[1]),
        "{published_at:?}"
    );
    db.close().expect("close");

    // And the bucket alone has every flushed document.
    let restored_dir = dir.path().join("restored");
    let (restored, _) = s.restore(&restored_dir).expect("restore");
    assert_eq!(restored.count(COLLECTION).expect("count"), 1999 + 300);
    assert!(restored.get(COLLECTION, "down299").expect("get").is_some());
}

#[test]
fn a_crash_between_upload_and_commit_uploads_again_and_loses_nothing() {
    use barq_storage::{FP_TIER_AFTER_UPLOAD, FailPoints};
    let Some(s) = setup("crash") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let fp = FailPoints::default();
    fp.enable(FP_TIER_AFTER_UPLOAD);
    let db = Database::builder(&data)
        .options(sharing())
        .cold_store(s.spec(&data))
        .failpoints(fp.clone())
        .open()
        .expect("open");
    common::load(&db);
    wait_until(
        "an upload fails at the failpoint",
        Duration::from_secs(30),
        || bucket(&db).last_error.is_some(),
    );
    let status = bucket(&db);
    assert_eq!(
        status.upload_lag_segments, 2,
        "nothing was recorded: {status:?}"
    );
    assert_eq!(status.published_version, None);
    let expected = observe(&db);
    drop(db); // the crash: no clean close

    let db = open(&data, &s.spec(&data));
    assert_eq!(
        observe(&db),
        expected,
        "every acknowledged write after the reopen"
    );
    let status = wait_published(&db);
    assert_eq!(status.upload_lag_segments, 0);
    for seg in db.tiering().segments(COLLECTION).expect("segments") {
        let key = seg.remote_key.expect("uploaded after the reopen");
        assert_eq!(
            read_object(&s.independent, &key).len() as u64,
            seg.size_bytes
        );
    }
}

fn replica(data: &Path, spec: &ColdStoreSpec) -> Database {
    Database::builder(data)
        .options(common::options())
        .cold_store(spec.clone())
        .open_replica(Duration::from_millis(50))
        .expect("open the replica")
}

#[test]
fn a_replica_follows_flushes_compactions_and_drops_and_skips_a_torn_version() {
    let Some(s) = setup("replica") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("writer");
    let writer = open(&data, &s.spec(&data));
    common::load(&writer);
    wait_published(&writer);
    let r_dir = dir.path().join("replica");
    let r = replica(&r_dir, &s.spec(&r_dir));
    // The first poll happens at open: it serves at once.
    let status = r.replica_status().expect("a replica");
    assert_eq!(status.version, bucket(&writer).published_version);
    assert_eq!(observe(&r), observe(&writer));

    // Writes and tiering operations are refused, with nothing written.
    let refused = [
        r.upsert(COLLECTION, &[Document::new("x", common::vector(1))])
            .map(|_| ()),
        r.flush(COLLECTION).map(|_| ()),
        r.compact(COLLECTION).map(|_| ()),
        r.tiering().offload_segment(COLLECTION, 1).map(|_| ()),
        r.tiering().pin(COLLECTION, None),
        r.tiering().run_maintenance().map(|_| ()),
        r.drop_collection(COLLECTION),
    ];
    for e in refused {
        let e = e.expect_err("read-only");
        assert_eq!(e.kind(), ErrorKind::ReadOnly, "{e}");
        assert!(e.message().contains(&s.prefix), "{e}");
    }
    assert_eq!(r.count(COLLECTION).expect("count"), 1999);

    // A compaction on the writer replaces both segments; the replica follows.
    writer
        .upsert(COLLECTION, &[Document::new("new", common::vector(5))])
        .expect("upsert");
    writer.compact(COLLECTION).expect("compact");
    let published = wait_published(&writer);
    wait_until(
        "the replica follows the compaction",
        Duration::from_secs(30),
        || r.replica_status().expect("replica").version == published.published_version,
    );
    assert_eq!(observe(&r), observe(&writer));
    assert_eq!(r.tiering().segments(COLLECTION).expect("segments").len(), 1);
    assert!(r.get(COLLECTION, "new").expect("get").is_some());

    // A torn version after it is skipped, with the reason in status; a good one after that
    // is served.
    let torn_key = format!(
        "{}/manifest/{:020}.json",
        s.prefix,
        published.local_version + 1
    );
    common::runtime().block_on(async {
        s.independent
            .put(
                &object_store::path::Path::from(torn_key),
                b"{\"checksum\"".to_vec().into(),
            )
            .await
            .expect("put");
    });
    wait_until(
        "the torn version is skipped",
        Duration::from_secs(30),
        || !r.replica_status().expect("replica").skipped.is_empty(),
    );
    let status = r.replica_status().expect("replica");
    assert_eq!(status.version, published.published_version, "{status:?}");
    assert!(
        status.skipped[0].contains(&format!("{:020}", published.local_version + 1)),
        "the skipped version is named: {status:?}"
    );
    writer
        .create_collection(
            barq_core::CollectionConfig::new("more", 4, barq_core::Metric::L2).expect("cfg"),
        )
        .expect("create");
    writer
        .upsert("more", &[Document::new("m", vec![1.0, 2.0, 3.0, 4.0])])
        .expect("upsert");
    writer.flush("more").expect("flush");
    let published = wait_published(&writer);
    assert!(
        published.local_version > status.version.expect("v") + 1,
        "after the torn one"
    );
    wait_until(
        "the replica serves the new collection",
        Duration::from_secs(30),
        || r.get("more", "m").is_ok_and(|d| d.is_some()),
    );

    // A drop on the writer drops it on the replica.
    writer.drop_collection("more").expect("drop");
    wait_published(&writer);
    wait_until(
        "the replica drops the collection",
        Duration::from_secs(30),
        || r.get("more", "m").is_err(),
    );

    // A writer's directory is never a replica's.
    let err = Database::builder(&data)
        .cold_store(s.spec(&data))
        .open_replica(Duration::from_secs(1))
        .map(|_| ())
        .expect_err("a writer's directory");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
}

#[test]
fn old_versions_are_pruned_after_the_retention_and_no_object_a_retained_version_names_is_collected()
{
    let Some(s) = setup("prune") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let clock = Arc::new(barq_testkit::ManualClock::new(real_now));
    let mut o = sharing();
    o.tiering.orphan_grace = Duration::ZERO;
    o.tiering.manifest_retention = Duration::from_secs(3600);
    let db = Database::builder(&data)
        .options(o)
        .cold_store(s.spec(&data))
        .clock(clock.clone())
        .open()
        .expect("open");
    common::load(&db);
    let before_compaction = wait_published(&db);
    let old_keys: Vec<String> = db
        .tiering()
        .segments(COLLECTION)
        .expect("segments")
        .into_iter()
        .filter_map(|s| s.remote_key)
        .collect();
    assert_eq!(old_keys.len(), 2);
    db.compact(COLLECTION).expect("compact");
    let after = wait_published(&db);
    assert!(after.published_version > before_compaction.published_version);
    let versions = manifest_versions(&s.independent, &s.prefix);
    assert!(versions.len() >= 2, "{versions:?}");

    // Within the retention: nothing is pruned, and the compaction's inputs stay (an older
    // version still names them), although orphan_grace is zero.
    let report = db.tiering().run_maintenance().expect("maintenance");
    assert_eq!(
        (report.versions_pruned, report.orphans_deleted),
        (0, 0),
        "{report:?}"
    );
    let keys = list(&s.independent, &s.prefix);
    for k in &old_keys {
        assert!(
            keys.contains(k),
            "{k} is kept while a retained version names it"
        );
    }

    // Past the retention: every version but the newest is pruned and the inputs go; the
    // newest version and every object it names stay.
    clock.advance(Duration::from_secs(2 * 3600));
    let report = db.tiering().run_maintenance().expect("maintenance");
    assert_eq!(
        report.versions_pruned as usize,
        versions.len() - 1,
        "{report:?}"
    );
    assert_eq!(report.orphans_deleted, 2, "{report:?}");
    let left = manifest_versions(&s.independent, &s.prefix);
    assert_eq!(left, [versions.last().expect("newest").clone()]);
    let keys = list(&s.independent, &s.prefix);
    for k in &old_keys {
        assert!(!keys.contains(k), "{k} is collected");
    }
    db.close().expect("close");
    let restored_dir = dir.path().join("restored");
    let (restored, report) = s.restore(&restored_dir).expect("restore");
    assert_eq!(Some(report.version), after.published_version);
    assert_eq!(restored.count(COLLECTION).expect("count"), 1999);
}
