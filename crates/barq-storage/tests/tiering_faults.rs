//! Tiering under store faults, through the public API: corrupted and slow cold reads, failed
//! HEAD / DELETE / multipart requests, maintenance that retries failed moves (on demand and from
//! the periodic loop), and every transition through the warm tier.
//!
//! Helpers are copied from `tiering.rs` (same data set, same observation of every read).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use barq_core::{CollectionConfig, Document, ErrorKind, Metric};
use barq_storage::tiering::{Clock, ColdStoreError, SystemClock, TieringOverrides, TieringPolicy};
use barq_storage::{
    Database, DatabaseBuilder, FP_TIER_AFTER_COMMIT, FailPoints, SearchRequest, SegmentEntry,
    StorageTier,
};
use barq_testkit::{FaultyStore, ManualClock, Op};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};

mod common;
use common::*;

fn segments(db: &Database, collection: &str) -> Vec<SegmentEntry> {
    db.tiering().segments(collection).expect("segments")
}

fn segment_ids(db: &Database) -> Vec<u64> {
    segments(db, "c").iter().map(|s| s.id).collect()
}

fn tiers(db: &Database) -> Vec<StorageTier> {
    segments(db, "c").iter().map(|s| s.tier).collect()
}

fn segment(db: &Database, id: u64) -> SegmentEntry {
    segments(db, "c")
        .into_iter()
        .find(|s| s.id == id)
        .expect("segment")
}

/// Poll `cond` every 10 ms for at most 10 s (only to wait for a background thread).
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// 1. A store that corrupts every body it returns: cold reads fail with `DataCorruption` (never a
///    wrong answer) and leave nothing in the cache; once the store is healthy again the same reads
///    give the right answers.
#[test]
fn corrupted_cold_reads_are_errors_and_nothing_bad_is_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (faulty, store) = faulty_store();
    let db = open(dir.path(), Some(Arc::clone(&store))).expect("open");
    load(&db);
    let before = observe(&db);
    let cold_id = segment_ids(&db)[0];
    db.tiering().offload_segment("c", cold_id).expect("offload");
    db.close().expect("close");

    // Reopened: the cache is empty and the cold segment has not even been opened.
    let db = open(dir.path(), Some(Arc::clone(&store))).expect("reopen");
    faulty.corrupt_gets(true);
    let gets = faulty.calls(Op::Get);
    // Ids whose newest version is in the cold segment only.
    for id in ["d10", "d150", "d199"] {
        let err = db.get("c", id).expect_err("corrupted cold get");
        assert_eq!(err.kind(), ErrorKind::DataCorruption, "{id}: {err}");
    }
    for q in [0usize, 42] {
        let err = db
            .search("c", &SearchRequest::new(vector(q), 15).with_payload(true))
            .expect_err("corrupted cold search");
        assert_eq!(err.kind(), ErrorKind::DataCorruption, "{err}");
    }
    assert!(
        faulty.calls(Op::Get) > gets,
        "the reads did reach the (corrupting) store"
    );
    // Hot data is not affected.
    assert_eq!(
        db.get("c", "d250").expect("hot get").expect("doc").vector,
        vector(250)
    );
    assert_eq!(db.get("c", "d5").expect("hot tombstone"), None);
    let counters = db.tiering().status().expect("status").counters;
    assert_eq!(
        (counters.cache_bytes, counters.cache_hits),
        (0, 0),
        "nothing that failed its checksum was cached: {counters:?}"
    );

    faulty.corrupt_gets(false);
    assert_eq!(
        db.get("c", "d10").expect("get").expect("doc"),
        before.0["d10"].clone().expect("d10")
    );
    assert_eq!(observe(&db), before, "the same reads are right once healed");
    assert_eq!(tiers(&db), [StorageTier::Cold, StorageTier::Hot]);

    // Ranges verified and cached while the store was healthy are served from the cache, without
    // asking the (again corrupting) store.
    faulty.corrupt_gets(true);
    let gets = faulty.calls(Op::Get);
    assert_eq!(
        db.get("c", "d10").expect("cached get").expect("doc"),
        before.0["d10"].clone().expect("d10")
    );
    assert_eq!(faulty.calls(Op::Get), gets, "served from the cache");

    // An upload whose read-back is corrupted is not committed, and the bad object is deleted.
    let hot = segment(&db, segment_ids(&db)[1]);
    let key = segment_key("c", &hot);
    let puts = faulty.calls(Op::Put);
    let err = db
        .tiering()
        .offload_segment("c", hot.id)
        .expect_err("verification fails");
    assert_eq!(err.kind(), ErrorKind::DataCorruption, "{err}");
    assert_eq!(faulty.calls(Op::Put) - puts, 1, "it was uploaded");
    let s = segment(&db, hot.id);
    assert_eq!((s.tier, s.remote_key), (StorageTier::Hot, None));
    assert!(segment_files(dir.path()).contains(&hot.file_name));
    assert!(
        !list_keys(faulty.inner()).contains(&key),
        "the unverified object was deleted"
    );
    faulty.corrupt_gets(false);
    let o = db.tiering().offload_segment("c", hot.id).expect("offload");
    assert_eq!(o.bytes, hot.size_bytes);
    assert!(list_keys(faulty.inner()).contains(&key));
    assert_eq!(observe(&db), before);
}

