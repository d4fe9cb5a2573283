//! Public-API tests of the engine: collections, validation, reads across memtable and segments,
//! reopen, locking, sweeping, concurrency.

use std::sync::Arc;

use barq_core::{CollectionConfig, Document, ErrorKind, Metric, Payload};
use barq_storage::{Database, Durability, Options, SearchRequest};

fn opts() -> Options {
    Options {
        durability: Durability::None,
        ..Options::default()
    }
}

fn open(dir: &std::path::Path) -> Database {
    Database::open(dir, opts()).expect("open")
}

fn doc(id: &str, v: &[f32]) -> Document {
    Document::new(id, v.to_vec())
}

fn payload(n: i64) -> Payload {
    let mut p = Payload::new();
    p.insert("n".into(), n.into());
    p
}

#[test]
fn database_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Database>();
}

#[test]
fn collections_create_list_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    db.create_collection(CollectionConfig::new("b", 4, Metric::L2).expect("cfg"))
        .expect("create");
    db.create_collection(CollectionConfig::new("a", 2, Metric::Dot).expect("cfg"))
        .expect("create");
    let err = db
        .create_collection(CollectionConfig::new("a", 2, Metric::Dot).expect("cfg"))
        .expect_err("dup");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.message().contains("already exists"), "{err}");
    let names: Vec<String> = db.list_collections().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["a", "b"]);
    db.upsert("a", &[doc("x", &[1.0, 2.0])]).expect("upsert");
    db.flush("a").expect("flush");
    db.drop_collection("a").expect("drop");
    assert_eq!(
        db.get("a", "x").expect_err("gone").kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        db.drop_collection("a").expect_err("gone").kind(),
        ErrorKind::NotFound
    );
    assert!(!dir.path().join("collections/a").exists());
    // Re-creating a dropped name starts empty.
    db.create_collection(CollectionConfig::new("a", 3, Metric::Cosine).expect("cfg"))
        .expect("create");
    assert_eq!(db.count("a").expect("count"), 0);
    db.close().expect("close");
    let db = open(dir.path());
    let cfgs = db.list_collections();
    assert_eq!(cfgs.len(), 2);
    assert_eq!(db.collection_config("a").expect("cfg").dimension, 3);
}

#[test]
fn invalid_input_is_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    assert_eq!(
        db.create_collection(CollectionConfig {
            name: "../x".into(),
            dimension: 3,
            metric: Metric::L2,
            indexed_fields: Vec::new(),
        })
        .expect_err("name")
        .kind(),
        ErrorKind::InvalidArgument
    );
    db.create_collection(CollectionConfig::new("docs", 3, Metric::Cosine).expect("cfg"))
        .expect("create");
    db.upsert("docs", &[doc("keep", &[1.0, 0.0, 0.0])])
        .expect("upsert");
    let bad_batches: Vec<(Vec<Document>, &str)> = vec![
        (
            vec![doc("ok", &[1.0, 0.0, 0.0]), doc("bad", &[1.0; 768])],
            "dimension mismatch: collection \"docs\" expects 3, got 768",
        ),
        (
            vec![
                doc("ok", &[1.0, 0.0, 0.0]),
                doc("nan", &[f32::NAN, 0.0, 0.0]),
            ],
            "only finite numbers",
        ),
        (
            vec![doc(&"x".repeat(257), &[1.0, 0.0, 0.0])],
            "257 bytes, the limit is 256",
        ),
        (vec![doc("", &[1.0, 0.0, 0.0])], "the id is empty"),
    ];
    for (batch, expect) in bad_batches {
        let err = db.upsert("docs", &batch).expect_err("invalid");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(
            err.message().contains(expect),
            "{err} should contain {expect}"
        );
        assert_eq!(
            db.get("docs", "ok").expect("get"),
            None,
            "nothing of a rejected batch is written"
        );
    }
    let mut big = Payload::new();
    big.insert("s".into(), "y".repeat(70_000).into());
    let err = db
        .upsert("docs", &[doc("p", &[1.0, 0.0, 0.0]).with_payload(big)])
        .expect_err("payload");
    assert!(err.message().contains("limit is 65536"), "{err}");
    let err = db
        .search("docs", &SearchRequest::new(vec![1.0, 0.0], 3))
        .expect_err("query dim");
    assert!(err.message().starts_with("dimension mismatch"), "{err}");
    assert!(
        db.search("docs", &SearchRequest::new(vec![1.0, 0.0, 0.0], 0))
            .is_err()
    );
    assert!(
        db.search("docs", &SearchRequest::new(vec![1.0, 0.0, 0.0], 1001))
            .is_err()
    );
    assert_eq!(
        db.upsert("nope", &[doc("a", &[1.0])])
            .expect_err("missing")
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(db.count("docs").expect("count"), 1);
    db.close().expect("close");
    let db = open(dir.path());
    assert_eq!(
        db.count("docs").expect("count"),
        1,
        "nothing rejected reached the WAL"
    );
}

