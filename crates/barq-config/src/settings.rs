//! The settings document and its validation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use barq_core::{Error, Result};
use barq_storage::tiering::TieringPolicy;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::units::{HumanDuration, Size};

/// Where the cold tier lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// A local directory (default: `DATA_DIR/cold`).
    #[default]
    Local,
    /// Amazon S3 or any S3-compatible store (MinIO, SeaweedFS, R2, …).
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
}

impl Provider {
    /// The name used in `BARQ_STORAGE_TYPE` and the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::S3 => "s3",
            Provider::Gcs => "gcs",
            Provider::Azure => "azure",
        }
    }

    /// The variable that names this provider's bucket or container.
    pub(crate) fn bucket_var(self) -> &'static str {
        match self {
            Provider::Local => "BARQ_COLD_STORE_URL",
            Provider::S3 => "BARQ_S3_BUCKET",
            Provider::Gcs => "BARQ_GCS_BUCKET",
            Provider::Azure => "BARQ_AZURE_CONTAINER",
        }
    }
}

/// How uploads to the cold tier are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyUploads {
    /// Read the object back and compare its CRC32C (the default).
    #[default]
    ReadBack,
    /// Compare the size only (for stores that check request checksums themselves).
    Size,
}

/// The cold store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// `local`, `s3`, `gcs` or `azure`. Default `local`.
    pub provider: Provider,
    /// Bucket (S3, GCS) or container (Azure). Required for those providers.
    pub bucket: Option<String>,
    /// Key prefix under which Barq's objects live. Default empty.
    pub prefix: String,
    /// S3 region. Default from the AWS environment, else `us-east-1`.
    pub region: Option<String>,
    /// Endpoint URL for S3-compatible stores (MinIO, SeaweedFS, R2, …).
    pub endpoint: Option<String>,
    /// Allow plain `http://` endpoints. Default false.
    pub allow_http: bool,
    /// Directory of the `local` provider. Default `DATA_DIR/cold`.
    pub path: Option<PathBuf>,
    /// Retries of a failed request (the store client's own, with backoff). Default 3.
    pub max_retries: usize,
    /// Give up retrying after this long. Default 30 s.
    pub retry_timeout: HumanDuration,
    /// Timeout of one request. Default 30 s; large uploads go in 8 MiB parts.
    pub request_timeout: HumanDuration,
    /// Timeout to connect. Default 5 s.
    pub connect_timeout: HumanDuration,
    /// Refuse to start when the cold store does not answer the probe at open. Default false:
    /// the failure is logged, status and `/readyz` say `degraded` with the reason, hot data is
    /// served, and the store is probed again in the background until it answers.
    pub required: bool,
    /// While the cold store is degraded, probe it this often until it answers (then moves and
    /// cold reads resume without a restart). Default 10 s; each probe is one small write,
    /// read and delete.
    pub recheck_interval: HumanDuration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            provider: Provider::Local,
            bucket: None,
            prefix: String::new(),
            region: None,
            endpoint: None,
            allow_http: false,
            path: None,
            max_retries: 3,
            retry_timeout: HumanDuration(Duration::from_secs(30)),
            request_timeout: HumanDuration(Duration::from_secs(30)),
            connect_timeout: HumanDuration(Duration::from_secs(5)),
            required: false,
            recheck_interval: HumanDuration(Duration::from_secs(10)),
        }
    }
}