/// 2. A slow store slows cold reads only: while a cold search waits on a delayed GET in another
///    thread, gets of hot data (a hot segment, a tombstone in it, the memtable) all return.
#[test]
fn a_slow_store_does_not_slow_hot_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (faulty, store) = faulty_store();
    let db = open(dir.path(), Some(Arc::clone(&store))).expect("open");
    load(&db);
    // Stays in the memtable (replayed from the WAL at reopen).
    db.upsert("c", &[Document::new("mem", vector(4242))])
        .expect("memtable write");
    let request = SearchRequest::new(vector(0), 15).with_payload(true);
    let expected = db.search("c", &request).expect("search");
    let ids = segment_ids(&db);
    db.tiering()
        .offload_segment("c", ids[0])
        .expect("offload the older segment");
    db.close().expect("close");
    // Reopened: empty cache, the cold segment not opened yet.
    let db = Arc::new(open(dir.path(), Some(Arc::clone(&store))).expect("reopen"));
    assert_eq!(tiers(&db), [StorageTier::Cold, StorageTier::Hot]);
    faulty.delay(Op::Get, Duration::from_millis(200));
    let gets_before = faulty.calls(Op::Get);
    let cold_done = Arc::new(AtomicBool::new(false));
    let cold = {
        let db = Arc::clone(&db);
        let cold_done = Arc::clone(&cold_done);
        let request = request.clone();
        std::thread::spawn(move || {
            let hits = db.search("c", &request);
            cold_done.store(true, Ordering::SeqCst);
            hits
        })
    };
    // Wait until the cold search is blocked in a delayed GET.
    wait_until("the cold search has sent a GET", || {
        faulty.calls(Op::Get) > gets_before
    });
    assert!(
        !cold_done.load(Ordering::SeqCst),
        "the cold search waits on the store"
    );
    for i in 200..300 {
        let doc = db
            .get("c", &format!("d{i}"))
            .expect("hot get")
            .expect("doc");
        assert_eq!(
            (doc.vector, doc.payload),
            (vector(i), Some(payload(i))),
            "d{i}"
        );
    }
    assert_eq!(
        db.get("c", "d6").expect("hot get").expect("doc").vector,
        vector(1000),
        "the newer version in the hot segment"
    );
    assert_eq!(
        db.get("c", "d5").expect("hot get"),
        None,
        "the tombstone in the hot segment"
    );
    assert_eq!(
        db.get("c", "mem")
            .expect("memtable get")
            .expect("doc")
            .vector,
        vector(4242)
    );
    assert!(
        !cold_done.load(Ordering::SeqCst),
        "every hot get returned while the cold search was still blocked on the slow store"
    );
    let slow = cold
        .join()
        .expect("search thread")
        .expect("slow search succeeds");
    assert_eq!(slow, expected, "a slow answer is the same answer");
    assert!(slow.iter().any(|h| h.id == "d0"), "{slow:?}");
}

/// 3. A failed HEAD stops re-offloading a hydrated segment (it stays Hot with its file); a failed
///    DELETE after a compaction leaves orphans that `collect_orphans` deletes once healed.
#[test]
fn head_and_delete_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (faulty, store) = faulty_store();
    let mut opts = options();
    opts.tiering.orphan_grace = Duration::ZERO;
    let db = builder(dir.path(), Some(Arc::clone(&store)))
        .options(opts)
        .open()
        .expect("open");
    load(&db);
    let before = observe(&db);
    let ids = segment_ids(&db);
    let id = ids[0];
    db.tiering().offload_segment("c", id).expect("offload");
    db.tiering().hydrate_segment("c", id).expect("hydrate");
    let hydrated = segment(&db, id);
    assert_eq!(hydrated.tier, StorageTier::Hot);
    let key = hydrated
        .remote_key
        .clone()
        .expect("Local+Remote keeps its key");

    // Offloading a Local+Remote segment again asks the store whether its copy is still there.
    faulty.fail_always(Op::Head);
    let (heads, puts) = (faulty.calls(Op::Head), faulty.calls(Op::Put));
    let err = db
        .tiering()
        .offload_segment("c", id)
        .expect_err("HEAD keeps failing");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(faulty.calls(Op::Head) - heads, 3, "three attempts");
    assert_eq!(faulty.calls(Op::Put), puts, "no upload instead");
    let s = segment(&db, id);
    assert_eq!(
        (s.tier, s.remote_key.as_deref()),
        (StorageTier::Hot, Some(key.as_str()))
    );
    assert!(segment_files(dir.path()).contains(&s.file_name));
    assert_eq!(
        db.tiering().status().expect("status").last_errors[0].segment_id,
        id
    );
    assert_eq!(observe(&db), before);

    faulty.heal(Op::Head);
    let o = db
        .tiering()
        .offload_segment("c", id)
        .expect("offload after heal");
    assert_eq!(
        (o.from, o.to, o.bytes),
        (StorageTier::Hot, StorageTier::Cold, 0)
    );
    assert_eq!(faulty.calls(Op::Put), puts, "still no upload");
    assert!(!segment_files(dir.path()).contains(&s.file_name));
    assert!(
        db.tiering()
            .status()
            .expect("status")
            .last_errors
            .is_empty()
    );
    assert_eq!(observe(&db), before);

    // A Local+Remote segment whose object vanished (HEAD: not found) is uploaded again.
    let other = segment(&db, ids[1]);
    db.tiering().offload_segment("c", ids[1]).expect("offload");
    db.tiering().hydrate_segment("c", ids[1]).expect("hydrate");
    let other_key = remote_key_of(&db, ids[1]);
    runtime()
        .block_on(
            faulty
                .inner()
                .delete(&object_store::path::Path::from(other_key.as_str())),
        )
        .expect("delete behind the database's back");
    let o = db
        .tiering()
        .offload_segment("c", ids[1])
        .expect("offload again");
    assert_eq!(o.bytes, other.size_bytes, "uploaded again");
    assert!(list_keys(faulty.inner()).contains(&other_key));
    assert_eq!(observe(&db), before);

    // Compaction over cold inputs while the store refuses every DELETE.
    db.upsert("c", &[Document::new("d7", vector(777))])
        .expect("overwrite a cold row");
    let before = observe(&db);
    let orphans = list_keys(faulty.inner());
    assert_eq!(orphans.len(), 2, "{orphans:?}");
    faulty.fail_always(Op::Delete);
    let deletes = faulty.calls(Op::Delete);
    let out = db
        .compact("c")
        .expect("compaction succeeds whatever the store does: it deletes no object itself");
    assert_eq!(
        out.inputs.len(),
        3,
        "two cold segments and the flushed memtable"
    );
    assert_eq!(
        faulty.calls(Op::Delete) - deletes,
        0,
        "the inputs' objects are left to orphan collection (readers may still use them)"
    );
    let after = segments(&db, "c");
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].tier, after[0].remote_key.as_deref()),
        (StorageTier::Hot, None),
        "the manifest references no object any more"
    );
    assert_eq!(
        list_keys(faulty.inner()),
        orphans,
        "the objects are orphans"
    );
    assert_eq!(observe(&db), before);

    let err = db
        .tiering()
        .collect_orphans()
        .expect_err("deletes still fail");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(list_keys(faulty.inner()), orphans);

    faulty.heal(Op::Delete);
    assert_eq!(db.tiering().collect_orphans().expect("gc"), 2);
    assert!(list_keys(faulty.inner()).is_empty());
    assert_eq!(db.tiering().collect_orphans().expect("gc again"), 0);
    assert_eq!(observe(&db), before);
}