/// Overwrites and deletes resolve by newest sequence number across memtable and segments.
#[test]
fn newest_version_wins_across_memtable_and_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    db.create_collection(CollectionConfig::new("c", 2, Metric::L2).expect("cfg"))
        .expect("create");
    db.upsert(
        "c",
        &[
            doc("a", &[0.0, 0.0]),
            doc("b", &[10.0, 0.0]),
            doc("c", &[20.0, 0.0]),
        ],
    )
    .expect("upsert");
    db.flush("c").expect("flush");
    db.upsert("c", &[doc("a", &[100.0, 0.0]).with_payload(payload(2))])
        .expect("overwrite");
    db.delete("c", "b").expect("delete");
    let check = |db: &Database, stage: &str| {
        assert_eq!(
            db.get("c", "a").expect("get").expect("a").vector,
            vec![100.0, 0.0],
            "{stage}"
        );
        assert_eq!(
            db.get("c", "a").expect("get").expect("a").payload,
            Some(payload(2)),
            "{stage}"
        );
        assert_eq!(db.get("c", "b").expect("get"), None, "{stage}");
        assert_eq!(db.count("c").expect("count"), 2, "{stage}");
        let hits = db
            .search(
                "c",
                &SearchRequest::new(vec![0.0, 0.0], 10).with_payload(true),
            )
            .expect("search");
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["c", "a"], "{stage}: old a and deleted b never show");
        assert!(
            (hits[0].score - 20.0).abs() < 1e-4,
            "{stage}: l2 score is the distance"
        );
        assert_eq!(hits[1].payload, Some(payload(2)), "{stage}");
    };
    check(&db, "memtable over segment");
    db.flush("c").expect("flush");
    check(&db, "two segments");
    db.compact("c").expect("compact");
    check(&db, "compacted");
    assert_eq!(
        db.collection_stats("c").expect("stats").segment_rows,
        2,
        "compaction dropped the tombstone and old a"
    );
    db.close().expect("close");
    let db = open(dir.path());
    check(&db, "reopened");
}

#[test]
fn search_matches_brute_force_for_every_metric() {
    for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        db.create_collection(CollectionConfig::new("v", 8, metric).expect("cfg"))
            .expect("create");
        let mut model = std::collections::BTreeMap::new();
        let mut x = 12345u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2001) as f32 / 1000.0 - 1.0
        };
        for round in 0..4 {
            let batch: Vec<Document> = (0..300)
                .map(|i| {
                    doc(
                        &format!("d{}", (i * 7 + round * 101) % 700),
                        &(0..8).map(|_| rnd()).collect::<Vec<_>>(),
                    )
                })
                .collect();
            db.upsert("v", &batch).expect("upsert");
            for d in &batch {
                model.insert(d.id.clone(), d.vector.clone());
            }
            for i in 0..20 {
                let id = format!("d{}", (i * 13 + round * 5) % 700);
                db.delete("v", &id).expect("delete");
                model.remove(&id);
            }
            if round < 3 {
                db.flush("v").expect("flush");
            }
        }
        let q: Vec<f32> = (0..8).map(|_| rnd()).collect();
        let kernel = barq_core::Kernel::new(metric, &q);
        let mut expect: Vec<(f32, String)> = model
            .iter()
            .map(|(id, v)| (kernel.rank(v, barq_core::norm(v)), id.clone()))
            .collect();
        expect.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let hits = db
            .search("v", &SearchRequest::new(q.clone(), 25))
            .expect("search");
        let got: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        let want: Vec<&str> = expect.iter().take(25).map(|e| e.1.as_str()).collect();
        assert_eq!(got, want, "{metric}");
        for (h, e) in hits.iter().zip(&expect) {
            assert!(
                (h.score - kernel.score(e.0)).abs() < 1e-4,
                "{metric}: score"
            );
        }
        assert_eq!(
            db.count("v").expect("count"),
            model.len() as u64,
            "{metric}"
        );
    }
}

