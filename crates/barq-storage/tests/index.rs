//! Indexed segments through the engine: compaction writes them, background passes index large
//! segments, searches go through the index unless `exact`, deletes and updates hold, hot and cold
//! answer alike, and a crash during an index build loses nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use barq_core::{CollectionConfig, Document, ErrorKind, Metric, SearchHit};
use barq_storage::{Database, Durability, FailPoints, Options, SearchRequest, StorageTier};
use barq_testkit::Lcg as Data;

const DIM: usize = 64;

/// A seeded gaussian-ish mixture: 40 centres, rows spread around them.
fn centres() -> Vec<Vec<f32>> {
    let mut d = Data(99);
    (0..40)
        .map(|_| (0..DIM).map(|_| d.gauss() * 3.0).collect())
        .collect()
}

fn vector(i: usize, centres: &[Vec<f32>]) -> Vec<f32> {
    let mut d = Data(i as u64 * 7919 + 1);
    let c = &centres[i % centres.len()];
    c.iter().map(|x| x + d.gauss()).collect()
}

fn options(index_min_rows: u64) -> Options {
    Options {
        durability: Durability::None,
        background_compaction: false,
        index_min_rows,
        index: barq_storage::IndexParams {
            target_cluster_rows: 250,
            ..Default::default()
        },
        recall_sample_rate: 0.0,
        ..Options::default()
    }
}

fn load(db: &Database, metric: Metric, rows: usize) {
    let cs = centres();
    db.create_collection(CollectionConfig::new("c", DIM as u32, metric).expect("cfg"))
        .expect("create");
    for chunk in (0..rows).collect::<Vec<_>>().chunks(2000) {
        let docs: Vec<Document> = chunk
            .iter()
            .map(|&i| Document::new(format!("d{i}"), vector(i, &cs)))
            .collect();
        db.upsert("c", &docs).expect("upsert");
        db.flush("c").expect("flush");
    }
}

fn queries(n: usize) -> Vec<Vec<f32>> {
    let cs = centres();
    (0..n).map(|i| vector(1_000_000 + i * 13, &cs)).collect()
}

fn ids(hits: &[SearchHit]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

fn is_indexed(dir: &std::path::Path, db: &Database) -> Vec<bool> {
    db.tiering()
        .segments("c")
        .expect("segments")
        .iter()
        .map(|s| {
            let path = dir.join("collections/c/segments").join(&s.file_name);
            let bytes = std::fs::read(path).expect("segment file");
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) >= 2
        })
        .collect()
}

#[test]
fn compaction_indexes_and_search_recalls_what_exact_search_finds() {
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::open(dir.path(), options(5000)).expect("open");
        load(&db, metric, 12_000);
        assert_eq!(
            is_indexed(dir.path(), &db),
            vec![false; 6],
            "flushes stay plain"
        );
        db.compact("c").expect("compact");
        assert_eq!(is_indexed(dir.path(), &db), vec![true], "{metric}");
        let (mut hits, mut total) = (0, 0);
        for q in queries(40) {
            let exact = db
                .search("c", &SearchRequest::new(q.clone(), 10).exact(true))
                .expect("exact");
            let ann = db.search("c", &SearchRequest::new(q, 10)).expect("ann");
            assert_eq!(ann.len(), 10);
            let truth: HashSet<_> = ids(&exact).into_iter().collect();
            hits += ann.iter().filter(|h| truth.contains(&h.id)).count();
            total += 10;
            // Every returned score is the exact one (re-ranked with the f32 vector).
            for h in &ann {
                if let Some(e) = exact.iter().find(|e| e.id == h.id) {
                    assert!((e.score - h.score).abs() <= 1e-4 * (1.0 + e.score.abs()));
                }
            }
        }
        let recall = hits as f32 / total as f32;
        assert!(
            recall >= 0.95,
            "{metric}: recall@10 {recall} at the default target"
        );
        // A full probe is exact.
        for q in queries(5) {
            let exact = db
                .search("c", &SearchRequest::new(q.clone(), 10).exact(true))
                .expect("exact");
            let all = db
                .search("c", &SearchRequest::new(q, 10).nprobe(10_000))
                .expect("all clusters");
            assert_eq!(ids(&all), ids(&exact), "{metric}: probing every cluster");
            for (a, b) in all.iter().zip(&exact) {
                assert!((a.score - b.score).abs() <= 1e-4 * (1.0 + b.score.abs()));
            }
        }
    }
}