fn remote_key_of(db: &Database, id: u64) -> String {
    segment(db, id).remote_key.expect("remote key")
}

const BIG_DIM: usize = 128;
const PART: usize = 5 << 20;

fn big_vector(n: usize) -> Vec<f32> {
    (0..BIG_DIM).map(|d| ((n * 31 + d) % 97) as f32).collect()
}

/// Documents in collection "big".
const DOCS: usize = 40_000;

/// A database in `dir` on a fault-injecting store, with multipart parts of [`PART`] bytes and
/// collection "big": [`DOCS`] documents of [`BIG_DIM`] dimensions flushed into one segment.
fn open_big(
    dir: &std::path::Path,
) -> (
    Arc<FaultyStore>,
    Arc<dyn ObjectStore>,
    DatabaseBuilder,
    Database,
    SegmentEntry,
) {
    let (faulty, store) = faulty_store();
    let mut opts = options();
    opts.tiering.multipart_part_bytes = PART;
    let reopen = builder(dir, Some(Arc::clone(&store))).options(opts);
    let db = reopen.clone().open().expect("open");
    db.create_collection(
        CollectionConfig::new("big", BIG_DIM as u32, Metric::Cosine).expect("cfg"),
    )
    .expect("create");
    for chunk in (0..DOCS).collect::<Vec<_>>().chunks(5000) {
        let docs: Vec<Document> = chunk
            .iter()
            .map(|&n| Document::new(format!("doc-{n:06}"), big_vector(n)))
            .collect();
        db.upsert("big", &docs).expect("upsert");
    }
    db.flush("big").expect("flush");
    let seg = segments(&db, "big")[0].clone();
    (faulty, store, reopen, db, seg)
}

/// 4b. Connections that drop in the middle of a body: the part is read again from its start, for
///     a cold search (whose vector block is large enough to be read as parallel parts into one
///     buffer) and for a hydration (whose parts are written at their offsets); the answers and
///     the hydrated file are exactly right.
#[test]
fn bodies_cut_off_midway_are_read_again_for_cold_searches_and_hydration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (faulty, _, reopen, db, seg) = open_big(dir.path());
    assert!(
        seg.rows * BIG_DIM as u64 * 4 > 16 << 20,
        "the vector block is read in parallel parts"
    );
    let queries = [7usize, 20_001, 39_998];
    let search = |db: &Database| -> Vec<Vec<(String, f32)>> {
        queries
            .iter()
            .map(|&q| {
                db.search("big", &SearchRequest::new(big_vector(q), 10))
                    .expect("search")
                    .into_iter()
                    .map(|h| (h.id, h.score))
                    .collect()
            })
            .collect()
    };
    let hot = search(&db);
    assert_eq!(hot[0][0].0, "doc-000007");
    let hot_file = std::fs::read(
        dir.path()
            .join("collections/big/segments")
            .join(&seg.file_name),
    )
    .expect("read the hot segment");
    db.tiering()
        .offload_segment("big", seg.id)
        .expect("offload");
    db.close().expect("close");

    // A cold search from an empty cache, while the two full 8 MiB parts of the vector block
    // break half way (the id block and the footer are smaller and arrive whole).
    let db = reopen.clone().open().expect("reopen");
    let failures = |db: &Database| {
        db.tiering()
            .status()
            .expect("status")
            .counters
            .remote_failures
    };
    faulty.break_bodies(2, 4 << 20);
    assert_eq!(search(&db), hot, "cold search through broken bodies");
    assert_eq!(failures(&db), 2, "both broken bodies were retried");

    // A hydration while three of its 5 MiB parts break half way.
    faulty.break_bodies(3, 4 << 20);
    let o = db
        .tiering()
        .hydrate_segment("big", seg.id)
        .expect("hydrate");
    assert_eq!((o.to, o.bytes), (StorageTier::Hot, seg.size_bytes));
    assert_eq!(failures(&db), 5, "the three broken bodies were retried");
    let hydrated = std::fs::read(
        dir.path()
            .join("collections/big/segments")
            .join(&seg.file_name),
    )
    .expect("read the hydrated segment");
    assert!(
        hydrated == hot_file,
        "the hydrated file is the hot file, byte for byte"
    );
    assert_eq!(search(&db), hot);
    for n in [0, 12_345, DOCS - 1] {
        let doc = db
            .get("big", &format!("doc-{n:06}"))
            .expect("get")
            .expect("doc");
        assert_eq!(doc.vector, big_vector(n));
    }
    db.close().expect("close");
    let db = reopen.open().expect("reopen after hydration");
    assert_eq!(segments(&db, "big")[0].tier, StorageTier::Hot);
    assert_eq!(search(&db), hot);
}

