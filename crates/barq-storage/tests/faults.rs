//! Fault injection at every durability boundary of flush and compaction: the operation fails at
//! the failpoint (leaving the files exactly as a crash there would), the database is closed and
//! reopened, and every acknowledged write must be there exactly once.

use barq_core::{CollectionConfig, Document, Metric};
use barq_storage::{
    Database, Durability, FP_COMPACTION_AFTER_COMMIT, FP_COMPACTION_BEFORE_COMMIT,
    FP_FLUSH_AFTER_MANIFEST_COMMIT, FP_FLUSH_AFTER_SEGMENT_WRITE, FailPoints, Options,
    SearchRequest,
};

fn options() -> Options {
    Options {
        durability: Durability::Sync,
        background_compaction: false,
        ..Options::default()
    }
}

fn segment_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("collections/c/segments"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn write_round(db: &Database, round: usize) {
    let docs: Vec<Document> = (0..50)
        .map(|i| Document::new(format!("r{round}-{i}"), vec![round as f32, i as f32]))
        .collect();
    db.upsert("c", &docs).expect("upsert");
    db.delete("c", &format!("r{round}-0")).expect("delete");
    if round > 0 {
        // overwrite a document of the previous round
        db.upsert(
            "c",
            &[Document::new(format!("r{}-1", round - 1), vec![-1.0, -1.0])],
        )
        .expect("overwrite");
    }
}

fn check(db: &Database, rounds: usize) {
    let mut live = 0;
    for round in 0..rounds {
        for i in 0..50 {
            let got = db.get("c", &format!("r{round}-{i}")).expect("get");
            if i == 0 {
                assert_eq!(got, None, "r{round}-{i} deleted");
                continue;
            }
            live += 1;
            let want = if i == 1 && round + 1 < rounds {
                vec![-1.0, -1.0]
            } else {
                vec![round as f32, i as f32]
            };
            assert_eq!(got.expect("present").vector, want, "r{round}-{i}");
        }
    }
    assert_eq!(
        db.count("c").expect("count"),
        live,
        "every document exactly once"
    );
    let hits = db
        .search("c", &SearchRequest::new(vec![-1.0, -1.0], 3))
        .expect("search");
    assert_eq!(hits.len(), 3);
    assert!(
        hits.iter().filter(|h| h.score == 0.0).count() == rounds - 1,
        "overwrites visible exactly once"
    );
}

/// A database with collection "c", opened with `failpoints`.
fn setup(dir: &std::path::Path, failpoints: FailPoints) -> Database {
    let db = Database::builder(dir)
        .options(options())
        .failpoints(failpoints)
        .open()
        .expect("open");
    db.create_collection(CollectionConfig::new("c", 2, Metric::L2).expect("cfg"))
        .expect("create");
    db
}

#[test]
fn crash_after_segment_write_before_manifest_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fp = FailPoints::default();
    let db = setup(dir.path(), fp.clone());
    write_round(&db, 0);
    db.flush("c").expect("flush");
    write_round(&db, 1);
    fp.enable(FP_FLUSH_AFTER_SEGMENT_WRITE);
    db.flush("c").expect_err("failpoint");
    fp.disable(FP_FLUSH_AFTER_SEGMENT_WRITE);
    assert_eq!(
        segment_files(dir.path()).len(),
        2,
        "the unreferenced segment is on disk"
    );
    drop(db);
    let db = Database::open(dir.path(), options()).expect("reopen");
    assert_eq!(
        segment_files(dir.path()),
        ["00000000000000000001.seg"],
        "unreferenced segment swept"
    );
    check(&db, 2);
    db.flush("c").expect("flush after recovery");
    check(&db, 2);
}