#[test]
fn reopen_replays_the_wal_and_keeps_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Database::open(dir.path(), Options::default()).expect("open");
        db.create_collection(CollectionConfig::new("c", 3, Metric::Cosine).expect("cfg"))
            .expect("create");
        db.upsert(
            "c",
            &[doc("seg", &[1.0, 2.0, 3.0]).with_payload(payload(1))],
        )
        .expect("upsert");
        db.flush("c").expect("flush");
        db.upsert("c", &[doc("wal", &[3.0, 2.0, 1.0])])
            .expect("upsert");
        // dropped without close: same as a crash for what is on disk in sync mode
        std::mem::forget(db);
    }
    // The forgotten handle still holds the lock in this process; a crash would release it.
    // Simulate the crash by copying the directory.
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), copy.path());
    std::fs::remove_file(copy.path().join("LOCK")).expect("rm lock");
    let db = open(copy.path());
    assert_eq!(
        db.get("c", "seg").expect("get").expect("seg").payload,
        Some(payload(1))
    );
    assert_eq!(
        db.get("c", "wal").expect("get").expect("wal").vector,
        vec![3.0, 2.0, 1.0]
    );
    assert_eq!(db.count("c").expect("count"), 2);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).expect("ls") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

#[test]
fn a_second_open_fails_naming_the_holder_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let err = Database::open(dir.path(), opts()).expect_err("locked");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.message()
            .contains(&format!("locked by process {}", std::process::id())),
        "{err}"
    );
    db.close().expect("close");
    open(dir.path()).close().expect("lock released on close");
}

#[test]
fn startup_sweeps_temporary_and_unreferenced_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    db.create_collection(CollectionConfig::new("c", 1, Metric::L2).expect("cfg"))
        .expect("create");
    db.upsert("c", &[doc("a", &[1.0])]).expect("upsert");
    db.flush("c").expect("flush");
    db.close().expect("close");
    let segs = dir.path().join("collections/c/segments");
    std::fs::write(segs.join("00000000000000000099.seg"), b"orphan").expect("write");
    std::fs::write(segs.join("00000000000000000100.seg.tmp"), b"half").expect("write");
    std::fs::write(dir.path().join("MANIFEST.tmp"), b"half").expect("write");
    std::fs::create_dir_all(dir.path().join("collections/ghost/wal")).expect("mkdir");
    let db = open(dir.path());
    let names: Vec<String> = std::fs::read_dir(&segs)
        .expect("ls")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["00000000000000000001.seg"]);
    assert!(!dir.path().join("MANIFEST.tmp").exists());
    assert!(!dir.path().join("collections/ghost").exists());
    assert_eq!(db.get("c", "a").expect("get").expect("a").vector, vec![1.0]);
}

#[test]
fn a_missing_segment_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    db.create_collection(CollectionConfig::new("c", 1, Metric::L2).expect("cfg"))
        .expect("create");
    db.upsert("c", &[doc("a", &[1.0])]).expect("upsert");
    db.flush("c").expect("flush");
    db.close().expect("close");
    std::fs::remove_file(
        dir.path()
            .join("collections/c/segments/00000000000000000001.seg"),
    )
    .expect("rm");
    let err = Database::open(dir.path(), opts()).expect_err("missing");
    assert_eq!(err.kind(), ErrorKind::DataCorruption);
    assert!(
        matches!(
            err.find_source::<barq_storage::SegmentError>(),
            Some(barq_storage::SegmentError::Missing { id: 1, .. })
        ),
        "{err}"
    );
}