/// When segments move between tiers.
///
/// The policy knobs (`move_to_warm_after`, `move_to_cold_after`, `max_hot_size_bytes`,
/// `max_warm_size_bytes`, `min_residency`) are the engine's own [`TieringPolicy`], flattened:
/// the same keys of `[tiering]`, one definition of their defaults, forms and rules
/// ([`TieringPolicy::validate`]). serde cannot combine `flatten` with `deny_unknown_fields`, so
/// the keys nobody claims are collected instead and [`Settings::validate`] refuses them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TieringSettings {
    /// The policy: when segments move, and the byte budgets.
    #[serde(flatten)]
    pub policy: TieringPolicy,
    /// The warm tier's directory. Default: no warm tier.
    pub warm_dir: Option<PathBuf>,
    /// How often maintenance runs; `0s` turns the loop off. Default 60 s.
    pub maintenance_interval: HumanDuration,
    /// Byte budget of the local cache of cold data. Default 1 GiB.
    pub cold_cache_bytes: Size,
    /// Moves at once. Default 2.
    pub move_concurrency: usize,
    /// Bytes per second all moves may transfer together. Default: unlimited.
    pub move_bandwidth: Option<Size>,
    /// Unreferenced objects are deleted after this long. Default 1 h.
    pub orphan_grace: HumanDuration,
    /// `read-back` (default) or `size`.
    pub verify_uploads: VerifyUploads,
    /// Copy each sealed segment to the cold store soon after it is sealed and publish the
    /// manifest versions there, so the bucket alone can restore the database or feed replicas.
    /// Default: on when a cold store is configured (`[storage]`), off for the local default.
    pub upload_on_seal: Option<bool>,
    /// How often pending uploads and the manifest are published. Default 200 ms.
    pub upload_interval: HumanDuration,
    /// Manifest versions in the bucket older than this are deleted (the newest stays), and no
    /// object is collected before it has been unreferenced this long. Default 1 h.
    pub manifest_retention: HumanDuration,
    /// Keys of `[tiering]` that no field above claimed (serde hands the flattened fields their
    /// keys in order, so this last one receives exactly the unknown ones); an error in
    /// [`Settings::validate`].
    #[serde(flatten, skip_serializing)]
    unknown: BTreeMap<String, IgnoredAny>,
}

impl Default for TieringSettings {
    fn default() -> Self {
        TieringSettings {
            policy: TieringPolicy::default(),
            warm_dir: None,
            maintenance_interval: HumanDuration(Duration::from_secs(60)),
            cold_cache_bytes: Size(1 << 30),
            move_concurrency: 2,
            move_bandwidth: None,
            orphan_grace: HumanDuration(Duration::from_secs(3600)),
            verify_uploads: VerifyUploads::ReadBack,
            upload_on_seal: None,
            upload_interval: HumanDuration(Duration::from_millis(200)),
            manifest_retention: HumanDuration(Duration::from_secs(3600)),
            unknown: BTreeMap::new(),
        }
    }
}

/// The approximate-search indexes of large segments (`[index]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndexSettings {
    /// Segments with at least this many live rows get an IVF index. Default 20,000.
    pub min_rows: u64,
    /// Background passes index a flushed segment once it has been sealed this long, so that
    /// a burst's young segments are merged first. Default 5 s.
    pub delay: HumanDuration,
    /// Rows per cluster the partition aims at. Default 1,000.
    pub target_cluster_rows: usize,
    /// Bits per coordinate of the codes (1, 2, 4 or 8). Default: 4 up to 512 dimensions, 2
    /// above.
    pub bits: Option<u8>,
    /// Candidates re-ranked with their f32 vectors per wanted result. Default 4.
    pub rerank_factor: usize,
    /// Fraction of indexed searches re-run exactly in the background to measure recall, in
    /// [0, 1]. Default 0.01.
    pub recall_sample_rate: f64,
}

impl Default for IndexSettings {
    fn default() -> Self {
        let p = barq_storage::IndexParams::default();
        IndexSettings {
            min_rows: barq_storage::Options::default().index_min_rows,
            delay: HumanDuration(barq_storage::Options::default().index_delay),
            target_cluster_rows: p.target_cluster_rows,
            bits: p.bits,
            rerank_factor: p.rerank_factor,
            recall_sample_rate: barq_storage::Options::default().recall_sample_rate,
        }
    }
}

impl IndexSettings {
    /// The engine's index parameters for these settings.
    pub fn params(&self) -> barq_storage::IndexParams {
        barq_storage::IndexParams {
            target_cluster_rows: self.target_cluster_rows,
            bits: self.bits,
            rerank_factor: self.rerank_factor,
            ..Default::default()
        }
    }
}

/// Everything configurable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The cold store.
    pub storage: StorageSettings,
    /// The tiering knobs.
    pub tiering: TieringSettings,
    /// The indexes of large segments.
    pub index: IndexSettings,
}

