//! Tiering through the public API: offload / hydrate / warm moves with transparent reads,
//! crash at every step of a move, a fault-injecting store, maintenance with an injected clock,
//! compaction over cold inputs, orphan collection.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use barq_core::{CollectionConfig, Document, ErrorKind, Metric};
use barq_storage::tiering::TieringPolicy;
use barq_storage::{
    Database, FP_TIER_AFTER_COMMIT, FP_TIER_AFTER_DOWNLOAD, FP_TIER_AFTER_UPLOAD,
    FP_TIER_AFTER_VERIFY, FailPoints, SearchRequest, StorageTier,
};
use barq_testkit::{FaultyStore, ManualClock, Op};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};

mod common;
use common::*;

fn local_segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("collections/c/segments"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn segment_ids(db: &Database) -> Vec<u64> {
    db.tiering()
        .segments("c")
        .expect("segments")
        .iter()
        .map(|s| s.id)
        .collect()
}

/// Each segment in exactly one consistent state: the manifest's tier, a local file iff the tier
/// is local, a remote object whenever the manifest names one.
fn assert_consistent(db: &Database, dir: &Path, store: &Arc<dyn ObjectStore>) {
    let local = local_segment_files(dir);
    let remote = list_keys(store);
    for s in db.tiering().segments("c").expect("segments") {
        assert_eq!(
            local.contains(&s.file_name),
            s.tier == StorageTier::Hot,
            "segment {} ({:?}) local copy",
            s.id,
            s.tier
        );
        if s.tier == StorageTier::Cold {
            let key = s.remote_key.as_deref().expect("cold has a key");
            assert!(
                remote.iter().any(|k| k == key),
                "segment {} remote object {key}",
                s.id
            );
        }
    }
    assert_eq!(
        local.len(),
        db.tiering()
            .segments("c")
            .expect("s")
            .iter()
            .filter(|s| s.tier == StorageTier::Hot)
            .count()
    );
}

#[test]
fn offload_reads_back_the_same_everywhere_and_after_restart() {
    for (name, store) in [
        (
            "in-memory",
            Some(Arc::new(InMemory::new()) as Arc<dyn ObjectStore>),
        ),
        ("local directory (the default)", None),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path(), store.clone()).expect("open");
        load(&db);
        let before = observe(&db);
        assert_eq!(local_segment_files(dir.path()).len(), 2, "{name}");
        for id in segment_ids(&db) {
            let o = db.tiering().offload_segment("c", id).expect("offload");
            assert_eq!((o.from, o.to), (StorageTier::Hot, StorageTier::Cold));
            assert!(o.bytes > 0);
        }
        assert!(
            local_segment_files(dir.path()).is_empty(),
            "{name}: segment files gone from the data directory"
        );
        assert!(
            dir.path().join("MANIFEST").exists() && dir.path().join("collections/c/wal").exists(),
            "{name}"
        );
        let store: Arc<dyn ObjectStore> = match &store {
            Some(s) => Arc::clone(s),
            None => Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(dir.path().join("cold"))
                    .expect("fs"),
            ),
        };
        let keys = list_keys(&store);
        assert_eq!(keys.len(), 2, "{name}: {keys:?}");
        assert!(
            keys.iter()
                .all(|k| k.contains("c/segments/") && k.ends_with(".seg")),
            "{keys:?}"
        );
        assert_eq!(
            observe(&db),
            before,
            "{name}: same answers from the cold tier"
        );
        let status = db.tiering().status().expect("status");
        assert_eq!(
            status.tiers.get(&StorageTier::Cold).map(|t| t.segments),
            Some(2)
        );
        assert!(
            status.counters.uploads == 2 && status.counters.remote_bytes_fetched > 0,
            "{status:?}"
        );
        db.close().expect("close");

        let db = open(
            dir.path(),
            Some(Arc::clone(&store)).filter(|_| name == "in-memory"),
        )
        .expect("reopen");
        assert_eq!(observe(&db), before, "{name}: same answers after restart");
        assert_consistent(&db, dir.path(), &store);
        for id in segment_ids(&db) {
            assert_eq!(
                db.tiering().hydrate_segment("c", id).expect("hydrate").to,
                StorageTier::Hot
            );
        }
        assert_eq!(local_segment_files(dir.path()).len(), 2, "{name}: hydrated");
        assert_eq!(
            list_keys(&store).len(),
            2,
            "{name}: hydration keeps the remote copy"
        );
        assert_eq!(observe(&db), before, "{name}: same answers after hydration");
        // Offloading a hydrated segment again is only a local delete.
        let uploads = db.tiering().status().expect("status").counters.uploads;
        let id = segment_ids(&db)[0];
        assert_eq!(
            db.tiering()
                .offload_segment("c", id)
                .expect("offload")
                .bytes,
            0
        );
        assert_eq!(
            db.tiering().status().expect("status").counters.uploads,
            uploads
        );
        assert_eq!(observe(&db), before);
        assert_consistent(&db, dir.path(), &store);
    }
}