/// 4. A multipart upload that dies half way (a part, then `complete`) fails the offload, leaves
///    the segment Hot and readable and leaves no object behind; a retry succeeds.
#[test]
fn a_multipart_upload_that_fails_half_way_leaves_nothing_behind() {
    // Five parts of 5 MiB: at most 4 are in flight, so the fifth is sent after the first one
    // finished, which is when the progress callback injects the fault.
    let dir = tempfile::tempdir().expect("tempdir");
    let (faulty, store, _, db, seg) = open_big(dir.path());
    let size = seg.size_bytes;
    assert!(
        size > 4 * PART as u64 && size <= 5 * PART as u64,
        "a segment of five parts: {size} bytes"
    );
    let key = segment_key("big", &seg);
    let seg_dir = dir.path().join("collections/big/segments");
    let check_still_hot = |what: &str| {
        let s = segments(&db, "big")[0].clone();
        assert_eq!(
            (s.tier, s.remote_key.as_deref()),
            (StorageTier::Hot, None),
            "{what}"
        );
        assert_eq!(
            files_in(&seg_dir),
            std::slice::from_ref(&seg.file_name),
            "{what}"
        );
        assert!(list_keys(faulty.inner()).is_empty(), "{what}: no object");
        for n in [0, 12_345, DOCS - 1] {
            assert_eq!(
                db.get("big", &format!("doc-{n:06}"))
                    .expect("get")
                    .expect("doc")
                    .vector,
                big_vector(n),
                "{what}"
            );
        }
    };

    // A part fails: injected once the first part finished, it hits the fifth.
    let injected = AtomicBool::new(false);
    let calls = faulty.calls(Op::MultipartPut);
    let err = db
        .tiering()
        .move_segment_with_progress("big", seg.id, StorageTier::Cold, &|_done| {
            if !injected.swap(true, Ordering::SeqCst) {
                faulty.fail(Op::MultipartPut, 1);
            }
        })
        .expect_err("a part failed");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        matches!(
            err.find_source::<ColdStoreError>(),
            Some(ColdStoreError::Request { what, .. }) if what.starts_with("upload part of")
        ),
        "{err}"
    );
    assert_eq!(
        faulty.calls(Op::MultipartPut) - calls,
        1 + 5 + 1,
        "create, five parts, abort (no complete)"
    );
    check_still_hot("after a failed part");
    assert_eq!(
        db.tiering().status().expect("status").last_errors[0].segment_id,
        seg.id
    );

    // `complete` fails: injected when every byte was sent.
    let calls = faulty.calls(Op::MultipartPut);
    let err = db
        .tiering()
        .move_segment_with_progress("big", seg.id, StorageTier::Cold, &|done| {
            if done == size {
                faulty.fail(Op::MultipartPut, 1);
            }
        })
        .expect_err("complete failed");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        matches!(
            err.find_source::<ColdStoreError>(),
            Some(ColdStoreError::Request { what, .. })
                if what.starts_with("complete multipart upload of")
        ),
        "{err}"
    );
    assert_eq!(
        faulty.calls(Op::MultipartPut) - calls,
        1 + 5 + 1 + 1,
        "create, five parts, complete, abort"
    );
    check_still_hot("after a failed complete");

    // The retry goes through.
    let calls = faulty.calls(Op::MultipartPut);
    let o = db.tiering().offload_segment("big", seg.id).expect("retry");
    assert_eq!(
        (o.from, o.to, o.bytes),
        (StorageTier::Hot, StorageTier::Cold, size)
    );
    assert_eq!(faulty.calls(Op::MultipartPut) - calls, 1 + 5 + 1);
    assert_eq!(list_keys(faulty.inner()), std::slice::from_ref(&key));
    let meta = runtime()
        .block_on(
            faulty
                .inner()
                .head(&object_store::path::Path::from(key.as_str())),
        )
        .expect("head");
    assert_eq!(meta.size, size);
    assert!(files_in(&seg_dir).is_empty());
    assert!(
        db.tiering()
            .status()
            .expect("status")
            .last_errors
            .is_empty()
    );
    db.close().expect("close");

    let db = open(dir.path(), Some(store)).expect("reopen");
    assert_eq!(segments(&db, "big")[0].tier, StorageTier::Cold);
    for n in [0, 1, 12_345, 25_000, DOCS - 1] {
        assert_eq!(
            db.get("big", &format!("doc-{n:06}"))
                .expect("cold get")
                .expect("doc")
                .vector,
            big_vector(n)
        );
    }
    assert_eq!(db.count("big").expect("count"), DOCS as u64);
}

fn real_now_ms() -> u64 {
    SystemClock.now_ms()
}

