//! Helpers shared by the cloud test files: which test servers are configured (failing under
//! `CI=true` when one is missing, skipping with a printed reason elsewhere), cold stores built the
//! way production builds them (`barq_config::load_from` + `build_cold_store`), independent
//! clients to look into the buckets, a data set with two segments, and what a reader can observe.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use barq_core::{CollectionConfig, Document, Metric};
use barq_storage::tiering::{ColdStoreSpec, TieringOptions};
use barq_storage::{Database, Durability, Options, SearchRequest, StorageTier};
use object_store::{ObjectStore, ObjectStoreExt};

/// The values of `vars` if all are set. Otherwise: a panic naming the missing ones under
/// `CI=true` (CI must start the servers), else `None` after printing why the test is skipped.
pub fn require(service: &str, vars: &[&str]) -> Option<Vec<String>> {
    let values: Vec<Option<String>> = vars
        .iter()
        .map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .collect();
    let missing: Vec<&str> = vars
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    if missing.is_empty() {
        return Some(values.into_iter().flatten().collect());
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} not set: CI must start the {service} test server \
             (scripts/test-services.sh start; eval \"$(scripts/test-services.sh env)\")",
            missing.join(", ")
        );
    }
    eprintln!(
        "skipping: no {service} test server ({} not set; run `scripts/test-services.sh start` \
         and `eval \"$(scripts/test-services.sh env)\"`)",
        missing.join(", ")
    );
    None
}

/// SeaweedFS: endpoint and bucket (credentials: the `AWS_*` variables).
pub fn s3_service() -> Option<(String, String)> {
    let v = require(
        "S3 (SeaweedFS)",
        &[
            "BARQ_TEST_S3_ENDPOINT",
            "BARQ_TEST_S3_BUCKET",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ],
    )?;
    Some((v[0].clone(), v[1].clone()))
}

/// Azurite: the container (the client reaches it through `AZURE_STORAGE_USE_EMULATOR=true` and
/// `AZURITE_BLOB_STORAGE_URL`, the standard variables, as a user would configure it).
pub fn azure_service() -> Option<String> {
    let v = require(
        "Azure (Azurite)",
        &[
            "BARQ_TEST_AZURITE_URL",
            "BARQ_TEST_AZURE_CONTAINER",
            "AZURE_STORAGE_USE_EMULATOR",
            "AZURITE_BLOB_STORAGE_URL",
        ],
    )?;
    assert_eq!(
        v[0], v[3],
        "AZURITE_BLOB_STORAGE_URL must name the test server BARQ_TEST_AZURITE_URL"
    );
    Some(v[1].clone())
}

/// fake-gcs-server: base URL and bucket (the client reaches it through the
/// `GOOGLE_SERVICE_ACCOUNT_KEY` the test-services script exports: base URL, OAuth off).
pub fn gcs_service() -> Option<(String, String)> {
    let v = require(
        "GCS (fake-gcs-server)",
        &[
            "BARQ_TEST_GCS_URL",
            "BARQ_TEST_GCS_BUCKET",
            "GOOGLE_SERVICE_ACCOUNT_KEY",
        ],
    )?;
    assert!(
        v[2].contains(&v[0]),
        "GOOGLE_SERVICE_ACCOUNT_KEY must name the test server BARQ_TEST_GCS_URL as gcs_base_url"
    );
    Some((v[0].clone(), v[1].clone()))
}

