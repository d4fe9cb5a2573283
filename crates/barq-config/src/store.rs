//! Building the cold store with `object_store`'s own builders. Credentials come from the
//! standard variables (`AWS_*`, `GOOGLE_*`, `AZURE_STORAGE_*`) through each builder's
//! `from_env`; [`describe`] names provider, bucket, prefix and endpoint, never a secret.

use std::path::Path;
use std::sync::Arc;

use barq_core::{Error, Result};
use barq_storage::tiering::ColdStoreSpec;
use object_store::aws::AmazonS3Builder;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::settings::{Provider, StorageSettings};

/// `s3://bucket/prefix (endpoint …)` and the like: for logs, errors and `status`.
pub fn describe(s: &StorageSettings, data_dir: &Path) -> String {
    let bucket = s.bucket.as_deref().unwrap_or("");
    let prefix = if s.prefix.is_empty() {
        String::new()
    } else {
        format!("/{}", s.prefix)
    };
    match s.provider {
        Provider::Local => {
            let p = s.path.clone().unwrap_or_else(|| data_dir.join("cold"));
            format!("file://{}", p.display())
        }
        Provider::S3 => match &s.endpoint {
            Some(e) => format!("s3://{bucket}{prefix} (endpoint {e})"),
            None => format!("s3://{bucket}{prefix}"),
        },
        Provider::Gcs => format!("gs://{bucket}{prefix}"),
        Provider::Azure => format!("az://{bucket}{prefix}"),
    }
}

fn client_options(s: &StorageSettings) -> ClientOptions {
    // allow_http lives inside the client options: `with_client_options` replaces them all.
    ClientOptions::new()
        .with_allow_http(s.allow_http)
        .with_timeout(s.request_timeout.0)
        .with_connect_timeout(s.connect_timeout.0)
}

fn retry(s: &StorageSettings) -> RetryConfig {
    RetryConfig {
        max_retries: s.max_retries,
        retry_timeout: s.retry_timeout.0,
        ..RetryConfig::default()
    }
}

/// Azure's builder: the `AZURE_*` variables, then Barq's settings.
fn azure_builder(s: &StorageSettings) -> MicrosoftAzureBuilder {
    MicrosoftAzureBuilder::from_env()
        .with_client_options(client_options(s))
        .with_retry(retry(s))
        .with_container_name(s.bucket.clone().unwrap_or_default())
}

/// The cold store for `s` (`None`: the engine's default, `DATA_DIR/cold`).
pub fn build_cold_store(s: &StorageSettings, data_dir: &Path) -> Result<Option<ColdStoreSpec>> {
    let mut description = describe(s, data_dir);
    if s.provider == Provider::Azure
        && azure_builder(s)
            .get_config_value(&AzureConfigKey::UseEmulator)
            .is_some_and(|v| v == "true")
    {
        // Emulator mode (AZURE_STORAGE_USE_EMULATOR) talks to AZURITE_BLOB_STORAGE_URL and
        // ignores any endpoint: name the address, so errors say where the store was.
        let url = std::env::var("AZURITE_BLOB_STORAGE_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:10000".into());
        description = format!("{description} (Azurite emulator {url})");
    }
    let fail = |e: object_store::Error| {
        Error::invalid(format!(
            "cannot configure the cold store {description}: {e}"
        ))
    };
    let store: Arc<dyn ObjectStore> = match s.provider {
        Provider::Local => match &s.path {
            None => return Ok(None),
            Some(p) => {
                std::fs::create_dir_all(p)
                    .map_err(|e| Error::io(format_args!("create {}", p.display()), e))?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(p).map_err(fail)?)
            }
        },
        Provider::S3 => {
            let mut b = AmazonS3Builder::from_env()
                .with_client_options(client_options(s))
                .with_retry(retry(s))
                .with_bucket_name(s.bucket.clone().unwrap_or_default());
            if let Some(r) = &s.region {
                b = b.with_region(r);
            }
            if let Some(e) = &s.endpoint {
                b = b.with_endpoint(e);
            }
            Arc::new(b.build().map_err(fail)?)
        }
        Provider::Gcs => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_client_options(client_options(s))
                .with_retry(retry(s))
                .with_bucket_name(s.bucket.clone().unwrap_or_default())
                .build()
                .map_err(fail)?,
        ),
        Provider::Azure => Arc::new(azure_builder(s).build().map_err(fail)?),
    };
    Ok(Some(ColdStoreSpec {
        store,
        prefix: s.prefix.clone(),
        description,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Settings;

    #[test]
    fn secrets_never_show_in_debug_or_descriptions() {
        let secret = "wJalrXUtnFEMI-K7MDENG-SECRET";
        let mut settings = Settings::default();
        settings.storage.provider = Provider::S3;
        settings.storage.bucket = Some("b".into());
        settings.storage.endpoint = Some("http://127.0.0.1:1".into());
        settings.storage.allow_http = true;
        let store = AmazonS3Builder::new()
            .with_client_options(client_options(&settings.storage))
            .with_bucket_name("b")
            .with_region("us-east-1")
            .with_endpoint("http://127.0.0.1:1")
            .with_access_key_id("AKIDEXAMPLE")
            .with_secret_access_key(secret)
            .build()
            .expect("build");
        let spec = ColdStoreSpec {
            store: Arc::new(store),
            prefix: String::new(),
            description: describe(&settings.storage, Path::new("/d")),
        };
        for shown in [
            format!("{spec:?}"),
            format!("{:?}", spec.store),
            format!("{}", spec.store),
            format!("{settings:?}"),
            spec.description.clone(),
        ] {
            assert!(!shown.contains(secret), "secret leaked: {shown}");
        }
        assert_eq!(spec.description, "s3://b (endpoint http://127.0.0.1:1)");
    }

    #[test]
    fn local_default_is_the_engine_default() {
        let s = StorageSettings::default();
        assert!(
            build_cold_store(&s, Path::new("/d"))
                .expect("build")
                .is_none()
        );
        assert_eq!(describe(&s, Path::new("/d")), "file:///d/cold");
    }
}