#[test]
fn a_cold_get_fetches_a_tiny_fraction_of_the_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let db = open(dir.path(), Some(Arc::clone(&store))).expect("open");
    db.create_collection(CollectionConfig::new("big", 128, Metric::Cosine).expect("cfg"))
        .expect("create");
    for chunk in 0..7 {
        let docs: Vec<Document> = (0..5000)
            .map(|i| {
                let n = chunk * 5000 + i;
                Document::new(
                    format!("doc-{n:06}"),
                    (0..128).map(|d| ((n * 31 + d) % 97) as f32).collect(),
                )
                .with_payload(payload(n))
            })
            .collect();
        db.upsert("big", &docs).expect("upsert");
    }
    db.flush("big").expect("flush");
    let seg = db.tiering().segments("big").expect("segments")[0].clone();
    assert!(
        seg.size_bytes >= 16 << 20,
        "a segment of at least 16 MiB: {}",
        seg.size_bytes
    );
    db.tiering()
        .offload_segment("big", seg.id)
        .expect("offload");
    db.close().expect("close");
    let db = open(dir.path(), Some(store)).expect("reopen");
    let counters = || db.tiering().status().expect("status").counters;
    let c0 = counters();
    let first = db.get("big", "doc-000123").expect("get").expect("found");
    assert_eq!(first.payload, Some(payload(123)));
    let c1 = counters();
    let second = db.get("big", "doc-031999").expect("get").expect("found");
    assert_eq!(
        second.vector,
        (0..128)
            .map(|d| ((31999 * 31 + d) % 97) as f32)
            .collect::<Vec<_>>()
    );
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
        "first cold get: {req1} requests, {bytes1} bytes; second: {req2} requests, {bytes2} bytes; segment {} bytes",
        seg.size_bytes
    );
    // The offload kept the footer locally, so even the first get after a restart reads only
    // what the lookup needs.
    assert!(req1 <= 3, "the footer is not fetched again: {req1}");
    assert!(req2 <= 3, "a cold get in at most 3 requests: {req2}");
    for bytes in [bytes1, bytes2] {
        assert!(
            bytes * 100 < seg.size_bytes,
            "a cold get reads < 1% of the segment: {bytes}"
        );
    }
}

#[test]
fn a_corrupted_remote_object_is_a_corruption_error_not_a_wrong_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let db = open(dir.path(), Some(Arc::clone(&store))).expect("open");
    load(&db);
    let id = segment_ids(&db)[0];
    db.tiering().offload_segment("c", id).expect("offload");
    let seg = db.tiering().segments("c").expect("segments")[0].clone();
    db.close().expect("close");
    // Flip one byte in the middle of the object, with an independent client.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    let key = object_store::path::Path::from(seg.remote_key.clone().expect("key"));
    rt.block_on(async {
        let mut bytes = store
            .get(&key)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes")
            .to_vec();
        let mid = bytes.len() / 3;
        bytes[mid] ^= 0x20;
        store.put(&key, bytes.into()).await.expect("put");
    });
    let db = open(dir.path(), Some(store)).expect("reopen");
    let err = db
        .search("c", &SearchRequest::new(vector(0), 10))
        .expect_err("corrupt block");
    assert_eq!(err.kind(), ErrorKind::DataCorruption, "{err}");
    // Hydration verifies the download too and leaves the segment where it was.
    let err = db
        .tiering()
        .hydrate_segment("c", seg.id)
        .expect_err("corrupt download");
    assert_eq!(err.kind(), ErrorKind::DataCorruption, "{err}");
    assert_eq!(
        db.tiering().segments("c").expect("s")[0].tier,
        StorageTier::Cold
    );
    assert!(
        !local_segment_files(dir.path())
            .iter()
            .any(|f| f.ends_with(".tmp"))
    );
    assert_eq!(db.tiering().status().expect("status").last_errors.len(), 1);
}

