//! Writes the compatibility fixture of the current on-disk formats (segment, WAL, manifest,
//! local cold store) into a directory, deterministically. `tests/compat.rs` opens the committed
//! copies of every released version; run this once per new format version:
//!
//! ```sh
//! cargo run -p barq-storage --example write_fixture -- crates/barq-storage/tests/fixtures/v1
//! ```
//!
//! What it holds (the compat test checks exactly this): collection `docs` (dimension 4, l2)
//! with segment 1 (cold: in `cold/`), segment 2 (hot) and writes only in the WAL; collection
//! `empty` (dimension 2, cosine) with nothing in it.

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
        ..Options::default()
    };
    let db = Database::open(&dir, options)?;
    db.create_collection(CollectionConfig::new("docs", 4, Metric::L2)?)?;
    db.create_collection(CollectionConfig::new("empty", 2, Metric::Cosine)?)?;
    // Segment 1: doc-0000..doc-0099, then offloaded to the local cold store.
    db.upsert("docs", &(0..100).map(document).collect::<Vec<_>>())?;
    db.flush("docs")?;
    // Segment 2: doc-0100..doc-0149, a new version of doc-0005, the tombstone of doc-0007.
    db.upsert("docs", &(100..150).map(document).collect::<Vec<_>>())?;
    db.upsert(
        "docs",
        &[Document::new("doc-0005", vec![5.0, 5.0, 5.0, 5.0])],
    )?;
    db.delete("docs", "doc-0007")?;
    db.flush("docs")?;
    db.tiering().offload_segment("docs", 1)?;
    // Only in the WAL: doc-0150..doc-0159 and the tombstone of doc-0100.
    db.upsert("docs", &(150..160).map(document).collect::<Vec<_>>())?;
    db.delete("docs", "doc-0100")?;
    db.close()?;
    // What a fixture must not carry: the lock, the range cache, access statistics.
    let dir = std::path::Path::new(&dir);
    for f in ["LOCK", "ACCESS", "ORPHANS"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let _ = std::fs::remove_dir_all(dir.join("cache"));
    println!("wrote {}", dir.display());
    Ok(())
}