#[test]
fn memtable_over_the_limit_is_flushed_in_the_background_and_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        memtable_max_bytes: 16 * 1024,
        compaction_check_interval: std::time::Duration::from_millis(10),
        compaction_min_segments: 2,
        compaction_size_ratio: 1e9,
        ..opts()
    };
    let db = Database::open(dir.path(), options).expect("open");
    db.create_collection(CollectionConfig::new("c", 16, Metric::Dot).expect("cfg"))
        .expect("create");
    for i in 0..200 {
        let batch: Vec<Document> = (0..10)
            .map(|j| doc(&format!("{i}-{j}"), &[i as f32; 16]))
            .collect();
        db.upsert("c", &batch).expect("upsert");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let s = db.collection_stats("c").expect("stats");
        if s.segments == 1 && s.memtable_rows == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no background flush/compaction: {s:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(db.count("c").expect("count"), 2000);
    let manifest = std::fs::read_to_string(dir.path().join("MANIFEST")).expect("manifest");
    assert!(
        !manifest.contains("\"id\": 1,"),
        "the first flushed segment was compacted away"
    );
    assert!(
        db.collection_stats("c").expect("stats").wal_bytes < 64 * 1024,
        "wal truncated after flushes"
    );
}

#[test]
fn readers_run_concurrently_with_writers_and_flushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(
        Database::open(
            dir.path(),
            Options {
                memtable_max_bytes: 64 * 1024,
                ..Options::default()
            },
        )
        .expect("open"),
    );
    db.create_collection(CollectionConfig::new("c", 8, Metric::L2).expect("cfg"))
        .expect("create");
    std::thread::scope(|s| {
        for w in 0..4 {
            let db = Arc::clone(&db);
            s.spawn(move || {
                for i in 0..100 {
                    let batch: Vec<Document> = (0..20)
                        .map(|j| doc(&format!("w{w}-{i}-{j}"), &[(i * j) as f32; 8]))
                        .collect();
                    db.upsert("c", &batch).expect("upsert");
                }
            });
        }
        for _ in 0..2 {
            let db = Arc::clone(&db);
            s.spawn(move || {
                for i in 0..100 {
                    let hits = db
                        .search("c", &SearchRequest::new(vec![i as f32; 8], 5))
                        .expect("search");
                    assert!(hits.len() <= 5);
                    let _ = db.get("c", "w0-0-0").expect("get");
                }
            });
        }
    });
    assert_eq!(db.count("c").expect("count"), 8000);
    for w in 0..4 {
        assert_eq!(
            db.get("c", &format!("w{w}-99-19"))
                .expect("get")
                .expect("doc")
                .vector,
            vec![1881.0; 8]
        );
    }
}

#[test]
fn interval_durability_syncs_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(
        dir.path(),
        Options {
            durability: Durability::Interval(std::time::Duration::from_millis(5)),
            ..Options::default()
        },
    )
    .expect("open");
    db.create_collection(CollectionConfig::new("c", 2, Metric::L2).expect("cfg"))
        .expect("create");
    db.upsert("c", &[doc("a", &[1.0, 2.0])]).expect("upsert");
    let stats = db.collection_stats("c").expect("stats");
    assert!(stats.wal_bytes > 12);
    db.close().expect("close");
    let db = open(dir.path());
    assert!(db.get("c", "a").expect("get").is_some());
}

#[test]
fn a_directory_that_is_not_a_data_directory_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), b"mine").expect("write");
    std::fs::write(dir.path().join("draft.tmp"), b"mine too").expect("write");
    let err = Database::open(dir.path(), opts()).expect_err("foreign");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.message().contains("not a Barq DB data directory"),
        "{err}"
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["draft.tmp", "notes.txt"],
        "nothing written or swept"
    );
}

