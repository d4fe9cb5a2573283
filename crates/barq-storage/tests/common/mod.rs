//! Helpers shared by the tiering test files: a database with two segments and a memtable
//! holding overwrites and deletes, what a reader can observe of it, and listings.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use barq_core::{CollectionConfig, Document, Metric, Payload, SearchHit};
use barq_storage::tiering::{ColdStoreSpec, TieringOptions};
use barq_storage::{Database, DatabaseBuilder, Durability, Options, SearchRequest};
use barq_testkit::FaultyStore;
use object_store::ObjectStore;
use object_store::memory::InMemory;

pub const DIM: usize = 8;

/// The test settings: no fsync, no background compaction, maintenance only on demand, no
/// upload on seal.
pub fn options() -> Options {
    Options {
        durability: Durability::None,
        background_compaction: false,
        tiering: TieringOptions {
            maintenance_interval: None,
            upload_on_seal: Some(false),
            ..TieringOptions::default()
        },
        ..Options::default()
    }
}

/// A builder for a database in `dir` with [`options`] and, when given, `store` as its cold tier
/// (prefix `barq-test`); `None`: the default local cold tier.
pub fn builder(dir: &Path, store: Option<Arc<dyn ObjectStore>>) -> DatabaseBuilder {
    let b = Database::builder(dir).options(options());
    match store {
        Some(store) => b.cold_store(ColdStoreSpec {
            store,
            prefix: "barq-test".into(),
            description: "test store".into(),
        }),
        None => b,
    }
}

/// Open the database in `dir` with [`options`] and `store` (see [`builder`]).
pub fn open(dir: &Path, store: Option<Arc<dyn ObjectStore>>) -> barq_core::Result<Database> {
    builder(dir, store).open()
}

/// A fault-injecting store over an in-memory one, and the same store as the engine sees it.
pub fn faulty_store() -> (Arc<FaultyStore>, Arc<dyn ObjectStore>) {
    let faulty = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    (faulty, store)
}

pub fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((i * 7 + d * 3) % 17) as f32 - 8.0)
        .collect()
}

pub fn payload(i: usize) -> Payload {
    let mut p = Payload::new();
    p.insert("i".into(), (i as u64).into());
    p
}

/// Two flushed segments plus a memtable; some overwrites and deletes across them.
/// Segment 1 (the older) holds d0..d199; segment 2 holds d200..d299, the tombstone of d5 and
/// the new version of d6.
pub fn load(db: &Database) {
    db.create_collection(CollectionConfig::new("c", DIM as u32, Metric::L2).expect("cfg"))
        .expect("create");
    let docs: Vec<Document> = (0..300)
        .map(|i| Document::new(format!("d{i}"), vector(i)).with_payload(payload(i)))
        .collect();
    db.upsert("c", &docs[..200]).expect("upsert");
    db.flush("c").expect("flush");
    db.upsert("c", &docs[200..]).expect("upsert");
    db.delete("c", "d5").expect("delete");
    db.upsert("c", &[Document::new("d6", vector(1000))])
        .expect("overwrite");
    db.flush("c").expect("flush");
}

pub type Observation = (BTreeMap<String, Option<Document>>, u64, Vec<Vec<SearchHit>>);

/// Everything a reader can see: every get, the count, three searches.
pub fn observe(db: &Database) -> Observation {
    let gets = (0..310)
        .map(|i| (format!("d{i}"), db.get("c", &format!("d{i}")).expect("get")))
        .collect();
    let searches = [0usize, 42, 1000]
        .iter()
        .map(|q| {
            db.search("c", &SearchRequest::new(vector(*q), 15).with_payload(true))
                .expect("search")
        })
        .collect();
    (gets, db.count("c").expect("count"), searches)
}

/// The `*.seg` files (and anything else) in a directory, sorted; empty if it does not exist.
pub fn files_in(dir: &Path) -> Vec<String> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("ls {}: {e}", dir.display()),
    };
    let mut v: Vec<String> = rd
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Segment files of collection "c" under a data (or warm) directory.
pub fn segment_files(root: &Path) -> Vec<String> {
    files_in(&root.join("collections/c/segments"))
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every key in `store` (use `faulty.inner()` to look behind the faults).
pub fn list_keys(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    barq_testkit::list_keys(store, None)
}