impl Settings {
    /// Cross-field rules, with messages that name the setting.
    pub fn validate(&self) -> Result<()> {
        if !self.tiering.unknown.is_empty() {
            let keys: Vec<String> = self
                .tiering
                .unknown
                .keys()
                .map(|k| format!("tiering.{k}"))
                .collect();
            return Err(Error::invalid(format!(
                "unknown key{} {} in the config file",
                if keys.len() == 1 { "" } else { "s" },
                keys.join(", ")
            )));
        }
        let s = &self.storage;
        if s.recheck_interval.0 < Duration::from_millis(100) {
            return Err(Error::invalid(format!(
                "storage.recheck_interval (BARQ_COLD_STORE_RECHECK_INTERVAL) is {}: it must be at least 100ms",
                s.recheck_interval
            )));
        }
        if s.provider != Provider::Local && s.bucket.as_deref().is_none_or(str::is_empty) {
            return Err(Error::invalid(format!(
                "{} is required when BARQ_STORAGE_TYPE={} (or storage.bucket in the config file)",
                s.provider.bucket_var(),
                s.provider.as_str()
            )));
        }
        if let Some(b) = &s.bucket
            && (b.contains('/') || b.trim() != b)
        {
            return Err(Error::invalid(format!(
                "bucket name {b:?} must not contain '/' or spaces; put a path in the prefix"
            )));
        }
        if s.prefix.split('/').any(|part| part == "..") || s.prefix.starts_with('/') {
            return Err(Error::invalid(format!(
                "storage prefix {:?} must be a relative key prefix without '..'",
                s.prefix
            )));
        }
        if let Some(e) = &s.endpoint {
            if s.provider != Provider::S3 {
                return Err(Error::invalid(format!(
                    "an endpoint (BARQ_S3_ENDPOINT) only applies to BARQ_STORAGE_TYPE=s3, not {}",
                    s.provider.as_str()
                )));
            }
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(Error::invalid(format!(
                    "BARQ_S3_ENDPOINT {e:?} must start with http:// or https://"
                )));
            }
            if e.starts_with("http://") && !s.allow_http {
                return Err(Error::invalid(format!(
                    "BARQ_S3_ENDPOINT {e:?} is plain http: set BARQ_S3_ALLOW_HTTP=true to allow it"
                )));
            }
        }
        let r = self.index.recall_sample_rate;
        if !(0.0..=1.0).contains(&r) {
            return Err(Error::invalid(format!(
                "index.recall_sample_rate (BARQ_INDEX_RECALL_SAMPLE_RATE) is {r}: it must be between 0 and 1"
            )));
        }
        self.index.params().validate().map_err(|e| {
            Error::invalid(format!(
                "{} (the [index] settings, BARQ_INDEX_*)",
                e.message()
            ))
        })?;
        let t = &self.tiering;
        if t.move_concurrency == 0 {
            return Err(Error::invalid(
                "BARQ_TIER_MOVE_CONCURRENCY must be at least 1",
            ));
        }
        if t.upload_interval.0.is_zero() {
            return Err(Error::invalid(
                "tiering.upload_interval (BARQ_TIER_UPLOAD_INTERVAL) must be greater than 0",
            ));
        }
        t.policy.validate(t.warm_dir.is_some())
    }

    /// The engine's tiering options for these settings (the cold store is built separately,
    /// see [`crate::build_cold_store`]).
    pub fn tiering_options(&self) -> barq_storage::tiering::TieringOptions {
        use barq_storage::tiering::{TieringOptions, UploadVerification};
        let t = &self.tiering;
        TieringOptions {
            warm_dir: t.warm_dir.clone(),
            policy: t.policy.clone(),
            maintenance_interval: Some(t.maintenance_interval.0).filter(|d| !d.is_zero()),
            cold_cache_bytes: t.cold_cache_bytes.0,
            move_concurrency: t.move_concurrency,
            move_bandwidth_bytes_per_sec: t.move_bandwidth.map(|s| s.0),
            orphan_grace: t.orphan_grace.0,
            verify_uploads: match t.verify_uploads {
                VerifyUploads::ReadBack => UploadVerification::ReadBack,
                VerifyUploads::Size => UploadVerification::Size,
            },
            cold_store_required: self.storage.required,
            store_recheck_interval: self.storage.recheck_interval.0,
            upload_on_seal: t.upload_on_seal,
            upload_interval: t.upload_interval.0,
            manifest_retention: t.manifest_retention.0,
            ..TieringOptions::default()
        }
    }
}
