//! The cold tier against a real S3-compatible server (SeaweedFS, started by
//! `scripts/test-services.sh`): write → flush → offload → the objects are in the bucket (listed
//! with an independent client) → the segment files are gone locally → get and search return the
//! same → reopen → same → hydrate → same.
//!
//! Needs `BARQ_TEST_S3_ENDPOINT`, `BARQ_TEST_S3_BUCKET` and the AWS credential variables
//! (`eval "$(scripts/test-services.sh env)"`). Without them the test fails under `CI=true` and
//! is skipped, with a printed reason, elsewhere.

mod common;

#[test]
fn offload_to_s3_and_read_back() {
    let Some((endpoint, bucket)) = common::s3_service() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = common::unique_prefix("s3");
    let spec = common::s3_spec(&endpoint, &bucket, &prefix, dir.path());
    assert_eq!(
        spec.description,
        format!("s3://{bucket}/{prefix} (endpoint {endpoint})")
    );
    let independent = common::s3_independent(&endpoint, &bucket);
    common::offload_read_reopen_hydrate(&spec, &independent, &dir.path().join("data"));
}
