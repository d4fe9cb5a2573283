//! What a first cold search reads to find the rows shadowed across segments: with cold
//! segments whose ids do not overlap, about one id page per segment (for its last id) besides
//! the blocks the scan needs, not every id page; and the shadowed rows are still found when
//! ids do overlap.

use std::sync::Arc;

use barq_core::{CollectionConfig, Document, Metric};
use barq_storage::segment::format::BlockKind;
use barq_storage::segment::{MmapSource, Segment};
use barq_storage::{Database, SearchRequest};

mod common;
use common::*;

const WIDE_DIM: usize = 32;
/// Rows per segment.
const ROWS: usize = 30_000;
/// One segment of `ROWS` ids per prefix, flushed in this order.
const PREFIXES: [&str; 4] = ["a", "b", "c", "d"];
/// The bytes a segment's open reads: its tail (`TAIL_READ_BYTES` in the reader).
const TAIL_BYTES: u64 = 64 * 1024;
const K: usize = 10;

/// A distinct vector for each `n` (its first component is `n`).
fn doc_vector(n: usize) -> Vec<f32> {
    (0..WIDE_DIM)
        .map(|d| {
            if d == 0 {
                n as f32
            } else {
                ((n * 131 + d * 7) % 1009) as f32
            }
        })
        .collect()
}

fn doc_id(segment: usize, n: usize) -> String {
    format!("{}-{n:06}", PREFIXES[segment])
}

fn hits(db: &Database, query: Vec<f32>, k: usize) -> Vec<(String, f32)> {
    db.search("c", &SearchRequest::new(query, k))
        .expect("search")
        .into_iter()
        .map(|h| (h.id, h.score))
        .collect()
}

/// What the segments' footers say: (vector bytes, id-page bytes, the bytes a first search may
/// read besides vectors and id pages it needs, the largest id page).
fn block_sizes(dir: &std::path::Path, db: &Database) -> (u64, u64, u64, u64) {
    let (mut vectors, mut ids, mut other, mut page) = (0, 0, 0, 0);
    for s in db.tiering().segments("c").expect("segments") {
        let path = dir.join("collections/c/segments").join(&s.file_name);
        let seg = Segment::open(Arc::new(MmapSource::open(&path).expect("map"))).expect("open");
        let f = seg.footer();
        vectors += f.block(BlockKind::Vectors).expect("vectors").len;
        ids += f.block(BlockKind::IdPages).expect("id pages").len;
        other += TAIL_BYTES + f.block(BlockKind::Tombstones).expect("tombstones").len;
        page = f
            .pages
            .iter()
            .map(|p| u64::from(p.len))
            .max()
            .unwrap_or(0)
            .max(page);
    }
    (vectors, ids, other, page)
}

#[test]
fn a_first_cold_search_reads_one_id_page_per_disjoint_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (faulty, store) = faulty_store();
    let db = open(dir.path(), Some(Arc::clone(&store))).expect("open");
    db.create_collection(CollectionConfig::new("c", WIDE_DIM as u32, Metric::L2).expect("cfg"))
        .expect("create");
    for s in 0..PREFIXES.len() {
        for chunk in (0..ROWS).collect::<Vec<_>>().chunks(5_000) {
            let docs: Vec<Document> = chunk
                .iter()
                .map(|&n| Document::new(doc_id(s, n), doc_vector(s * ROWS + n)))
                .collect();
            db.upsert("c", &docs).expect("upsert");
        }
        db.flush("c").expect("flush");
    }
    let queries = [7, ROWS + 123, 3 * ROWS + 29_999];
    let hot: Vec<Vec<(String, f32)>> = queries
        .iter()
        .map(|&q| hits(&db, doc_vector(q), K))
        .collect();
    assert_eq!(hot[1][0].0, doc_id(1, 123));
    let (vectors, id_pages, other, page) = block_sizes(dir.path(), &db);
    let entries = db.tiering().segments("c").expect("segments");
    assert_eq!(entries.len(), PREFIXES.len());
    for s in &entries {
        db.tiering().offload_segment("c", s.id).expect("offload");
    }
    db.close().expect("close");

    // Reopened: an empty cache, no cold segment opened yet, no dead bitmaps.
    let db = open(dir.path(), Some(Arc::clone(&store))).expect("reopen");
    let before = faulty.bytes_read();
    assert_eq!(hits(&db, doc_vector(queries[1]), K), hot[1]);
    let read = faulty.bytes_read() - before;
    // Besides the vectors: per segment its tail, its tombstones and (for its last id) its last
    // id page, with one page to spare; and the page of each hit, read to resolve its id.
    let allowed = other + PREFIXES.len() as u64 * 2 * page + K as u64 * page;
    assert!(read >= vectors, "read {read} bytes, vectors are {vectors}");
    assert!(
        read - vectors <= allowed,
        "read {read} bytes: vectors {vectors} + {} more, at most {allowed} expected \
         (all id pages are {id_pages} bytes)",
        read - vectors
    );
    assert!(
        read - vectors < id_pages / 2,
        "read {read} bytes: not every id page ({id_pages} bytes) was fetched"
    );
    for (q, want) in queries.iter().zip(&hot) {
        assert_eq!(&hits(&db, doc_vector(*q), K), want, "query {q}");
    }

    // Ids that do overlap: a newer (hot) segment overwrites one id of "b" and deletes one of
    // "c"; the rows they shadow in the cold segments are found.
    let far = vec![1.0e6f32; WIDE_DIM];
    db.upsert("c", &[Document::new(doc_id(1, 123), far.clone())])
        .expect("overwrite");
    db.delete("c", &doc_id(2, 7)).expect("delete");
    db.flush("c").expect("flush");
    assert_eq!(
        db.count("c").expect("count"),
        (PREFIXES.len() * ROWS - 1) as u64
    );
    let top = hits(&db, doc_vector(ROWS + 123), 1);
    assert_ne!(top[0].0, doc_id(1, 123), "the old version is shadowed");
    assert_eq!(hits(&db, far, 1)[0].0, doc_id(1, 123));
    let top = hits(&db, doc_vector(2 * ROWS + 7), 1);
    assert_ne!(top[0].0, doc_id(2, 7), "the deleted row is shadowed");
    assert!(db.get("c", &doc_id(2, 7)).expect("get").is_none());
    assert_eq!(
        db.get("c", &doc_id(3, 5))
            .expect("get")
            .expect("doc")
            .vector,
        doc_vector(3 * ROWS + 5)
    );
}