#[test]
fn writers_stall_then_fail_cleanly_when_flushing_cannot_keep_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        memtable_max_bytes: 4096,
        write_stall_timeout: std::time::Duration::from_millis(300),
        ..opts()
    };
    let fp = barq_storage::FailPoints::default();
    let db = Database::builder(dir.path())
        .options(options)
        .failpoints(fp.clone())
        .open()
        .expect("open");
    db.create_collection(CollectionConfig::new("c", 64, Metric::L2).expect("cfg"))
        .expect("create");
    // Make every flush fail, so the memtable can only grow.
    fp.enable(barq_storage::FP_FLUSH_AFTER_SEGMENT_WRITE);
    let mut acked = 0;
    let err = loop {
        match db.upsert("c", &[doc(&format!("d{acked}"), &[1.0; 64])]) {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 10_000, "back-pressure never engaged");
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.message().contains("stalled") && err.message().contains("failpoint"),
        "{err}"
    );
    fp.disable(barq_storage::FP_FLUSH_AFTER_SEGMENT_WRITE);
    db.flush("c").expect("flush recovers");
    assert_eq!(
        db.count("c").expect("count"),
        acked,
        "every acknowledged write, nothing of the refused one"
    );
    db.upsert("c", &[doc("after", &[2.0; 64])])
        .expect("writes resume");
}

/// `delete_reporting` says which ids existed (in memtables or segments) and which did not; a
/// bad id refuses the whole call with nothing deleted.
#[test]
fn delete_reporting_names_deleted_and_missing_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    db.create_collection(CollectionConfig::new("c", 2, Metric::L2).expect("cfg"))
        .expect("create");
    db.upsert("c", &[doc("seg", &[1.0, 0.0])]).expect("upsert");
    db.flush("c").expect("flush");
    db.upsert("c", &[doc("mem", &[0.0, 1.0])]).expect("upsert");
    let err = db
        .delete_reporting("c", &["seg", "bad\u{0}id"])
        .expect_err("bad id");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(db.count("c").expect("count"), 2, "nothing deleted");
    let r = db
        .delete_reporting("c", &["mem", "nope", "seg"])
        .expect("delete");
    assert_eq!(r.deleted, ["mem", "seg"]);
    assert_eq!(r.missing, ["nope"]);
    assert_eq!(db.count("c").expect("count"), 0);
    let again = db.delete_reporting("c", &["seg"]).expect("delete");
    assert_eq!(
        (again.deleted.len(), again.missing),
        (0, vec!["seg".to_owned()])
    );
}

#[test]
fn a_memtable_holding_writes_is_flushed_once_its_oldest_write_is_max_unflushed_age_old() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let age = Duration::from_secs(2);
    let db = Database::open(
        dir.path(),
        Options {
            max_unflushed_age: Some(age),
            ..opts()
        },
    )
    .expect("open");
    db.create_collection(CollectionConfig::new("c", 2, Metric::L2).expect("cfg"))
        .expect("create");
    let segments = || db.collection_stats("c").expect("stats").segments;
    let first = Instant::now();
    db.upsert("c", &[doc("a", &[1.0, 0.0])]).expect("upsert");
    std::thread::sleep(Duration::from_millis(200));
    db.upsert("c", &[doc("b", &[0.0, 1.0])]).expect("upsert");
    // The flusher polls every few ms; a quarter of the age is not enough.
    std::thread::sleep(Duration::from_millis(300));
    if first.elapsed() < age {
        assert_eq!(
            segments(),
            0,
            "flushed before the oldest write was {age:?} old"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while segments() == 0 {
        assert!(
            Instant::now() < deadline,
            "the old memtable was not flushed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        first.elapsed() >= age,
        "flushed after {:?}",
        first.elapsed()
    );
    assert_eq!(segments(), 1, "both writes in one segment");
    // An empty memtable is not flushed again.
    std::thread::sleep(age + Duration::from_millis(500));
    assert_eq!(segments(), 1);
    db.upsert("c", &[doc("c", &[1.0, 1.0])]).expect("upsert");
    db.close().expect("close");
    let db = open(dir.path());
    for id in ["a", "b", "c"] {
        assert!(db.get("c", id).expect("get").is_some(), "{id} after reopen");
    }
}