#[test]
fn exact_search_over_indexed_segments_equals_search_without_indexes() {
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let indexed = Database::open(a.path(), options(3000)).expect("open");
    let plain = Database::open(b.path(), options(u64::MAX)).expect("open");
    for db in [&indexed, &plain] {
        load(db, Metric::L2, 8000);
        db.delete_many("c", &["d1", "d2", "d3"]).expect("delete");
        db.upsert("c", &[Document::new("d4", vec![0.5; DIM])])
            .expect("update");
        db.compact("c").expect("compact");
    }
    assert_eq!(is_indexed(a.path(), &indexed), vec![true]);
    assert_eq!(is_indexed(b.path(), &plain), vec![false]);
    for q in queries(20) {
        let (x, stats) = indexed
            .search_explained("c", &SearchRequest::new(q.clone(), 15).exact(true))
            .expect("exact");
        let s = &stats.segments[0];
        assert_eq!(s.plan, "exact");
        assert_eq!(s.rows_scanned, 8000 - 3, "every live row of the segment");
        assert_eq!(stats.rows_scanned, s.rows_scanned);
        let y = plain
            .search("c", &SearchRequest::new(q, 15))
            .expect("plain");
        assert_eq!(x, y);
    }
    for i in 0..8000 {
        let id = format!("d{i}");
        assert_eq!(
            indexed.get("c", &id).expect("get"),
            plain.get("c", &id).expect("get"),
            "{id}"
        );
    }
}

#[test]
fn deletes_and_updates_over_an_indexed_segment_are_never_returned_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), options(3000)).expect("open");
    load(&db, Metric::L2, 8000);
    db.compact("c").expect("compact");
    let q = queries(1).remove(0);
    let first = db
        .search("c", &SearchRequest::new(q.clone(), 20))
        .expect("search");
    // Delete half of the hits, move the other half far away.
    let (gone, moved): (Vec<_>, Vec<_>) = first.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let gone: Vec<&str> = gone.iter().map(|(_, h)| h.id.as_str()).collect();
    db.delete_many("c", &gone).expect("delete");
    let far: Vec<Document> = moved
        .iter()
        .map(|(_, h)| Document::new(h.id.clone(), vec![1000.0; DIM]))
        .collect();
    db.upsert("c", &far).expect("update");
    let check = |db: &Database, when: &str| {
        let hits = db
            .search("c", &SearchRequest::new(q.clone(), 20))
            .expect("search");
        for h in &hits {
            assert!(
                !gone.contains(&h.id.as_str()),
                "{when}: deleted {} returned",
                h.id
            );
            assert!(
                !far.iter().any(|d| d.id == h.id),
                "{when}: {} returned with its old vector",
                h.id
            );
        }
        assert_eq!(hits.len(), 20, "{when}");
    };
    check(&db, "in the memtable");
    db.flush("c").expect("flush");
    check(&db, "in a newer segment");
    db.compact("c").expect("compact");
    check(&db, "compacted");
}

#[test]
fn background_passes_index_large_flushed_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), options(1500)).expect("open");
    load(&db, Metric::L2, 4000);
    assert_eq!(is_indexed(dir.path(), &db), vec![false, false]);
    let stats = db.collection_stats("c").expect("stats");
    assert_eq!((stats.indexed_segments, stats.unindexed_rows), (0, 4000));
    let done = db.build_indexes("c").expect("index");
    assert_eq!(done.len(), 2);
    assert_eq!(is_indexed(dir.path(), &db), vec![true, true]);
    let stats = db.collection_stats("c").expect("stats");
    assert_eq!((stats.indexed_segments, stats.unindexed_rows), (2, 0));
    assert!(stats.index_bytes > 0);
    for s in &stats.segment_list {
        assert_eq!(s.indexed, Some(true));
        assert!(s.clusters.is_some_and(|c| c >= 2), "{s:?}");
        assert!(s.index_bytes > 0 && s.index_bytes < s.bytes, "{s:?}");
    }
    assert!(db.build_indexes("c").expect("again").is_empty());
    for i in (0..4000).step_by(37) {
        assert!(db.get("c", &format!("d{i}")).expect("get").is_some());
    }
}