/// A key prefix no other run or test uses.
pub fn unique_prefix(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "it-{tag}-{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The cold store for these `BARQ_*` variables, through `load_from` and `build_cold_store`.
pub fn spec_from_env(vars: &[(&str, &str)], data_dir: &Path) -> ColdStoreSpec {
    let settings = barq_config::load_from(None, &env(vars)).expect("settings");
    barq_config::build_cold_store(&settings.storage, data_dir)
        .expect("build the cold store")
        .expect("a configured cold store")
}

/// SeaweedFS through `BARQ_STORAGE_TYPE=s3` and the `BARQ_S3_*` variables.
pub fn s3_spec(endpoint: &str, bucket: &str, prefix: &str, data_dir: &Path) -> ColdStoreSpec {
    spec_from_env(
        &[
            ("BARQ_STORAGE_TYPE", "s3"),
            ("BARQ_S3_BUCKET", bucket),
            ("BARQ_S3_ENDPOINT", endpoint),
            ("BARQ_S3_ALLOW_HTTP", "true"),
            ("BARQ_S3_REGION", "us-east-1"),
            ("BARQ_S3_PREFIX", prefix),
        ],
        data_dir,
    )
}

/// Azurite through `BARQ_STORAGE_TYPE=azure` and the `BARQ_AZURE_*` variables.
pub fn azure_spec(container: &str, prefix: &str, data_dir: &Path) -> ColdStoreSpec {
    spec_from_env(
        &[
            ("BARQ_STORAGE_TYPE", "azure"),
            ("BARQ_AZURE_CONTAINER", container),
            ("BARQ_AZURE_PREFIX", prefix),
        ],
        data_dir,
    )
}

/// fake-gcs-server through the URL form `BARQ_COLD_STORE_URL=gs://bucket/prefix`; plain http
/// needs allow-http (its variable is named for S3 but applies to every provider).
pub fn gcs_spec(bucket: &str, prefix: &str, data_dir: &Path) -> ColdStoreSpec {
    let url = format!("gs://{bucket}/{prefix}");
    spec_from_env(
        &[
            ("BARQ_COLD_STORE_URL", url.as_str()),
            ("BARQ_S3_ALLOW_HTTP", "true"),
        ],
        data_dir,
    )
}

/// A local directory through `BARQ_COLD_STORE_URL=file://DIR`.
pub fn local_spec(dir: &Path, prefix: &str) -> ColdStoreSpec {
    let url = format!("file://{}", dir.display());
    let mut spec = spec_from_env(&[("BARQ_COLD_STORE_URL", url.as_str())], dir);
    spec.prefix = prefix.to_owned();
    spec
}

/// An S3 client built directly with object_store, not through Barq.
pub fn s3_independent(endpoint: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        object_store::aws::AmazonS3Builder::from_env()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .build()
            .expect("independent S3 client"),
    )
}

/// An Azurite client built directly with object_store, not through Barq.
pub fn azure_independent(container: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        object_store::azure::MicrosoftAzureBuilder::new()
            .with_use_emulator(true)
            .with_container_name(container)
            .build()
            .expect("independent Azure client"),
    )
}

/// A fake-gcs-server client built directly with object_store, not through Barq.
pub fn gcs_independent(url: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    let key = format!(
        r#"{{"gcs_base_url":"{url}","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}}"#
    );
    Arc::new(
        object_store::gcp::GoogleCloudStorageBuilder::new()
            .with_bucket_name(bucket)
            .with_service_account_key(key)
            .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
            .build()
            .expect("independent GCS client"),
    )
}

