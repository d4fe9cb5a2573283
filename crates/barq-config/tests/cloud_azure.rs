//! The cold tier against Azure Blob Storage as Microsoft's emulator Azurite serves it (started
//! by `scripts/test-services.sh`): write → flush → offload → the blobs are in the container
//! (listed with an independent client) → the segment files are gone locally → get and search
//! return the same → reopen → same → hydrate → same.
//!
//! The store is built by `barq_config::build_cold_store` from `BARQ_STORAGE_TYPE=azure`,
//! `BARQ_AZURE_CONTAINER` and `BARQ_AZURE_PREFIX`; object_store's Azure client reaches Azurite
//! through the standard `AZURE_STORAGE_USE_EMULATOR=true` and `AZURITE_BLOB_STORAGE_URL`, as a
//! user would configure it. Needs those and `BARQ_TEST_AZURITE_URL`, `BARQ_TEST_AZURE_CONTAINER`
//! (`eval "$(scripts/test-services.sh env)"`); without them the test fails under `CI=true` and is
//! skipped, with a printed reason, elsewhere.

mod common;

#[test]
fn offload_to_azurite_and_read_back() {
    let Some(container) = common::azure_service() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = common::unique_prefix("az");
    let spec = common::azure_spec(&container, &prefix, dir.path());
    let url = std::env::var("AZURITE_BLOB_STORAGE_URL").expect("checked above");
    assert_eq!(
        spec.description,
        format!("az://{container}/{prefix} (Azurite emulator {url})")
    );
    let independent = common::azure_independent(&container);
    common::offload_read_reopen_hydrate(&spec, &independent, &dir.path().join("data"));
}