/// 5. Maintenance whose moves fail reports them and retries them on a later pass.
#[test]
fn maintenance_retries_a_failed_move_on_the_next_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (faulty, store) = faulty_store();
    // Starts at the real time: segments are sealed by the system clock.
    let clock = Arc::new(ManualClock::new(real_now_ms()));
    let mut opts = options();
    opts.tiering.policy = TieringPolicy {
        move_to_cold_after: Some(Duration::from_secs(1)),
        ..TieringPolicy::default()
    };
    let db = builder(dir.path(), Some(Arc::clone(&store)))
        .options(opts)
        .clock(clock.clone())
        .open()
        .expect("open");
    load(&db);
    let before = observe(&db);
    let ids = segment_ids(&db);
    assert_eq!(
        db.tiering().run_maintenance().expect("maintenance").planned,
        0,
        "just read"
    );

    clock.advance(Duration::from_secs(3600));
    faulty.fail_always(Op::Put);
    let r = db.tiering().run_maintenance().expect("maintenance");
    assert_eq!(r.planned, 2, "{r:?}");
    assert!(r.moves_done.is_empty(), "{r:?}");
    let mut failed: Vec<(u64, StorageTier)> = r
        .moves_failed
        .iter()
        .map(|e| (e.segment_id, e.to))
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        ids.iter()
            .map(|id| (*id, StorageTier::Cold))
            .collect::<Vec<_>>()
    );
    assert!(
        r.moves_failed
            .iter()
            .all(|e| e.collection == "c" && e.error.contains("injected")),
        "{r:?}"
    );
    assert_eq!(
        faulty.calls(Op::Put),
        1 + 6,
        "the startup probe, then two moves with three attempts each"
    );
    let status = db.tiering().status().expect("status");
    let mut listed: Vec<u64> = status.last_errors.iter().map(|e| e.segment_id).collect();
    listed.sort();
    assert_eq!(listed, ids, "{:?}", status.last_errors);
    assert!(
        status
            .last_errors
            .iter()
            .all(|e| e.to == StorageTier::Cold && e.error.contains("injected"))
    );
    assert_eq!(status.counters.moves_failed, 2);
    assert_eq!(tiers(&db), [StorageTier::Hot, StorageTier::Hot]);
    assert_eq!(segment_files(dir.path()).len(), 2);
    assert!(list_keys(faulty.inner()).is_empty());

    faulty.heal_all();
    let r = db.tiering().run_maintenance().expect("maintenance");
    assert_eq!((r.planned, r.moves_done.len()), (2, 2), "{r:?}");
    assert!(r.moves_failed.is_empty(), "{r:?}");
    assert!(
        r.moves_done
            .iter()
            .all(|o| (o.from, o.to) == (StorageTier::Hot, StorageTier::Cold) && o.bytes > 0)
    );
    let sizes: u64 = segments(&db, "c").iter().map(|s| s.size_bytes).sum();
    assert_eq!(r.bytes_moved, sizes);
    let status = db.tiering().status().expect("status");
    assert!(status.last_errors.is_empty(), "{:?}", status.last_errors);
    assert_eq!(
        (status.counters.moves_done, status.counters.moves_failed),
        (2, 2)
    );
    assert_eq!(tiers(&db), [StorageTier::Cold, StorageTier::Cold]);
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(list_keys(faulty.inner()).len(), 2);
    assert_eq!(observe(&db), before);
}

/// 6. The periodic loop applies the policy by itself, and `close` stops it.
#[test]
fn the_maintenance_loop_moves_idle_segments_and_stops_at_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (faulty, store) = faulty_store();
    let clock = Arc::new(ManualClock::new(real_now_ms()));
    let mut opts = options();
    opts.tiering.maintenance_interval = Some(Duration::from_millis(30));
    opts.tiering.policy = TieringPolicy {
        move_to_cold_after: Some(Duration::from_secs(1)),
        ..TieringPolicy::default()
    };
    let db = builder(dir.path(), Some(Arc::clone(&store)))
        .options(opts)
        .clock(clock.clone())
        .open()
        .expect("open");
    load(&db);
    let before = observe(&db);
    // The loop runs, but the clock says nothing is idle yet.
    wait_until("a maintenance pass ran", || {
        db.tiering()
            .status()
            .expect("status")
            .last_maintenance_ms
            .is_some()
    });
    assert_eq!(tiers(&db), [StorageTier::Hot, StorageTier::Hot]);

    clock.advance(Duration::from_secs(3600));
    // Cold in the manifest and no move still running (a move commits, then deletes the local
    // copy, then counts itself and releases the segment).
    wait_until("the loop moved both segments to Cold", || {
        let status = db.tiering().status().expect("status");
        status.in_progress.is_empty()
            && status.collections[0]
                .segments
                .iter()
                .all(|s| s.tier == StorageTier::Cold)
    });
    assert_eq!(tiers(&db), [StorageTier::Cold, StorageTier::Cold]);
    let status = db.tiering().status().expect("status");
    assert!(status.last_errors.is_empty(), "{:?}", status.last_errors);
    assert_eq!(status.counters.moves_done, 2);
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(list_keys(faulty.inner()).len(), 2);
    db.close().expect("close stops the loop");
    let requests = faulty.requests();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(
        faulty.requests(),
        requests,
        "no maintenance pass after close"
    );

    let db = open(dir.path(), Some(store)).expect("reopen");
    assert_eq!(tiers(&db), [StorageTier::Cold, StorageTier::Cold]);
    assert_eq!(observe(&db), before);
}