#[test]
fn background_passes_wait_index_delay_before_indexing_a_flushed_segment() {
    use barq_core::{Clock, SystemClock};
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(barq_testkit::ManualClock::new(SystemClock.now_ms()));
    let db = Database::builder(dir.path())
        .options(Options {
            background_compaction: true,
            compaction_check_interval: Duration::from_millis(20),
            index_delay: Duration::from_secs(60),
            ..options(1500)
        })
        .clock(clock.clone())
        .open()
        .expect("open");
    load(&db, Metric::L2, 4000);
    let indexed = || -> Vec<Option<bool>> {
        let stats = db.collection_stats("c").expect("stats");
        stats.segment_list.iter().map(|s| s.indexed).collect()
    };
    // Many background passes run meanwhile; none indexes a segment sealed under a minute ago.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(indexed(), vec![Some(false), Some(false)]);
    clock.advance(Duration::from_secs(61));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while indexed() != vec![Some(true), Some(true)] {
        assert!(
            std::time::Instant::now() < deadline,
            "background passes did not index the segments once they were old enough"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in (0..4000).step_by(37) {
        assert!(db.get("c", &format!("d{i}")).expect("get").is_some());
    }
    db.close().expect("close");
}

#[test]
fn cold_indexed_search_answers_as_hot_and_fetches_under_2_percent_of_the_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path(), options(5000)).expect("open");
    // Large enough that the hits' id pages (32 KiB each) are a small part of the segment, as
    // they are at production sizes.
    load(&db, Metric::L2, 100_000);
    db.compact("c").expect("compact");
    let qs = queries(10);
    let hot: Vec<_> = qs
        .iter()
        .map(|q| {
            let (hits, stats) = db
                .search_explained("c", &SearchRequest::new(q.clone(), 10))
                .expect("hot");
            assert_eq!(stats.cold_requests, 0, "a hot search reads no store");
            assert_eq!(stats.segments.len(), 1);
            assert_eq!(stats.segments[0].plan, "index");
            assert_eq!(stats.segments[0].tier, StorageTier::Hot);
            hits
        })
        .collect();
    let seg = db.tiering().segments("c").expect("segments")[0].clone();
    db.tiering().offload_segment("c", seg.id).expect("offload");
    assert_eq!(
        db.tiering().segments("c").expect("s")[0].tier,
        StorageTier::Cold
    );
    assert_eq!(
        db.tiering().status().expect("status").counters.heads_kept,
        1,
        "the offload keeps the cold copy's footer and index head locally"
    );
    drop(db);
    // A fresh process: the range cache is emptied at open, the kept metadata stays.
    let db = Database::open(dir.path(), options(5000)).expect("reopen");
    let before = db.tiering().status().expect("status").counters;
    let (first, stats) = db
        .search_explained("c", &SearchRequest::new(qs[0].clone(), 10))
        .expect("cold");
    let after = db.tiering().status().expect("status").counters;
    assert_eq!(first, hot[0], "cold answers as hot");
    let s = &stats.segments[0];
    assert_eq!((s.plan, s.tier), ("index", StorageTier::Cold));
    assert!(s.clusters_probed >= 1 && s.clusters_probed < s.clusters);
    assert!(s.rows_reranked >= 10 && s.rows_reranked <= 40, "{s:?}");
    assert_eq!(
        (stats.cold_requests, stats.cold_bytes),
        (
            after.remote_requests - before.remote_requests,
            after.remote_bytes_fetched - before.remote_bytes_fetched
        ),
        "the search's own tally matches the store's counters"
    );
    assert!(
        stats.cold_bytes * 50 < seg.size_bytes,
        "a cold indexed search fetched {} of {} bytes",
        stats.cold_bytes,
        seg.size_bytes
    );
    // Extents (one per probed cluster), re-rank rows (coalesced into at most 16 reads), the
    // hits' id pages (at most one each): no footer, head, tombstone or row-map reads.
    assert!(
        stats.cold_requests <= u64::from(s.clusters_probed) + 16 + 10,
        "{stats:?}"
    );
    for (q, want) in qs.iter().zip(&hot) {
        let got = db
            .search("c", &SearchRequest::new(q.clone(), 10))
            .expect("cold");
        assert_eq!(&got, want);
    }
    // The same queries again are answered from the cache: extents, id pages and re-rank rows.
    for (q, want) in qs.iter().zip(&hot) {
        let (got, again) = db
            .search_explained("c", &SearchRequest::new(q.clone(), 10))
            .expect("cold");
        assert_eq!(&got, want);
        assert_eq!(
            again.cold_requests, 0,
            "a repeated cold query fetches nothing: {again:?}"
        );
    }
    // Without the kept metadata (lost, or damaged) the search fetches it, answers the same, and
    // keeps it again.
    drop(db);
    std::fs::remove_dir_all(dir.path().join("kept")).expect("remove kept");
    let db = Database::open(dir.path(), options(5000)).expect("reopen");
    assert_eq!(
        db.tiering().status().expect("status").counters.heads_kept,
        0
    );
    let (again, refetched) = db
        .search_explained("c", &SearchRequest::new(qs[0].clone(), 10))
        .expect("cold");
    assert_eq!(again, hot[0]);
    assert!(
        refetched.cold_requests > stats.cold_requests,
        "{refetched:?}"
    );
    assert_eq!(
        db.tiering().status().expect("status").counters.heads_kept,
        1
    );
    drop(db);
    let db = Database::open(dir.path(), options(5000)).expect("reopen");
    let (_, third) = db
        .search_explained("c", &SearchRequest::new(qs[0].clone(), 10))
        .expect("cold");
    assert!(third.cold_requests < refetched.cold_requests, "{third:?}");
    // Hydrating the segment drops its kept metadata.
    db.tiering().hydrate_segment("c", seg.id).expect("hydrate");
    assert_eq!(
        db.tiering().status().expect("status").counters.heads_kept,
        0
    );
}

