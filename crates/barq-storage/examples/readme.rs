//! The embedding example of the README, compiled with the workspace so that it stays true.

use barq_core::{CollectionConfig, Document, Filter, Metric};
use barq_storage::{Database, Options, SearchRequest};

fn main() -> barq_core::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::open(dir.path(), Options::default())?;
    db.create_collection(CollectionConfig::new("docs", 3, Metric::Cosine)?)?;
    let payload = |lang: &str| serde_json::json!({"lang": lang}).as_object().cloned();
    db.upsert(
        "docs",
        &[
            Document {
                payload: payload("en"),
                ..Document::new("a", vec![1.0, 0.0, 0.0])
            },
            Document {
                payload: payload("de"),
                ..Document::new("b", vec![0.0, 1.0, 0.0])
            },
        ],
    )?;
    let hits = db.search("docs", &SearchRequest::new(vec![0.9, 0.1, 0.0], 1))?;
    assert_eq!(hits[0].id, "a");
    let german = Filter::from_json(&serde_json::json!(
        {"must": [{"key": "lang", "match": {"value": "de"}}]}))?;
    let hits = db.search(
        "docs",
        &SearchRequest::new(vec![0.9, 0.1, 0.0], 1).filter(german),
    )?;
    assert_eq!(hits[0].id, "b");
    db.close()?;
    Ok(())
}