/// 7. Hot → Warm → Cold → Warm → Hot with the files where they belong and the same answers at
///    every step and after reopening; a crash after the commit of a local move leaves one copy.
#[test]
fn warm_tier_transitions_and_a_crash_during_a_local_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let data = dir.path().join("data");
    let warm = dir.path().join("warm");
    let warm_builder = || {
        let mut o = options();
        o.tiering.warm_dir = Some(warm.clone());
        builder(&data, Some(Arc::clone(&store))).options(o)
    };
    let db = warm_builder().open().expect("open");
    load(&db);
    let before = observe(&db);
    let ids = segment_ids(&db);
    let id = ids[0];
    let s = segment(&db, id);
    let file = s.file_name.clone();
    let other = segment(&db, ids[1]).file_name;
    let key = segment_key("c", &s);
    // Where the segment's bytes are: (in hot dir, in warm dir, remote object).
    let placed = |db: &Database, tier: StorageTier, hot: bool, warm_copy: bool, remote: bool| {
        assert_eq!(segment(db, id).tier, tier);
        assert_eq!(
            segment_files(&data).contains(&file),
            hot,
            "{tier:?}: hot copy"
        );
        assert_eq!(
            segment_files(&warm).contains(&file),
            warm_copy,
            "{tier:?}: warm copy"
        );
        assert_eq!(
            list_keys(&store).contains(&key),
            remote,
            "{tier:?}: remote copy"
        );
        assert!(
            segment_files(&data).contains(&other),
            "the other segment stays hot"
        );
        assert!(
            !segment_files(&data)
                .iter()
                .chain(&segment_files(&warm))
                .any(|f| f.ends_with(".tmp")),
            "no temporary file"
        );
        assert_eq!(observe(db), before, "{tier:?}: same answers");
    };
    placed(&db, StorageTier::Hot, true, false, false);

    let step = |db: &Database, to: StorageTier, bytes: u64| {
        let from = segment(db, id).tier;
        let o = db.tiering().move_segment("c", id, to).expect("move");
        assert_eq!(
            (o.from, o.to, o.bytes),
            (from, to, bytes),
            "{from:?} → {to:?}"
        );
    };
    let size = s.size_bytes;
    step(&db, StorageTier::Warm, size);
    placed(&db, StorageTier::Warm, false, true, false);
    step(&db, StorageTier::Cold, size);
    placed(&db, StorageTier::Cold, false, false, true);
    step(&db, StorageTier::Warm, size);
    placed(&db, StorageTier::Warm, false, true, true);
    assert_eq!(
        segment(&db, id).remote_key.as_deref(),
        Some(key.as_str()),
        "downloaded into warm: Local+Remote"
    );
    db.close().expect("close");
    let db = warm_builder().open().expect("reopen");
    placed(&db, StorageTier::Warm, false, true, true);
    // Local+Remote in Warm: offloading it again copies nothing.
    step(&db, StorageTier::Cold, 0);
    placed(&db, StorageTier::Cold, false, false, true);
    step(&db, StorageTier::Warm, size);
    placed(&db, StorageTier::Warm, false, true, true);
    step(&db, StorageTier::Hot, size);
    placed(&db, StorageTier::Hot, true, false, true);
    db.close().expect("close");
    let db = warm_builder().open().expect("reopen");
    placed(&db, StorageTier::Hot, true, false, true);

    // A crash after the commit of Hot → Warm, before the hot copy is deleted.
    let crashing = FailPoints::default();
    drop(db);
    let db = warm_builder()
        .failpoints(crashing.clone())
        .open()
        .expect("reopen");
    crashing.enable(FP_TIER_AFTER_COMMIT);
    db.tiering()
        .move_segment("c", id, StorageTier::Warm)
        .expect_err("crash after commit");
    assert!(segment_files(&data).contains(&file) && segment_files(&warm).contains(&file));
    drop(db);
    let db = warm_builder().open().expect("reopen after the crash");
    placed(&db, StorageTier::Warm, false, true, true);

    // And the other way: Warm → Hot.
    drop(db);
    let db = warm_builder()
        .failpoints(crashing.clone())
        .open()
        .expect("reopen");
    db.tiering()
        .move_segment("c", id, StorageTier::Hot)
        .expect_err("crash after commit");
    drop(db);
    let db = warm_builder().open().expect("reopen after the crash");
    placed(&db, StorageTier::Hot, true, false, true);
    db.close().expect("close");
}