/// A crash (simulated with a failpoint, then close and reopen) between every two steps of a
/// move: nothing is lost and every segment ends in exactly one consistent state.
#[test]
fn crash_between_every_step_of_a_move() {
    let cases = [
        (FP_TIER_AFTER_UPLOAD, StorageTier::Cold, StorageTier::Hot),
        (FP_TIER_AFTER_VERIFY, StorageTier::Cold, StorageTier::Hot),
        (FP_TIER_AFTER_COMMIT, StorageTier::Cold, StorageTier::Cold),
        (FP_TIER_AFTER_DOWNLOAD, StorageTier::Hot, StorageTier::Cold),
    ];
    for (point, target, settled) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let fp = FailPoints::default();
        let db = builder(dir.path(), Some(Arc::clone(&store)))
            .failpoints(fp.clone())
            .open()
            .expect("open");
        load(&db);
        let before = observe(&db);
        let id = segment_ids(&db)[0];
        if target == StorageTier::Hot {
            db.tiering()
                .offload_segment("c", id)
                .expect("offload first");
        }
        fp.enable(point);
        db.tiering().move_segment("c", id, target).expect_err(point);
        drop(db);
        let db = open(dir.path(), Some(Arc::clone(&store))).expect("reopen");
        assert_eq!(
            db.tiering().segments("c").expect("s")[0].tier,
            settled,
            "{point}"
        );
        assert_eq!(observe(&db), before, "{point}: every document");
        assert_consistent(&db, dir.path(), &store);
        // The move can be done again and then everything is still there.
        db.tiering().move_segment("c", id, target).expect("retry");
        assert_eq!(observe(&db), before, "{point}: after the retried move");
        db.tiering().collect_orphans().expect("gc");
        assert_consistent(&db, dir.path(), &store);
    }
}

#[test]
fn transient_store_errors_are_retried_and_persistent_ones_leave_the_segment_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faulty = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let db = open(dir.path(), Some(Arc::clone(&store))).expect("open");
    load(&db);
    let before = observe(&db);
    let ids = segment_ids(&db);
    faulty.fail(Op::Put, 2);
    db.tiering()
        .offload_segment("c", ids[0])
        .expect("two transient failures are retried");
    faulty.fail_always(Op::Put);
    let err = db
        .tiering()
        .offload_segment("c", ids[1])
        .expect_err("keeps failing");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let status = db.tiering().status().expect("status");
    assert_eq!(status.last_errors.len(), 1);
    assert_eq!(status.last_errors[0].segment_id, ids[1]);
    assert!(
        status.last_errors[0].error.contains("injected"),
        "{:?}",
        status.last_errors
    );
    assert_eq!(
        db.tiering().segments("c").expect("s")[1].tier,
        StorageTier::Hot,
        "stayed where it was"
    );
    // An unreachable store does not stop writes or reads of hot data.
    faulty.set_offline(true);
    db.upsert("c", &[Document::new("new", vector(7))])
        .expect("write while offline");
    db.flush("c").expect("flush while offline");
    assert_eq!(
        db.get("c", "new").expect("get").expect("doc").vector,
        vector(7)
    );
    assert_eq!(
        db.get("c", "d250").expect("hot read").expect("doc").vector,
        vector(250)
    );
    assert_eq!(
        db.search("c", &SearchRequest::new(vector(0), 5))
            .expect_err("needs the cold segment")
            .kind(),
        ErrorKind::Unavailable
    );
    faulty.set_offline(false);
    faulty.heal_all();
    db.tiering()
        .offload_segment("c", ids[1])
        .expect("retried after the store heals");
    assert!(
        db.tiering()
            .status()
            .expect("status")
            .last_errors
            .is_empty(),
        "a success clears the error"
    );
    let mut after = observe(&db);
    after.0.remove("dnew");
    assert_eq!(after.1, before.1 + 1);
}