/// Place an object in fake-gcs-server through its own JSON upload API (object_store's GCS
/// client speaks the XML API, whose writes the emulator refuses).
pub fn gcs_upload(url: &str, bucket: &str, key: &str, body: Vec<u8>) {
    runtime().block_on(async {
        // Barq's keys use only [a-z0-9._/-]: '/' is the one character to escape in a query.
        let name = key.replace('/', "%2F");
        let resp = reqwest::Client::new()
            .post(format!(
                "{url}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"
            ))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .expect("upload to fake-gcs-server");
        let status = resp.status();
        assert!(
            status.is_success(),
            "fake-gcs-server upload of {key}: {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    });
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every key under `prefix`, sorted.
pub fn list(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    barq_testkit::list_keys(store, Some(prefix))
}

/// The whole object at `key`.
pub fn read_object(store: &Arc<dyn ObjectStore>, key: &str) -> Vec<u8> {
    runtime().block_on(async {
        let p = object_store::path::Path::from(key);
        store
            .get(&p)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body")
            .to_vec()
    })
}

/// Database options with no background work (no maintenance, no upload on seal).
pub fn options() -> Options {
    Options {
        durability: Durability::Sync,
        background_compaction: false,
        tiering: TieringOptions {
            maintenance_interval: None,
            upload_on_seal: Some(false),
            ..TieringOptions::default()
        },
        ..Options::default()
    }
}

/// Open the database in `data` on this cold store with [`options`].
pub fn open(data: &Path, spec: &ColdStoreSpec) -> barq_core::Result<Database> {
    Database::builder(data)
        .options(options())
        .cold_store(spec.clone())
        .open()
}

pub const COLLECTION: &str = "docs";
pub const DIM: usize = 16;

pub fn vector(i: usize) -> Vec<f32> {
    (0..DIM).map(|d| ((i * 7 + d) % 23) as f32 + 1.0).collect()
}

/// Collection "docs": segment 1 holds d0..d999, segment 2 d1000..d1999 and the tombstone of d3.
pub fn load(db: &Database) {
    db.create_collection(
        CollectionConfig::new(COLLECTION, DIM as u32, Metric::Cosine).expect("cfg"),
    )
    .expect("create");
    let docs: Vec<Document> = (0..2000)
        .map(|i| Document::new(format!("d{i}"), vector(i)))
        .collect();
    db.upsert(COLLECTION, &docs[..1000]).expect("upsert");
    db.flush(COLLECTION).expect("flush");
    db.upsert(COLLECTION, &docs[1000..]).expect("upsert");
    db.delete(COLLECTION, "d3").expect("delete");
    db.flush(COLLECTION).expect("flush");
}

pub type Observation = (Vec<Option<Document>>, Vec<barq_core::SearchHit>, u64);

/// Some gets (in both segments, a deleted one), a search, the count.
pub fn observe(db: &Database) -> Observation {
    let gets = [0usize, 3, 999, 1000, 1999, 2500]
        .iter()
        .map(|i| db.get(COLLECTION, &format!("d{i}")).expect("get"))
        .collect();
    let hits = db
        .search(COLLECTION, &SearchRequest::new(vector(42), 10))
        .expect("search");
    (gets, hits, db.count(COLLECTION).expect("count"))
}

/// The files in a data directory's segment folder of "docs".
pub fn local_segment_files(data: &Path) -> Vec<String> {
    let dir = data.join("collections").join(COLLECTION).join("segments");
    let mut v: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("ls {}: {e}", dir.display()),
    };
    v.sort();
    v
}

/// The remote keys the manifest names, all collections.
pub fn manifest_keys(db: &Database) -> BTreeSet<String> {
    db.list_collections()
        .iter()
        .flat_map(|c| db.tiering().segments(&c.name).expect("segments"))
        .filter_map(|s| s.remote_key)
        .collect()
}

/// Each segment of "docs" in exactly one state: a local file iff the manifest says Hot, a
/// remote object whenever the manifest names a key (listed with `independent`).
pub fn assert_one_state_each(
    db: &Database,
    data: &Path,
    independent: &Arc<dyn ObjectStore>,
    prefix: &str,
) {
    let local = local_segment_files(data);
    let remote = list(independent, prefix);
    let segments = db.tiering().segments(COLLECTION).expect("segments");
    for s in &segments {
        assert_eq!(
            local.contains(&s.file_name),
            s.tier == StorageTier::Hot,
            "segment {} ({:?}): local file iff Hot; local files {local:?}",
            s.id,
            s.tier
        );
        if s.tier == StorageTier::Cold {
            let key = s.remote_key.as_deref().expect("a cold segment has a key");
            assert!(
                remote.iter().any(|k| k == key),
                "segment {} object {key} in {remote:?}",
                s.id
            );
        }
    }
    let hot = segments
        .iter()
        .filter(|s| s.tier == StorageTier::Hot)
        .count();
    assert_eq!(local.len(), hot, "no stray local segment files: {local:?}");
}

/// The issue's integration plan against one provider: write → flush → offload → the objects are
/// in the bucket (listed with `independent`) → the segment files are gone locally, manifest and
/// WAL remain → get and search as before → reopen → same → hydrate → same, remote copies kept.
pub fn offload_read_reopen_hydrate(
    spec: &ColdStoreSpec,
    independent: &Arc<dyn ObjectStore>,
    data: &Path,
) {
    let prefix = spec.prefix.clone();
    let db = open(data, spec).expect("open (the startup probe passes)");
    load(&db);
    let before = observe(&db);
    assert_eq!(before.2, 1999);
    assert!(
        before.0[1].is_none() && before.0[5].is_none(),
        "d3 deleted, d2500 never written"
    );
    assert_eq!(local_segment_files(data).len(), 2);
    for s in db.tiering().segments(COLLECTION).expect("segments") {
        let o = db
            .tiering()
            .offload_segment(COLLECTION, s.id)
            .expect("offload");
        assert_eq!((o.from, o.to), (StorageTier::Hot, StorageTier::Cold));
        assert_eq!(o.bytes, s.size_bytes, "the whole segment uploaded");
    }
    let keys = list(independent, &prefix);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter().all(
            |k| k.starts_with(&format!("{prefix}/{COLLECTION}/segments/")) && k.ends_with(".seg")
        ),
        "{keys:?}"
    );
    assert_eq!(
        keys.iter().cloned().collect::<BTreeSet<_>>(),
        manifest_keys(&db)
    );
    assert!(
        local_segment_files(data).is_empty(),
        "segment files gone locally"
    );
    assert!(data.join("MANIFEST").exists(), "the manifest stays");
    assert!(
        data.join("collections")
            .join(COLLECTION)
            .join("wal")
            .exists(),
        "the WAL stays"
    );
    assert_eq!(observe(&db), before, "read back from the store");
    let status = db.tiering().status().expect("status");
    assert!(
        status.counters.remote_bytes_fetched > 0,
        "the reads went to the store: {:?}",
        status.counters
    );
    db.close().expect("close");

    let db = open(data, spec).expect("reopen");
    assert_eq!(observe(&db), before, "after reopening");
    for s in db.tiering().segments(COLLECTION).expect("segments") {
        assert_eq!(s.tier, StorageTier::Cold);
        db.tiering()
            .hydrate_segment(COLLECTION, s.id)
            .expect("hydrate");
    }
    assert_eq!(local_segment_files(data).len(), 2, "hydrated");
    assert_eq!(observe(&db), before, "after hydration");
    assert_eq!(
        list(independent, &prefix),
        keys,
        "hydration keeps the remote copies"
    );
    assert_one_state_each(&db, data, independent, &prefix);
    db.close().expect("close");
}

/// Copy a closed database's directory to `to` (a second node), without its lock and cache.
pub fn copy_data_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("ls") {
        let e = e.expect("entry");
        let name = e.file_name();
        if name == "LOCK" || name == "cache" {
            continue;
        }
        if e.file_type().expect("type").is_dir() {
            copy_data_dir(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).expect("copy");
        }
    }
}

/// Another node offloads to GCS: open `data` with a local-directory cold store under `prefix`
/// (in `staging`), run `fill`, offload every segment, close; then place each object in
/// fake-gcs-server under the same key through the emulator's upload API. The manifest in `data`
/// then names objects that only the GCS bucket holds (the staging store is deleted).
pub fn offload_to_gcs_from_another_node(
    gcs_url: &str,
    bucket: &str,
    prefix: &str,
    data: &Path,
    fill: impl FnOnce(&Database),
) {
    let staging = tempfile::tempdir().expect("tempdir");
    let local = local_spec(staging.path(), prefix);
    let db = open(data, &local).expect("open the writing node");
    fill(&db);
    offload_all(&db);
    db.close().expect("close");
    let keys = list(&local.store, prefix);
    assert!(!keys.is_empty(), "offloaded objects under {prefix}");
    for k in keys {
        gcs_upload(gcs_url, bucket, &k, read_object(&local.store, &k));
    }
}

/// Options for a database on fake-gcs-server. The startup probe writes an object, and the
/// emulator refuses object_store's writes, so it is off (see `docs/configuration.md` §7).
pub fn gcs_options() -> Options {
    let mut o = options();
    o.tiering.probe_on_open = false;
    o
}

/// Open the database in `data` on fake-gcs-server with [`gcs_options`].
pub fn gcs_open(data: &Path, spec: &ColdStoreSpec) -> barq_core::Result<Database> {
    Database::builder(data)
        .options(gcs_options())
        .cold_store(spec.clone())
        .open()
}

/// Offload every segment of every collection.
pub fn offload_all(db: &Database) {
    for c in db.list_collections() {
        for s in db.tiering().segments(&c.name).expect("segments") {
            if s.tier != StorageTier::Cold {
                db.tiering()
                    .offload_segment(&c.name, s.id)
                    .expect("offload");
            }
        }
    }
}
