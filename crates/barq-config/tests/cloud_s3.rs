//! The cold tier against a real S3-compatible server (SeaweedFS, started by
//! `scripts/test-services.sh`): write → flush → offload → the objects are in the bucket (listed
//! with an independent client) → the segment files are gone locally → get and search return the
//! same → reopen → same → hydrate → same.
//!
//! Needs `BARQ_TEST_S3_ENDPOINT`, `BARQ_TEST_S3_BUCKET` and the AWS credential variables
//! (`eval "$(scripts/test-services.sh env)"`). Without them the test fails under `CI=true` and
//! is skipped, with a printed reason, elsewhere.

use std::collections::HashMap;
use std::sync::Arc;

use barq_core::{CollectionConfig, Document, Metric};
use barq_storage::tiering::TieringOptions;
use barq_storage::{Database, Durability, Options, SearchRequest, StorageTier};
use object_store::ObjectStore;

fn service() -> Option<(String, String)> {
    match (
        std::env::var("BARQ_TEST_S3_ENDPOINT"),
        std::env::var("BARQ_TEST_S3_BUCKET"),
    ) {
        (Ok(e), Ok(b)) => Some((e, b)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "BARQ_TEST_S3_ENDPOINT is not set: CI must start the S3 server (scripts/test-services.sh start)"
            )
        }
        _ => {
            eprintln!(
                "skipping: no S3 test server (run `eval \"$(scripts/test-services.sh env)\"` after `scripts/test-services.sh start`)"
            );
            None
        }
    }
}

fn list(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use futures::TryStreamExt;
        let p = object_store::path::Path::from(prefix);
        let mut keys: Vec<String> = store
            .list(Some(&p))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("list");
        keys.sort();
        keys
    })
}

#[test]
fn offload_to_s3_and_read_back() {
    let Some((endpoint, bucket)) = service() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = format!(
        "it-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    );
    let env: HashMap<String, String> = [
        ("BARQ_STORAGE_TYPE", "s3"),
        ("BARQ_S3_BUCKET", bucket.as_str()),
        ("BARQ_S3_ENDPOINT", endpoint.as_str()),
        ("BARQ_S3_ALLOW_HTTP", "true"),
        ("BARQ_S3_REGION", "us-east-1"),
        ("BARQ_S3_PREFIX", prefix.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let settings = barq_config::load_from(None, &env).expect("settings");
    let spec = barq_config::build_cold_store(&settings.storage, dir.path())
        .expect("build")
        .expect("s3 store");
    assert!(
        spec.description
            .starts_with(&format!("s3://{bucket}/{prefix}")),
        "{}",
        spec.description
    );
    let options = || Options {
        durability: Durability::Sync,
        background_compaction: false,
        tiering: TieringOptions {
            cold_store: Some(spec.clone()),
            maintenance_interval: None,
            ..TieringOptions::default()
        },
        ..Options::default()
    };
    let data = dir.path().join("data");
    let db = Database::open(&data, options()).expect("open against S3 (the startup probe passes)");
    db.create_collection(CollectionConfig::new("docs", 16, Metric::Cosine).expect("cfg"))
        .expect("create");
    let docs: Vec<Document> = (0..2000)
        .map(|i| {
            Document::new(
                format!("d{i}"),
                (0..16).map(|d| ((i * 7 + d) % 23) as f32 + 1.0).collect(),
            )
        })
        .collect();
    db.upsert("docs", &docs[..1000]).expect("upsert");
    db.flush("docs").expect("flush");
    db.upsert("docs", &docs[1000..]).expect("upsert");
    db.delete("docs", "d3").expect("delete");
    db.flush("docs").expect("flush");
    let observe = |db: &Database| {
        let gets: Vec<_> = [0usize, 3, 999, 1000, 1999]
            .iter()
            .map(|i| db.get("docs", &format!("d{i}")).expect("get"))
            .collect();
        let hits = db
            .search("docs", &SearchRequest::new(docs[42].vector.clone(), 10))
            .expect("search");
        (gets, hits, db.count("docs").expect("count"))
    };
    let before = observe(&db);
    for s in db.tiering().segments("docs").expect("segments") {
        db.tiering()
            .offload_segment("docs", s.id)
            .expect("offload to S3");
    }
    // An independent client sees the objects in the bucket.
    let independent: Arc<dyn ObjectStore> = Arc::new(
        object_store::aws::AmazonS3Builder::from_env()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(&bucket)
            .build()
            .expect("independent client"),
    );
    let keys = list(&independent, &prefix);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("{prefix}/docs/segments/")) && k.ends_with(".seg")),
        "{keys:?}"
    );
    // The segment files left the data directory; metadata and WAL stay.
    let local: Vec<_> = std::fs::read_dir(data.join("collections/docs/segments"))
        .expect("ls")
        .collect();
    assert!(local.is_empty(), "segment files gone locally");
    assert!(data.join("MANIFEST").exists() && data.join("collections/docs/wal").exists());
    assert_eq!(observe(&db), before, "read back from S3");
    db.close().expect("close");
    let db = Database::open(&data, options()).expect("reopen");
    assert_eq!(observe(&db), before, "after reopening");
    for s in db.tiering().segments("docs").expect("segments") {
        assert_eq!(s.tier, StorageTier::Cold);
        db.tiering()
            .hydrate_segment("docs", s.id)
            .expect("hydrate from S3");
    }
    assert_eq!(observe(&db), before, "after hydration");
    assert_eq!(
        list(&independent, &prefix).len(),
        2,
        "hydration keeps the remote copies"
    );
    db.close().expect("close");
}