#[test]
fn maintenance_follows_the_policy_with_an_injected_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000_000_000_000));
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut opts = options();
    opts.tiering.warm_dir = Some(dir.path().join("warm"));
    opts.tiering.policy = TieringPolicy {
        move_to_warm_after: Some(Duration::from_secs(3600)),
        move_to_cold_after: Some(Duration::from_secs(7 * 86400)),
        min_residency: Duration::from_secs(600),
        ..TieringPolicy::default()
    };
    let data = dir.path().join("data");
    let open_db = || {
        builder(&data, Some(Arc::clone(&store)))
            .options(opts.clone())
            .clock(clock.clone())
            .open()
    };
    let db = open_db().expect("open");
    load(&db);
    let before = observe(&db);
    let tier_of = |db: &Database| {
        db.tiering()
            .segments("c")
            .expect("s")
            .iter()
            .map(|s| s.tier)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        db.tiering().run_maintenance().expect("maintenance").planned,
        0,
        "nothing idle yet"
    );
    clock.advance(Duration::from_secs(2 * 3600));
    let r = db.tiering().run_maintenance().expect("maintenance");
    assert_eq!((r.planned, r.moves_done.len()), (2, 2), "{r:?}");
    assert_eq!(tier_of(&db), [StorageTier::Warm, StorageTier::Warm]);
    assert_eq!(observe(&db), before, "warm reads");
    clock.advance(Duration::from_secs(8 * 86400));
    db.tiering()
        .pin("c", Some(segment_ids(&db)[1]))
        .expect("pin");
    let pins: Vec<bool> = db
        .tiering()
        .segments("c")
        .expect("segments")
        .iter()
        .map(|s| s.pinned)
        .collect();
    assert_eq!(pins, [false, true], "segments() shows a pin at once");
    let r = db.tiering().run_maintenance().expect("maintenance");
    assert_eq!(r.moves_done.len(), 2, "{r:?}");
    assert_eq!(
        tier_of(&db),
        [StorageTier::Cold, StorageTier::Hot],
        "idle one cold, pinned one hydrated"
    );
    assert_eq!(observe(&db), before, "mixed tiers");
    // Reads are tracked: the pinned segment's access survives a restart.
    let status = db.tiering().status().expect("status");
    let accessed = status.collections[0].segments[1].last_access_ms;
    assert!(accessed.is_some());
    db.close().expect("close");
    let db = open_db().expect("reopen");
    let status = db.tiering().status().expect("status");
    assert_eq!(
        status.collections[0].segments[1].last_access_ms, accessed,
        "access statistics persisted"
    );
    assert!(status.collections[0].segments[1].pinned);
    assert_eq!(tier_of(&db), [StorageTier::Cold, StorageTier::Hot]);
    assert_eq!(observe(&db), before);
}

#[test]
fn writes_and_compaction_across_tiers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut opts = options();
    opts.tiering.orphan_grace = Duration::ZERO;
    let db = builder(dir.path(), Some(Arc::clone(&store)))
        .options(opts)
        .open()
        .expect("open");
    load(&db);
    for id in segment_ids(&db) {
        db.tiering().offload_segment("c", id).expect("offload");
    }
    // Newer versions and tombstones shadow cold rows.
    db.upsert("c", &[Document::new("d10", vector(500))])
        .expect("overwrite cold");
    db.delete("c", "d11").expect("delete cold");
    assert_eq!(
        db.get("c", "d10").expect("get").expect("doc").vector,
        vector(500)
    );
    assert_eq!(db.get("c", "d11").expect("get"), None);
    let before = observe(&db);
    assert!(!before.2[0].iter().any(|h| h.id == "d11"));
    let remote_before = list_keys(&store);
    assert_eq!(remote_before.len(), 2);
    let out = db.compact("c").expect("compact reads cold inputs");
    assert_eq!(
        out.inputs.len(),
        3,
        "two cold segments and the flushed memtable"
    );
    assert_eq!(
        db.tiering()
            .segments("c")
            .expect("s")
            .iter()
            .map(|s| s.tier)
            .collect::<Vec<_>>(),
        [StorageTier::Hot]
    );
    assert_eq!(
        list_keys(&store),
        remote_before,
        "the inputs' objects stay until orphan collection"
    );
    assert_eq!(
        db.tiering().collect_orphans().expect("gc"),
        2,
        "then they are orphans"
    );
    assert!(list_keys(&store).is_empty());
    assert_eq!(observe(&db), before);
    assert_consistent(&db, dir.path(), &store);
}

