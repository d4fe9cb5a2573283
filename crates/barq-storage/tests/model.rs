//! Model test: random sequences of upsert / delete / flush / compact / reopen / offload /
//! hydrate / pin, checked after every step against a `BTreeMap` model (get of every id, count,
//! and search: `exact`, and through the indexes that compaction and background passes build
//! on segments of a few rows). Moves go to the default cold store (a local directory) and race the
//! background compactor, so a move may find its segment busy or already merged away: those
//! answers (`Conflict`, `NotFound`) are allowed, nothing else.

use std::collections::BTreeMap;

use barq_core::{CollectionConfig, Document, ErrorKind, Kernel, Metric, Payload};
use barq_storage::{Database, Durability, Options, SearchRequest, StorageTier};
use proptest::prelude::*;

const DIM: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Upsert(Vec<(u8, [i8; DIM], bool)>),
    Delete(Vec<u8>),
    Flush,
    CompactAll,
    CompactTiered,
    Reopen,
    /// Offload the segment at this index (modulo the count).
    Offload(u8),
    /// Hydrate the segment at this index.
    Hydrate(u8),
    /// Pin the collection (`None`) or the segment at this index; `false` unpins.
    Pin(Option<u8>, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0u8..40, any::<[i8; DIM]>(), any::<bool>()), 1..12).prop_map(Op::Upsert),
        2 => prop::collection::vec(0u8..40, 1..4).prop_map(Op::Delete),
        2 => Just(Op::Flush),
        1 => Just(Op::CompactAll),
        1 => Just(Op::CompactTiered),
        1 => Just(Op::Reopen),
        2 => any::<u8>().prop_map(Op::Offload),
        1 => any::<u8>().prop_map(Op::Hydrate),
        1 => (prop::option::of(any::<u8>()), any::<bool>()).prop_map(|(s, p)| Op::Pin(s, p)),
    ]
}

fn options() -> Options {
    Options {
        durability: Durability::None,
        // tiny memtables and eager compaction so background work interleaves with the ops
        memtable_max_bytes: 2048,
        compaction_check_interval: std::time::Duration::from_millis(5),
        compaction_min_segments: 2,
        // Index every segment of 8 live rows or more, so that `exact` is checked over indexed
        // segments (format version 2) as well as plain ones.
        index_min_rows: 8,
        index: barq_storage::IndexParams {
            target_cluster_rows: 16,
            ..Default::default()
        },
        ..Options::default()
    }
}

fn vector(v: &[i8; DIM]) -> Vec<f32> {
    v.iter().map(|x| f32::from(*x) / 16.0).collect()
}

fn check(
    db: &Database,
    model: &BTreeMap<String, (Vec<f32>, Option<Payload>)>,
) -> Result<(), TestCaseError> {
    for i in 0u8..40 {
        let id = format!("id{i}");
        let got = db
            .get("m", &id)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = model.get(&id);
        prop_assert_eq!(
            got.as_ref().map(|d| &d.vector),
            want.map(|w| &w.0),
            "get {}",
            id
        );
        prop_assert_eq!(
            got.as_ref().and_then(|d| d.payload.clone()),
            want.and_then(|w| w.1.clone()),
            "payload {}",
            id
        );
    }
    prop_assert_eq!(
        db.count("m")
            .map_err(|e| TestCaseError::fail(e.to_string()))?,
        model.len() as u64
    );
    let q = vec![0.3f32, -0.2, 0.5];
    let kernel = Kernel::new(Metric::L2, &q);
    let mut want: Vec<(f32, &str)> = model
        .iter()
        .map(|(id, (v, _))| (kernel.rank(v, 0.0), id.as_str()))
        .collect();
    want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    want.truncate(10);
    // Exact search is the brute force over the model; so is probing every cluster here, where
    // a segment holds at most 40 live rows and the re-rank takes k × 4 = 40 candidates.
    for req in [
        SearchRequest::new(q.clone(), 10).exact(true),
        SearchRequest::new(q.clone(), 10).nprobe(10_000),
    ] {
        let hits = db
            .search("m", &req)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got: Vec<(f32, &str)> = hits.iter().map(|h| (h.score, h.id.as_str())).collect();
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert!(
                (g.0 - kernel.score(w.0)).abs() < 1e-5,
                "score {:?} vs {:?} (exact: {})",
                got,
                want,
                req.exact
            );
            // same score → same id after the tie-break by id
            prop_assert_eq!(g.1, w.1, "search order {:?} vs {:?}", got, want);
        }
    }
    Ok(())
}

/// The id of the segment at index `i` (modulo the count), if there is any.
fn nth_segment(db: &Database, i: u8) -> Option<u64> {
    let segs = db.tiering().segments("m").expect("segments");
    (!segs.is_empty()).then(|| segs[usize::from(i) % segs.len()].id)
}

/// A move or pin that lost a race with the background compactor is fine; any other error is not.
fn allow_race(r: barq_core::Result<()>) -> Result<(), TestCaseError> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) => Ok(()),
        Err(e) => Err(TestCaseError::fail(format!("{:?}: {e}", e.kind()))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = Database::open(dir.path(), options()).expect("open");
        db.create_collection(CollectionConfig::new("m", DIM as u32, Metric::L2).expect("cfg")).expect("create");
        let mut model: BTreeMap<String, (Vec<f32>, Option<Payload>)> = BTreeMap::new();
        for op in ops {
            match op.clone() {
                Op::Upsert(rows) => {
                    let docs: Vec<Document> = rows
                        .iter()
                        .map(|(i, v, with_payload)| {
                            let mut d = Document::new(format!("id{i}"), vector(v));
                            if *with_payload {
                                let mut p = Payload::new();
                                p.insert("v".into(), i64::from(v[0]).into());
                                d = d.with_payload(p);
                            }
                            d
                        })
                        .collect();
                    db.upsert("m", &docs).expect("upsert");
                    for d in docs {
                        model.insert(d.id, (d.vector, d.payload));
                    }
                }
                Op::Delete(ids) => {
                    let ids: Vec<String> = ids.iter().map(|i| format!("id{i}")).collect();
                    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                    db.delete_many("m", &refs).expect("delete");
                    for id in ids {
                        model.remove(&id);
                    }
                }
                Op::Flush => { db.flush("m").expect("flush"); }
                Op::CompactAll => { db.compact("m").expect("compact"); }
                Op::CompactTiered => { db.compact_size_tiered("m").expect("compact"); }
                Op::Reopen => {
                    db.close().expect("close");
                    db = Database::open(dir.path(), options()).expect("reopen");
                }
                Op::Offload(i) | Op::Hydrate(i) => {
                    let to = if matches!(op, Op::Offload(_)) { StorageTier::Cold } else { StorageTier::Hot };
                    if let Some(id) = nth_segment(&db, i) {
                        allow_race(db.tiering().move_segment("m", id, to).map(|_| ()))?;
                    }
                }
                Op::Pin(segment, pinned) => {
                    let segment = match segment {
                        None => None,
                        Some(i) => match nth_segment(&db, i) { Some(id) => Some(id), None => continue },
                    };
                    let r = if pinned { db.tiering().pin("m", segment) } else { db.tiering().unpin("m", segment) };
                    allow_race(r)?;
                }
            }
            check(&db, &model)?;
        }
    }
}
