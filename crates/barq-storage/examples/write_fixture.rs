//! Writes the compatibility fixture of the current on-disk formats (segment, WAL, manifest,
//! local cold store) into a directory, deterministically but for creation times. `tests/compat.rs` opens the committed
//! copies of every released version; run this once per new format version:
//!
//! ```sh
//! cargo run -p barq-storage --example write_fixture -- crates/barq-storage/tests/fixtures/v3
//! ```
//!
//! What it holds (the compat test checks exactly this): collection `docs` (dimension 4, l2)
//! with two segments, each indexed (IVF, 16-row clusters), the older one cold (in `cold/`) and
//! the newer one hot, and writes only in the WAL; collection `empty` (dimension 2, cosine)
//! with nothing in it. (The `v1` fixture, written before segments carried an index, holds the
//! same documents in two plain segments.)

use barq_core::{CollectionConfig, Document, Metric, Payload};
use barq_storage::{Database, Durability, Options};

/// The document `i` of the fixture.
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

fn main() -> barq_core::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: write_fixture DIR (a new directory)");
    let options = Options {
        durability: Durability::Sync,
        background_compaction: false,
        index_min_rows: 50,
        index: barq_storage::IndexParams {
            target_cluster_rows: 16,
            ..Default::default()
        },
        ..Options::default()
    };
    let db = Database::open(&dir, options)?;
    db.create_collection(CollectionConfig::new("docs", 4, Metric::L2)?)?;
    db.create_collection(CollectionConfig::new("empty", 2, Metric::Cosine)?)?;
    // The first segment: doc-0000..doc-0099, indexed, then offloaded to the local cold store.
    db.upsert("docs", &(0..100).map(document).collect::<Vec<_>>())?;
    db.flush("docs")?;
    // The second: doc-0100..doc-0149, a new version of doc-0005, the tombstone of doc-0007.
    db.upsert("docs", &(100..150).map(document).collect::<Vec<_>>())?;
    db.upsert(
        "docs",
        &[Document::new("doc-0005", vec![5.0, 5.0, 5.0, 5.0])],
    )?;
    db.delete("docs", "doc-0007")?;
    db.flush("docs")?;
    db.build_indexes("docs")?;
    let first = db.tiering().segments("docs")?[0].id;
    db.tiering().offload_segment("docs", first)?;
    // Only in the WAL: doc-0150..doc-0159 and the tombstone of doc-0100.
    db.upsert("docs", &(150..160).map(document).collect::<Vec<_>>())?;
    db.delete("docs", "doc-0100")?;
    db.close()?;
    // What a fixture must not carry: the lock, the range cache, the kept cold metadata (a
    // cache too), access statistics.
    let dir = std::path::Path::new(&dir);
    for f in ["LOCK", "ACCESS", "ORPHANS"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    for d in ["cache", "kept"] {
        let _ = std::fs::remove_dir_all(dir.join(d));
    }
    println!("wrote {}", dir.display());
    Ok(())
}