#[test]
fn orphaned_objects_are_collected_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut opts = options();
    opts.tiering.orphan_grace = Duration::from_secs(3600);
    let db = builder(dir.path(), Some(Arc::clone(&store)))
        .options(opts.clone())
        .open()
        .expect("open");
    load(&db);
    let id = segment_ids(&db)[0];
    db.tiering().offload_segment("c", id).expect("offload");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    let orphan = object_store::path::Path::from("barq-test/c/segments/00000000000000000099.seg");
    let unrelated = object_store::path::Path::from("barq-test/notes.txt");
    rt.block_on(async {
        store
            .put(
                &orphan,
                bytes::Bytes::from_static(b"left by a crashed upload").into(),
            )
            .await
            .expect("put");
        store
            .put(&unrelated, bytes::Bytes::from_static(b"not ours").into())
            .await
            .expect("put");
    });
    assert_eq!(db.tiering().collect_orphans().expect("gc"), 0, "too young");
    drop(db);
    opts.tiering.orphan_grace = Duration::ZERO;
    let db = builder(dir.path(), Some(Arc::clone(&store)))
        .options(opts)
        .open()
        .expect("reopen");
    assert_eq!(db.tiering().collect_orphans().expect("gc"), 1);
    let keys = list_keys(&store);
    assert_eq!(
        keys.len(),
        2,
        "the referenced segment and the unrelated object stay: {keys:?}"
    );
    assert!(keys.iter().any(|k| k.ends_with("notes.txt")));
    assert_eq!(
        db.get("c", "d1").expect("get").expect("doc").vector,
        vector(1)
    );
}

#[test]
fn size_only_verification_still_serves_correct_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faulty = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let mut opts = options();
    opts.tiering.verify_uploads = barq_storage::tiering::UploadVerification::Size;
    let db = builder(dir.path(), Some(Arc::clone(&store)))
        .options(opts)
        .open()
        .expect("open");
    load(&db);
    let before = observe(&db);
    let gets = faulty.calls(Op::Get);
    for id in segment_ids(&db) {
        db.tiering().offload_segment("c", id).expect("offload");
    }
    assert_eq!(faulty.calls(Op::Get), gets, "no read-back");
    assert!(faulty.calls(Op::Head) >= 2, "a size check per upload");
    assert_eq!(observe(&db), before);
}

/// The grace period runs from when an object was first found unreferenced, not from its upload:
/// a query may still be reading a segment that a compaction just replaced.
#[test]
fn orphan_grace_runs_from_when_an_object_lost_its_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    // Long after the objects were uploaded, as far as the store's timestamps go.
    let clock = Arc::new(ManualClock::new(real_now + 10 * 3600 * 1000));
    let mut opts = options();
    opts.tiering.orphan_grace = Duration::from_secs(3600);
    let open_db = || {
        builder(dir.path(), Some(Arc::clone(&store)))
            .options(opts.clone())
            .clock(clock.clone())
            .open()
    };
    let db = open_db().expect("open");
    load(&db);
    for id in segment_ids(&db) {
        db.tiering().offload_segment("c", id).expect("offload");
    }
    db.compact("c").expect("compact");
    assert_eq!(
        db.tiering().collect_orphans().expect("gc"),
        0,
        "just unreferenced: kept for readers"
    );
    assert_eq!(list_keys(&store).len(), 2);
    clock.advance(Duration::from_secs(1800));
    assert_eq!(
        db.tiering().collect_orphans().expect("gc"),
        0,
        "half the grace period"
    );
    // The first-seen times survive a restart (each CLI command is a new process).
    db.close().expect("close");
    let db = open_db().expect("reopen");
    clock.advance(Duration::from_secs(1800));
    assert_eq!(
        db.tiering().collect_orphans().expect("gc"),
        2,
        "a full grace period after"
    );
    assert!(list_keys(&store).is_empty());
}