/// A cold store that cannot be used at open does not stop the database: the probe's failure
/// names the store and the step, the store is degraded, writes, flushes and hot searches work,
/// moves fail with `Unavailable` naming the store, and once the store answers again the
/// background re-probe clears the state and the offload succeeds, with no restart. With
/// `cold_store_required` the open fails instead.
#[test]
fn an_unusable_store_at_open_degrades_and_recovers_without_a_restart() {
    use barq_storage::tiering::ColdStoreState;
    let dir = tempfile::tempdir().expect("tempdir");
    let faulty = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
    faulty.set_offline(true);
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let mut opts = options();
    opts.tiering.probe_on_open = true;
    opts.tiering.store_recheck_interval = Duration::from_millis(20);

    let mut strict = opts.clone();
    strict.tiering.cold_store_required = true;
    let err = builder(dir.path(), Some(Arc::clone(&store)))
        .options(strict)
        .open()
        .expect_err("required store offline");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        matches!(
            err.find_source::<ColdStoreError>(),
            Some(ColdStoreError::Unusable { store, step, reason })
                if store == "test store"
                    && step.starts_with("write of probe object")
                    && reason.contains("store offline")
        ),
        "the store, the step and the store's own message: {err}"
    );
    assert!(err.message().contains("BARQ_COLD_STORE_REQUIRED"), "{err}");

    let db = builder(dir.path(), Some(Arc::clone(&store)))
        .options(opts.clone())
        .open()
        .expect("open while the store is down");
    let health = db.tiering().cold_store_health();
    assert_eq!(health.state, ColdStoreState::Degraded, "{health:?}");
    let reason = health.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("test store") && reason.contains("write of probe object"),
        "{reason}"
    );
    assert!(health.failed_probes >= 1, "{health:?}");
    let status = db.tiering().status().expect("status");
    assert_eq!(status.cold_store_health.state, ColdStoreState::Degraded);

    // Writes, a flush and hot searches work.
    db.create_collection(CollectionConfig::new("c", DIM as u32, Metric::L2).expect("config"))
        .expect("create while the store is down");
    let docs: Vec<Document> = (0..50)
        .map(|i| Document::new(format!("d{i:03}"), vec![i as f32; DIM]))
        .collect();
    db.upsert("c", &docs)
        .expect("upsert while the store is down");
    db.flush("c").expect("flush while the store is down");
    let hits = db
        .search("c", &SearchRequest::new(vec![7.0; DIM], 3))
        .expect("search");
    assert_eq!(hits[0].id, "d007");
    // A move needs the store: Unavailable, naming it; the segment stays hot.
    let id = segment_ids(&db)[0];
    let err = db
        .tiering()
        .offload_segment("c", id)
        .expect_err("store down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        matches!(
            err.find_source::<ColdStoreError>(),
            Some(ColdStoreError::Request { store, .. } | ColdStoreError::Unusable { store, .. })
                if store == "test store"
        ),
        "{err}"
    );
    assert_eq!(tiers(&db), [StorageTier::Hot]);
    // Maintenance while degraded defers the moves that need the store instead of failing
    // them one by one, and skips collecting orphans.
    db.tiering()
        .set_overrides(
            "c",
            TieringOverrides {
                move_to_cold_after: Some(Duration::ZERO),
                ..TieringOverrides::default()
            },
        )
        .expect("overrides");
    let multipart = faulty.calls(Op::MultipartPut);
    let failed = db.tiering().status().expect("status").counters.moves_failed;
    let report = db
        .tiering()
        .run_maintenance()
        .expect("maintenance while down");
    assert_eq!(
        (report.planned, report.moves_deferred),
        (1, 1),
        "{report:?}"
    );
    assert!(report.moves_failed.is_empty(), "{report:?}");
    // No upload was tried: the only writes were probes (the pass's own, and the background
    // re-probe's, whose timing varies), and no segment object exists.
    assert_eq!(
        faulty.calls(Op::MultipartPut),
        multipart,
        "no multipart upload"
    );
    assert_eq!(
        db.tiering().status().expect("status").counters.moves_failed,
        failed,
        "no move was tried"
    );
    assert!(
        list_keys(faulty.inner())
            .iter()
            .all(|k| !k.ends_with(".seg")),
        "no segment object: {:?}",
        list_keys(faulty.inner())
    );
    assert!(report.gc_error.is_some_and(|e| e.contains("test store")));
    db.tiering()
        .set_overrides("c", TieringOverrides::default())
        .expect("overrides");

    // The store comes back: the re-probe sees it, and the move goes through.
    faulty.set_offline(false);
    wait_until("the re-probe finds the store", || {
        db.tiering().cold_store_health().state == ColdStoreState::Ok
    });
    assert_eq!(db.tiering().cold_store_health().reason, None);
    db.tiering()
        .offload_segment("c", id)
        .expect("offload once the store is back");
    assert_eq!(tiers(&db), [StorageTier::Cold]);
    assert!(
        list_keys(faulty.inner())
            .iter()
            .all(|k| !k.contains(".barq-probe")),
        "probe objects are deleted"
    );

    // A failure later (readiness, status) degrades again; writes go on.
    let puts = faulty.calls(Op::Put);
    db.tiering().check_cold_store().expect("reachable");
    assert_eq!(faulty.calls(Op::Put), puts, "the check writes nothing");
    faulty.set_offline(true);
    let status = db.tiering().status_with_store_check().expect("status");
    assert_eq!(status.cold_store_reachable, Some(false));
    assert!(
        status
            .cold_store_error
            .is_some_and(|e| e.contains("store offline"))
    );
    assert_eq!(status.cold_store_health.state, ColdStoreState::Degraded);
    db.upsert("c", &[Document::new("late", vec![1.5; DIM])])
        .expect("write while degraded");
    faulty.set_offline(false);
    wait_until("the store is back", || {
        db.tiering().cold_store_health().state == ColdStoreState::Ok
    });
    drop(db);
    let db = builder(dir.path(), Some(store))
        .options(opts)
        .open()
        .expect("reopen");
    assert_eq!(db.count("c").expect("count"), 51);
    assert!(db.get("c", "late").expect("get").is_some());
    drop(db);
}

/// `move_concurrency` bounds every move at once: engine calls from several threads and a
/// maintenance pass together never have more than that many uploads in flight.
#[test]
fn move_concurrency_bounds_all_callers_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (faulty, store) = faulty_store();
    let clock = Arc::new(ManualClock::new(real_now_ms()));
    let mut opts = options();
    opts.tiering.move_concurrency = 2;
    let db = builder(dir.path(), Some(store))
        .options(opts)
        .clock(clock.clone())
        .open()
        .expect("open");
    // Collection "e" is moved by engine calls; the policy moves only "m" (an override).
    for (name, segments) in [("e", 3), ("m", 2)] {
        db.create_collection(CollectionConfig::new(name, DIM as u32, Metric::L2).expect("cfg"))
            .expect("create");
        for s in 0..segments {
            let docs: Vec<Document> = (0..20)
                .map(|i| Document::new(format!("s{s}-{i}"), vector(s * 100 + i)))
                .collect();
            db.upsert(name, &docs).expect("upsert");
            db.flush(name).expect("flush");
        }
    }
    db.tiering()
        .set_overrides(
            "m",
            TieringOverrides {
                move_to_cold_after: Some(Duration::from_secs(1)),
                min_residency: Some(Duration::ZERO),
                ..TieringOverrides::default()
            },
        )
        .expect("overrides");
    let engine_ids: Vec<u64> = segments(&db, "e").iter().map(|s| s.id).collect();
    clock.advance(Duration::from_secs(3600));
    faulty.hold(Op::Put, true);
    std::thread::scope(|s| {
        let mut engine_calls = Vec::new();
        for &id in &engine_ids {
            let db = &db;
            engine_calls.push(s.spawn(move || db.tiering().offload_segment("e", id)));
        }
        let maintenance = s.spawn(|| db.tiering().run_maintenance());
        wait_until("two uploads are in flight", || faulty.waiting(Op::Put) == 2);
        // Five moves are asked for: the bound holds three back, whatever asked for them.
        for _ in 0..30 {
            let n = faulty.waiting(Op::Put);
            assert!(n <= 2, "{n} uploads at once");
            std::thread::sleep(Duration::from_millis(10));
        }
        faulty.hold(Op::Put, false);
        for call in engine_calls {
            call.join().expect("thread").expect("engine offload");
        }
        let report = maintenance.join().expect("thread").expect("maintenance");
        assert_eq!(report.moves_done.len(), 2, "{report:?}");
        assert!(report.moves_failed.is_empty(), "{report:?}");
    });
    for name in ["e", "m"] {
        let t: Vec<StorageTier> = segments(&db, name).iter().map(|s| s.tier).collect();
        assert!(t.iter().all(|t| *t == StorageTier::Cold), "{name}: {t:?}");
    }
    db.close().expect("close");
}