#[test]
fn a_failed_index_build_loses_nothing_and_leaves_no_staging_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fp = FailPoints::default();
    {
        let db = Database::builder(dir.path())
            .options(options(2000))
            .failpoints(fp.clone())
            .open()
            .expect("open");
        load(&db, Metric::L2, 4000);
        fp.enable(barq_storage::FP_INDEX_BEFORE_BUILD);
        db.compact("c").expect_err("the build fails");
        assert_eq!(
            is_indexed(dir.path(), &db),
            vec![false, false],
            "inputs untouched"
        );
    }
    let seg_dir = dir.path().join("collections/c/segments");
    let db = Database::open(dir.path(), options(2000)).expect("reopen");
    let leftovers: Vec<_> = std::fs::read_dir(&seg_dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for i in 0..4000 {
        assert!(
            db.get("c", &format!("d{i}")).expect("get").is_some(),
            "d{i}"
        );
    }
    db.compact("c").expect("compact");
    assert_eq!(is_indexed(dir.path(), &db), vec![true]);
    let e = db
        .search("c", &SearchRequest::new(vec![0.0; DIM], 5).recall(1.5))
        .expect_err("bad recall");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("recall must be in (0, 1]"), "{e}");
    let e = db
        .search("c", &SearchRequest::new(vec![0.0; DIM], 5).nprobe(0))
        .expect_err("bad nprobe");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn sampled_searches_are_rerun_exactly_and_their_recall_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(
        dir.path(),
        Options {
            recall_sample_rate: 0.5,
            ..options(3000)
        },
    )
    .expect("open");
    load(&db, Metric::L2, 8000);
    db.compact("c").expect("compact");
    assert_eq!(
        db.collection_stats("c").expect("stats").sampled_recall,
        None
    );
    let (mut found, mut wanted) = (0usize, 0usize);
    // Points between the centres, whose neighbours spread over several clusters; one probe then
    // gives a recall measurably below 1.
    let mut d = Data(5);
    let between: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..DIM).map(|_| d.gauss() * 3.0).collect())
        .collect();
    for (i, q) in between.into_iter().enumerate() {
        let ann = db
            .search("c", &SearchRequest::new(q.clone(), 10).nprobe(1))
            .expect("ann");
        // Exact searches are never sampled.
        let exact = db
            .search("c", &SearchRequest::new(q, 10).exact(true))
            .expect("exact");
        let want = (i as u64).div_ceil(2);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while db.collection_stats("c").expect("stats").recall_samples < want {
            assert!(
                std::time::Instant::now() < deadline,
                "sample {want} never ran"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if i % 2 == 1 {
            // Every second indexed search is sampled.
            let truth: HashSet<_> = ids(&exact).into_iter().collect();
            found += ann.iter().filter(|h| truth.contains(&h.id)).count();
            wanted += exact.len();
        }
    }
    let stats = db.collection_stats("c").expect("stats");
    assert_eq!(stats.recall_samples, 10);
    let measured = stats.sampled_recall.expect("a recall");
    let expected = found as f64 / wanted as f64;
    assert!(
        (measured - expected).abs() < 1e-12,
        "sampled {measured}, computed here {expected}"
    );
    assert!(
        measured < 1.0,
        "one probe misses some neighbours: {measured}"
    );
}