/// Moves, compactions and flushes running while writers and readers work: every acknowledged
/// write is readable at the end, searches never fail or return a deleted or outdated version,
/// and the tiers stay consistent after a reopen.
#[test]
fn moves_compactions_and_queries_run_concurrently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut opts = options();
    opts.memtable_max_bytes = 64 * 1024;
    let open_db = || {
        builder(dir.path(), Some(Arc::clone(&store)))
            .options(opts.clone())
            .open()
    };
    let db = Arc::new(open_db().expect("open"));
    db.create_collection(CollectionConfig::new("c", DIM as u32, Metric::L2).expect("cfg"))
        .expect("create");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let versions: Arc<parking_lot::Mutex<BTreeMap<String, Option<usize>>>> = Arc::default();
    let moves = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::scope(|s| {
        // Two writers: upserts, overwrites and deletes of their own ids.
        for w in 0..2usize {
            let (db, versions) = (Arc::clone(&db), Arc::clone(&versions));
            s.spawn(move || {
                for round in 0..60usize {
                    // let the mover and the compactor interleave with the writes
                    std::thread::sleep(Duration::from_millis(5));
                    let docs: Vec<Document> = (0..20)
                        .map(|i| {
                            Document::new(
                                format!("w{w}-{}", (round * 20 + i) % 500),
                                vector(round * 1000 + i),
                            )
                        })
                        .collect();
                    db.upsert("c", &docs).expect("upsert");
                    let mut v = versions.lock();
                    for (i, d) in docs.iter().enumerate() {
                        v.insert(d.id.clone(), Some(round * 1000 + i));
                    }
                    drop(v);
                    if round % 5 == 4 {
                        let id = format!("w{w}-{}", round * 3 % 500);
                        db.delete("c", &id).expect("delete");
                        versions.lock().insert(id, None);
                    }
                }
            });
        }
        // A reader: searches and gets must never fail.
        {
            let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
            s.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    db.search("c", &SearchRequest::new(vector(3), 10))
                        .expect("search during moves");
                    db.get("c", "w0-1").expect("get during moves");
                }
            });
        }
        // The mover: offload and hydrate whatever is there, and compact now and then.
        {
            let (db, stop, moves) = (Arc::clone(&db), Arc::clone(&stop), Arc::clone(&moves));
            s.spawn(move || {
                let mut pass = 0;
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    pass += 1;
                    for seg in db.tiering().segments("c").expect("segments") {
                        let to = if seg.tier == StorageTier::Cold {
                            StorageTier::Hot
                        } else {
                            StorageTier::Cold
                        };
                        match db.tiering().move_segment("c", seg.id, to) {
                            Ok(_) => {
                                moves.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            // busy (compacting) or gone (compacted away) is expected here
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    ErrorKind::Conflict | ErrorKind::NotFound
                                ) => {}
                            Err(e) => panic!("move failed: {e}"),
                        }
                    }
                    if pass % 3 == 0 {
                        match db.compact("c") {
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::Conflict => {}
                            Err(e) => panic!("compaction failed: {e}"),
                        }
                    }
                }
            });
        }
        // Stop the reader and the mover once the writers are done.
        let db2 = Arc::clone(&db);
        s.spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(50));
                let n = db2.collection_stats("c").map(|s| s.last_seq).unwrap_or(0);
                if n >= 2 * 60 * 20 + 24 {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, std::sync::atomic::Ordering::Release);
        });
    });
    let check = |db: &Database| {
        let versions = versions.lock();
        let mut live = 0;
        for (id, v) in versions.iter() {
            let got = db.get("c", id).expect("get").map(|d| d.vector);
            assert_eq!(got, v.map(vector), "{id}");
            live += usize::from(v.is_some());
        }
        assert_eq!(db.count("c").expect("count") as usize, live);
        let hits = db
            .search("c", &SearchRequest::new(vector(59_005), 5))
            .expect("search");
        for h in hits {
            assert_eq!(
                versions.get(&h.id).copied().flatten().map(vector),
                db.get("c", &h.id).expect("get").map(|d| d.vector)
            );
        }
    };
    let moved = moves.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        moved >= 10,
        "the mover moved segments while the writers ran: {moved}"
    );
    check(&db);
    Arc::into_inner(db)
        .expect("sole owner")
        .close()
        .expect("close");
    let db = open_db().expect("reopen");
    check(&db);
    assert_consistent(&db, dir.path(), &store);
}
