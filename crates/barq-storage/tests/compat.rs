//! Every released on-disk format keeps opening. `tests/fixtures/v1`, `v2` and `v3` are
//! data directories written by `examples/write_fixture.rs`: v1 with segment format 1 (plain
//! segments), v2 with segment format 2 (segments in cluster order with an IVF index), v3 with
//! segment format 3 (format 2 with the rows' entries inside the cluster extents), all with
//! WAL format 1 and manifest format 1: a cold segment (in the local cold store), a hot one,
//! writes only in the WAL. A copy is opened with today's code, every document is checked and
//! searched (through the index where there is one), then rewritten by a compaction.

use std::path::Path;

use barq_core::{Document, Metric, Payload};
use barq_storage::{Database, Options, SearchRequest, StorageTier};

/// The document `i` as `write_fixture` wrote it.
fn document(i: u32) -> Document {
    let v = i as f32;
    let mut doc = Document::new(format!("doc-{i:04}"), vec![v, -v, v * 0.5, 1.0]);
    if i.is_multiple_of(3) {
        let mut p = Payload::new();
        p.insert("n".into(), i.into());
        p.insert("tag".into(), format!("t{}", i % 5).into());
        doc.payload = Some(p);
    }
    doc
}

/// What the fixture must hold: every document by id (`None`: deleted).
fn expected() -> Vec<(String, Option<Document>)> {
    (0..160)
        .map(|i| {
            let id = format!("doc-{i:04}");
            let doc = match i {
                5 => Some(Document::new("doc-0005", vec![5.0; 4])),
                7 | 100 => None,
                _ => Some(document(i)),
            };
            (id, doc)
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("ls fixture") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

fn check(db: &Database) {
    for (id, want) in expected() {
        assert_eq!(db.get("docs", &id).expect("get"), want, "{id}");
    }
    assert_eq!(db.count("docs").expect("count"), 158);
    for i in [0u32, 42, 99, 123, 155] {
        let q = document(i).vector;
        let hits = db
            .search("docs", &SearchRequest::new(q, 3))
            .expect("search");
        assert_eq!(hits[0].id, format!("doc-{i:04}"), "nearest to {i}");
        assert_eq!(hits[0].score, 0.0);
    }
}

#[test]
fn format_v1_fixture_opens_reads_and_compacts() {
    fixture_opens_reads_and_compacts("v1", false);
}

#[test]
fn format_v2_fixture_opens_searches_its_indexes_and_compacts() {
    fixture_opens_reads_and_compacts("v2", true);
}

#[test]
fn format_v3_fixture_opens_searches_its_indexes_and_compacts() {
    fixture_opens_reads_and_compacts("v3", true);
}

fn fixture_opens_reads_and_compacts(version: &str, indexed: bool) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version);
    assert!(
        fixture.join("MANIFEST").exists(),
        "the committed fixture is missing: {}",
        fixture.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture, dir.path());
    let db = Database::open(dir.path(), Options::default()).expect("open the fixture");
    let mut configs = db.list_collections();
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    let shape: Vec<(String, u32, Metric)> = configs
        .into_iter()
        .map(|c| (c.name, c.dimension, c.metric))
        .collect();
    assert_eq!(
        shape,
        [
            ("docs".to_owned(), 4, Metric::L2),
            ("empty".to_owned(), 2, Metric::Cosine)
        ]
    );
    let tiers: Vec<StorageTier> = db
        .tiering()
        .segments("docs")
        .expect("segments")
        .iter()
        .map(|s| s.tier)
        .collect();
    assert_eq!(tiers, [StorageTier::Cold, StorageTier::Hot]);
    assert_eq!(db.count("empty").expect("count"), 0);
    let stats = db.collection_stats("docs").expect("stats");
    assert_eq!(stats.indexed_segments, if indexed { 2 } else { 0 });
    let (_, explain) = db
        .search_explained("docs", &SearchRequest::new(document(42).vector, 3))
        .expect("search");
    let plans: Vec<&str> = explain.segments.iter().map(|s| s.plan).collect();
    let plan = if indexed { "index" } else { "exact" };
    assert_eq!(plans, [plan, plan], "{version}");
    check(&db);
    // Today's code rewrites the old segments (and the WAL's writes) into a new one.
    db.compact("docs").expect("compact");
    let segments = db.tiering().segments("docs").expect("segments");
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].tier, StorageTier::Hot);
    check(&db);
    db.close().expect("close");
    let db = Database::open(dir.path(), Options::default()).expect("reopen");
    check(&db);
    db.close().expect("close");
}
