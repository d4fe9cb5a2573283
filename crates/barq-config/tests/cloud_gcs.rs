//! Google Cloud Storage: configuration, and the read path against fake-gcs-server (started by
//! `scripts/test-services.sh`).
//!
//! fake-gcs-server does not accept object_store's writes (put, multipart, copy), so Barq cannot
//! offload to it. What is tested is the other half: a node reads segments that another node
//! offloaded. The writing node offloads to a local directory; its objects are placed in the
//! bucket through the emulator's own JSON upload API under the same keys; its data directory
//! (manifest, WAL) is copied to a second node configured with `BARQ_COLD_STORE_URL=gs://…`,
//! which must answer gets and searches from the objects in the bucket, also after a reopen, and
//! hydrate them. Its startup probe is off: the probe writes.
//!
//! Needs `BARQ_TEST_GCS_URL`, `BARQ_TEST_GCS_BUCKET` and `GOOGLE_SERVICE_ACCOUNT_KEY`
//! (`eval "$(scripts/test-services.sh env)"`); without them the server tests fail under
//! `CI=true` and are skipped, with a printed reason, elsewhere. The configuration test needs no
//! server.

mod common;

use std::collections::BTreeSet;

use barq_config::Provider;
use barq_storage::StorageTier;
use common::COLLECTION;

#[test]
fn gcs_configuration_by_variables_and_url() {
    let by_vars = barq_config::load_from(
        None,
        &common::env(&[
            ("BARQ_STORAGE_TYPE", "gcs"),
            ("BARQ_GCS_BUCKET", "my-bucket"),
            ("BARQ_GCS_PREFIX", "/prod/db1/"),
            // Another provider's variables are not read for gcs.
            ("BARQ_S3_BUCKET", "not-this"),
            ("BARQ_AZURE_PREFIX", "nor-this"),
        ]),
    )
    .expect("variables");
    let by_url = barq_config::load_from(
        None,
        &common::env(&[("BARQ_COLD_STORE_URL", "gs://my-bucket/prod/db1")]),
    )
    .expect("url");
    assert_eq!(by_vars, by_url);
    let s = &by_url.storage;
    assert_eq!(
        (s.provider, s.bucket.as_deref(), s.prefix.as_str()),
        (Provider::Gcs, Some("my-bucket"), "prod/db1")
    );
    // BARQ_GCS_* override the URL's parts.
    let s = barq_config::load_from(
        None,
        &common::env(&[
            ("BARQ_COLD_STORE_URL", "gs://from-url/p"),
            ("BARQ_GCS_BUCKET", "from-var"),
        ]),
    )
    .expect("url + var")
    .storage;
    assert_eq!(
        (s.bucket.as_deref(), s.prefix.as_str()),
        (Some("from-var"), "p")
    );
    // The builder is object_store's GCS client, described without any credential.
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = barq_config::build_cold_store(&by_url.storage, dir.path())
        .expect("build")
        .expect("gcs store");
    assert_eq!(spec.description, "gs://my-bucket/prod/db1");
    assert_eq!(spec.prefix, "prod/db1");
    assert!(
        format!("{:?}", spec.store).contains("GoogleCloudStorage"),
        "{:?}",
        spec.store
    );
    for (vars, want) in [
        (
            &[("BARQ_STORAGE_TYPE", "gcs")][..],
            "BARQ_GCS_BUCKET is required when BARQ_STORAGE_TYPE=gcs",
        ),
        (
            &[
                ("BARQ_COLD_STORE_URL", "gs://b"),
                ("BARQ_S3_ENDPOINT", "https://storage.example"),
            ][..],
            "only applies to BARQ_STORAGE_TYPE=s3, not gcs",
        ),
        (
            &[("BARQ_COLD_STORE_URL", "gs:///p")][..],
            "BARQ_COLD_STORE_URL",
        ),
        (
            &[("BARQ_COLD_STORE_URL", "gs://b/../p")][..],
            "without '..'",
        ),
    ] {
        let err = barq_config::load_from(None, &common::env(vars)).expect_err(want);
        assert!(err.message().contains(want), "{vars:?}: {err}");
    }
}

#[test]
fn a_segment_another_node_offloaded_is_read_from_gcs() {
    let Some((url, bucket)) = common::gcs_service() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = common::unique_prefix("gcs");
    let writer = dir.path().join("writer");
    let mut before = None;
    common::offload_to_gcs_from_another_node(&url, &bucket, &prefix, &writer, |db| {
        common::load(db);
        before = Some(common::observe(db));
    });
    let before = before.expect("observed");
    let independent = common::gcs_independent(&url, &bucket);
    let keys = common::list(&independent, &prefix);
    assert_eq!(keys.len(), 2, "both segments in the bucket: {keys:?}");

    let data = dir.path().join("reader");
    common::copy_data_dir(&writer, &data);
    assert!(
        common::local_segment_files(&data).is_empty(),
        "no local segment files"
    );
    let spec = common::gcs_spec(&bucket, &prefix, dir.path());
    assert_eq!(spec.description, format!("gs://{bucket}/{prefix}"));

    // The probe's write is refused by the emulator: the database opens degraded, and the
    // reason names the store and the step.
    {
        let db = common::open(&data, &spec).expect("opens degraded");
        let health = db.tiering().cold_store_health();
        assert_eq!(
            health.state,
            barq_storage::tiering::ColdStoreState::Degraded
        );
        let reason = health.reason.unwrap_or_default();
        assert!(
            reason.contains(&spec.description) && reason.contains("write of probe object"),
            "{reason}"
        );
    }

    let db = common::gcs_open(&data, &spec).expect("open against GCS");
    let segments = db.tiering().segments(COLLECTION).expect("segments");
    assert!(segments.iter().all(|s| s.tier == StorageTier::Cold));
    assert_eq!(
        keys.iter().cloned().collect::<BTreeSet<_>>(),
        common::manifest_keys(&db)
    );
    let c0 = db.tiering().status().expect("status").counters;
    assert_eq!(common::observe(&db), before, "gets and search from GCS");
    let c1 = db.tiering().status().expect("status").counters;
    assert!(
        c1.remote_requests > c0.remote_requests
            && c1.remote_bytes_fetched > 0
            && c1.remote_failures == 0,
        "the reads went to GCS: {c1:?}"
    );
    db.close().expect("close");

    let db = common::gcs_open(&data, &spec).expect("reopen");
    assert_eq!(common::observe(&db), before, "after reopening");
    for s in db.tiering().segments(COLLECTION).expect("segments") {
        let o = db
            .tiering()
            .hydrate_segment(COLLECTION, s.id)
            .expect("hydrate from GCS");
        assert_eq!((o.to, o.bytes), (StorageTier::Hot, s.size_bytes));
    }
    assert_eq!(common::local_segment_files(&data).len(), 2, "hydrated");
    let fetched = db.tiering().status().expect("status").counters;
    assert_eq!(common::observe(&db), before, "after hydration");
    assert_eq!(
        db.tiering()
            .status()
            .expect("status")
            .counters
            .remote_requests,
        fetched.remote_requests,
        "hydrated reads are local"
    );
    assert_eq!(
        common::list(&independent, &prefix),
        keys,
        "the objects stay"
    );
    db.close().expect("close");
}