/// A search that waits on the cold store holds no CPU-pool thread: while a cold search's
/// ranged reads hang, searches of a hot collection (large enough to run on the pool) complete;
/// once released, the cold search answers correctly. The engine called from inside a tokio
/// runtime (current-thread and multi-thread) reads cold data without panicking.
#[test]
fn a_cold_search_waiting_on_the_store_holds_no_cpu_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (faulty, store) = faulty_store();
    let db = open(dir.path(), Some(Arc::clone(&store))).expect("open");
    db.create_collection(CollectionConfig::new("cold", DIM as u32, Metric::L2).expect("cfg"))
        .expect("create");
    for s in 0..3 {
        let docs: Vec<Document> = (0..200)
            .map(|i| Document::new(format!("c{s}-{i}"), vector(s * 1000 + i)))
            .collect();
        db.upsert("cold", &docs).expect("upsert");
        db.flush("cold").expect("flush");
    }
    for s in segments(&db, "cold") {
        db.tiering().offload_segment("cold", s.id).expect("offload");
    }
    db.create_collection(CollectionConfig::new("hot", DIM as u32, Metric::L2).expect("cfg"))
        .expect("create");
    for b in 0..8 {
        let docs: Vec<Document> = (0..10_000)
            .map(|i| Document::new(format!("h{b}-{i}"), vector(b * 10_000 + i)))
            .collect();
        db.upsert("hot", &docs).expect("upsert");
    }
    db.flush("hot").expect("flush");
    let q = vector(1005);
    let want = {
        let hits = db
            .search("cold", &SearchRequest::new(q.clone(), 5))
            .expect("search");
        hits.into_iter().map(|h| h.id).collect::<Vec<_>>()
    };
    // A fresh open: the range cache is empty, the cold segments are not open.
    drop(db);
    let db = Arc::new(open(dir.path(), Some(Arc::clone(&store))).expect("reopen"));
    faulty.hold(Op::Get, true);
    let cold = {
        let (db, q) = (Arc::clone(&db), q.clone());
        std::thread::spawn(move || db.search("cold", &SearchRequest::new(q, 5)))
    };
    wait_until("the cold search waits on the store", || {
        faulty.waiting(Op::Get) > 0
    });
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let db = Arc::clone(&db);
        std::thread::spawn(move || {
            for i in 0..5 {
                let hits = db.search("hot", &SearchRequest::new(vector(i * 7), 3));
                let _ = tx.send(hits.map(|h| h[0].id.clone()));
            }
        });
    }
    for i in 0..5 {
        let got = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("a hot search finished while a cold search waited on the store")
            .expect("hot search");
        assert!(got.starts_with('h'), "search {i}: {got}");
    }
    assert!(!cold.is_finished(), "the cold search was still waiting");
    faulty.hold(Op::Get, false);
    let got: Vec<String> = cold
        .join()
        .expect("thread")
        .expect("cold search")
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(got, want);

    // From inside a tokio runtime, of either flavour: cold reads work, nothing panics.
    drop(db);
    let db = open(dir.path(), Some(store)).expect("reopen");
    for rt in [
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build(),
    ] {
        let rt = rt.expect("runtime");
        let doc = rt
            .block_on(async { db.get("cold", "c2-17") })
            .expect("get from async code");
        assert_eq!(doc.map(|d| d.vector), Some(vector(2017)));
        let hits = rt
            .block_on(async { db.search("cold", &SearchRequest::new(q.clone(), 5)) })
            .expect("search from async code");
        assert_eq!(hits.into_iter().map(|h| h.id).collect::<Vec<_>>(), want);
    }
    db.close().expect("close");
}

/// A batch of moves goes on after a failure and reports both, in order; an unknown segment is
/// refused before anything moves.
#[test]
fn a_batch_of_moves_goes_on_after_a_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (faulty, store) = faulty_store();
    let db = open(dir.path(), Some(store)).expect("open");
    load(&db);
    let ids = segment_ids(&db);
    let err = db
        .tiering()
        .move_segments("c", &[ids[0], 999], StorageTier::Cold, &|_, _, _| {})
        .expect_err("unknown segment");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(
        tiers(&db),
        [StorageTier::Hot, StorageTier::Hot],
        "nothing moved"
    );
    faulty.fail(Op::Put, 3); // every attempt of the first upload
    let seen = std::sync::Mutex::new(Vec::new());
    let batch = db
        .tiering()
        .move_segments("c", &ids, StorageTier::Cold, &|i, id, bytes| {
            seen.lock().expect("lock").push((i, id, bytes));
        })
        .expect("batch");
    assert_eq!(batch.failures.len(), 1);
    assert_eq!(batch.failures[0].0, ids[0]);
    assert_eq!(batch.failures[0].1.kind(), ErrorKind::Unavailable);
    assert_eq!(batch.moves.len(), 1);
    assert_eq!(batch.moves[0].segment_id, ids[1]);
    assert_eq!(tiers(&db), [StorageTier::Hot, StorageTier::Cold]);
    let seen = seen.into_inner().expect("lock");
    let total: u64 = segments(&db, "c").iter().map(|s| s.size_bytes).sum();
    assert_eq!(
        seen.last().map(|s| (s.0, s.2)),
        Some((1, total)),
        "{seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0].2 <= w[1].2),
        "bytes only grow: {seen:?}"
    );
}

/// The object key of a segment under the test prefix: its id and checksum.
fn segment_key(collection: &str, s: &barq_storage::SegmentEntry) -> String {
    let crc = s.checksum.trim_start_matches("crc32c:");
    format!("barq-test/{collection}/segments/{:020}-{crc}.seg", s.id)
}