#[test]
fn crash_after_manifest_commit_before_wal_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fp = FailPoints::default();
    let db = setup(dir.path(), fp.clone());
    write_round(&db, 0);
    fp.enable(FP_FLUSH_AFTER_MANIFEST_COMMIT);
    db.flush("c").expect_err("failpoint");
    drop(db);
    let db = Database::open(dir.path(), options()).expect("reopen");
    // The WAL still holds round 0, but it is at or below flushed_seq: replay skips it.
    assert_eq!(
        db.collection_stats("c").expect("stats").memtable_rows,
        0,
        "replay is idempotent"
    );
    check(&db, 1);
    write_round(&db, 1);
    check(&db, 2);
    db.close().expect("close");
    let db = Database::open(dir.path(), options()).expect("reopen");
    check(&db, 2);
}

#[test]
fn crash_during_compaction_before_and_after_commit() {
    for (point, survivors) in [
        (FP_COMPACTION_BEFORE_COMMIT, 3),
        (FP_COMPACTION_AFTER_COMMIT, 1),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let fp = FailPoints::default();
        let db = setup(dir.path(), fp.clone());
        for round in 0..3 {
            write_round(&db, round);
            db.flush("c").expect("flush");
        }
        fp.enable(point);
        db.compact("c").expect_err("failpoint");
        assert_eq!(
            segment_files(dir.path()).len(),
            4,
            "{point}: inputs and output both on disk"
        );
        drop(db);
        let db = Database::open(dir.path(), options()).expect("reopen");
        assert_eq!(
            segment_files(dir.path()).len(),
            survivors,
            "{point}: the unreferenced side is swept"
        );
        check(&db, 3);
        db.compact("c").expect("compact after recovery");
        assert_eq!(segment_files(dir.path()).len(), 1);
        check(&db, 3);
    }
}

/// A panic in the background flusher poisons the database: the writer that waits for the
/// flush, and every later write, fail at once with `Closed` naming the worker and the panic;
/// status shows it; reads go on; reopening recovers every acknowledged write.
#[test]
fn a_panicking_flusher_poisons_the_database() {
    use barq_core::ErrorKind;
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options {
        memtable_max_bytes: 4096,
        write_stall_timeout: std::time::Duration::from_secs(600),
        ..options()
    };
    let fp = FailPoints::default();
    let db = Database::builder(dir.path())
        .options(opts)
        .failpoints(fp.clone())
        .open()
        .expect("open");
    db.create_collection(CollectionConfig::new("c", 2, Metric::L2).expect("cfg"))
        .expect("create");
    fp.enable(barq_storage::FP_FLUSHER_PANIC);
    let mut acked = 0usize;
    let started = std::time::Instant::now();
    let err = loop {
        let doc = Document::new(format!("d{acked}"), vec![acked as f32, 1.0]);
        match db.upsert("c", &[doc]) {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 1_000_000, "writes never failed");
    };
    // Far sooner than the 600 s stall timeout: the poisoning wakes the stalled writer.
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    assert!(
        err.message().contains("barq-flush"),
        "names the worker: {err}"
    );
    assert!(
        err.message().contains("failpoint flusher:panic"),
        "says why: {err}"
    );
    let again = db
        .upsert("c", &[Document::new("late", vec![0.0, 0.0])])
        .expect_err("poisoned");
    assert_eq!(again.kind(), ErrorKind::Closed);
    assert!(db.poisoned().is_some_and(|p| p.contains("barq-flush")));
    let status = db.tiering().status().expect("status");
    assert!(status.poisoned.is_some_and(|p| p.contains("panicked")));
    // Reads still work.
    assert_eq!(
        db.get("c", "d0").expect("get").map(|d| d.vector),
        Some(vec![0.0, 1.0])
    );
    drop(db);
    let db = Database::open(dir.path(), options()).expect("reopen");
    assert_eq!(db.count("c").expect("count"), acked as u64);
    for i in 0..acked {
        assert!(
            db.get("c", &format!("d{i}")).expect("get").is_some(),
            "d{i}"
        );
    }
    assert_eq!(db.poisoned(), None);
    db.close().expect("close");
}
