//! Loading: defaults → TOML file → `BARQ_*` environment, then validation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use barq_core::{Error, Result};

use crate::settings::{Provider, Settings};
use crate::units::{HumanDuration, Size};

/// The variable that names the config file when no path is given.
pub const ENV_CONFIG: &str = "BARQ_CONFIG";

/// Load settings: `file` (or `$BARQ_CONFIG`) if any, then the process environment.
pub fn load(file: Option<&Path>) -> Result<Settings> {
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("BARQ_"))
        .collect();
    load_from(file, &env)
}

/// [`load`], with the cold store pointed at `url` (`s3://bucket/prefix`, `gs://…`, `az://…`,
/// `file:///…`): provider, bucket and prefix from the URL, endpoint, region and credentials as
/// the file and the environment configure them. `name` is how errors name the URL's source (an
/// option such as `--from`).
pub fn load_with_store_url(file: Option<&Path>, name: &str, url: &str) -> Result<Settings> {
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("BARQ_"))
        .collect();
    load_inner(file, &env, Some((name, url)))
}

/// Load settings from `file` (or `env[BARQ_CONFIG]`) and the given environment.
pub fn load_from(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Settings> {
    load_inner(file, env, None)
}

fn load_inner(
    file: Option<&Path>,
    env: &HashMap<String, String>,
    url: Option<(&str, &str)>,
) -> Result<Settings> {
    let path: Option<PathBuf> = file
        .map(Path::to_path_buf)
        .or_else(|| env.get(ENV_CONFIG).map(PathBuf::from));
    let mut settings = match &path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                Error::invalid(format!("cannot read config file {}: {e}", p.display()))
            })?;
            toml::from_str::<Settings>(&text).map_err(|e| {
                Error::invalid(format!("config file {}: {}", p.display(), e.message()))
            })?
        }
        None => Settings::default(),
    };
    apply_env(&mut settings, env)?;
    if let Some((name, url)) = url {
        apply_url(&mut settings, name, url)?;
    }
    settings.validate()?;
    Ok(settings)
}

fn parse<T: std::str::FromStr>(var: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e| Error::invalid(format!("{var}={value:?}: {e}")))
}

fn parse_bool(var: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(Error::invalid(format!(
            "{var}={value:?}: expected true or false"
        ))),
    }
}

/// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`,
/// `abfss://container@account.dfs.core.windows.net/prefix`, `file:///path`: the URL forms of
/// object_store's own parser ([`object_store::ObjectStoreScheme::parse`]), which says the
/// provider and the path inside the store (the prefix).
fn apply_url(settings: &mut Settings, name: &str, raw: &str) -> Result<()> {
    use object_store::ObjectStoreScheme;

    let bad = || {
        Error::invalid(format!(
            "{name}={raw:?}: expected s3://, gs://, az:// or file:// URL"
        ))
    };
    let url = url::Url::parse(raw.trim()).map_err(|_| bad())?;
    // The https:// forms object_store also recognizes name an endpoint, not a bucket.
    if matches!(url.scheme(), "http" | "https") {
        return Err(bad());
    }
    // The parser resolves "a/../b" to "b"; a prefix that climbs is a mistake, refused as written.
    if url.scheme() != "file" && has_dot_dot_segment(raw) {
        return Err(Error::invalid(format!(
            "{name}={raw:?}: the storage prefix must be a relative key prefix without '..'"
        )));
    }
    // An unknown scheme gets the plain message; a bad path (an empty segment, say) its reason.
    let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|e| {
        let why = e.to_string();
        if why.starts_with("Unable to recognise URL") {
            bad()
        } else {
            Error::invalid(format!(
                "{name}={raw:?}: expected s3://, gs://, az:// or file:// URL ({why})"
            ))
        }
    })?;
    let host = url.host_str().unwrap_or_default();
    let (provider, bucket) = match scheme {
        ObjectStoreScheme::AmazonS3 => (Provider::S3, host),
        ObjectStoreScheme::GoogleCloudStorage => (Provider::Gcs, host),
        // abfs[s]://container@account.dfs.core.windows.net/…; az://, azure://, adl:// and the
        // fsspec form abfs[s]://container/… name the container as the host.
        ObjectStoreScheme::MicrosoftAzure if url.username().is_empty() => (Provider::Azure, host),
        ObjectStoreScheme::MicrosoftAzure => (Provider::Azure, url.username()),
        ObjectStoreScheme::Local => {
            let dir = url.to_file_path().map_err(|()| bad())?;
            let s = &mut settings.storage;
            s.provider = Provider::Local;
            s.path = Some(dir);
            return Ok(());
        }
        _ => return Err(bad()),
    };
    if bucket.is_empty() {
        return Err(bad());
    }
    let s = &mut settings.storage;
    s.provider = provider;
    s.bucket = Some(bucket.to_owned());
    s.prefix = path.as_ref().trim_matches('/').to_owned();
    Ok(())
}

/// Whether the path of the URL `raw` has a `..` segment (also written `%2e%2e`).
fn has_dot_dot_segment(raw: &str) -> bool {
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let path = after_scheme.split(['?', '#']).next().unwrap_or_default();
    path.split(['/', '\\'])
        .any(|segment| segment.to_ascii_lowercase().replace("%2e", ".") == "..")
}

fn apply_env(settings: &mut Settings, env: &HashMap<String, String>) -> Result<()> {
    let get = |k: &str| env.get(k).map(String::as_str);
    if let Some(url) = get("BARQ_COLD_STORE_URL") {
        apply_url(settings, "BARQ_COLD_STORE_URL", url)?;
    }
    if let Some(t) = get("BARQ_STORAGE_TYPE") {
        settings.storage.provider = match t.trim().to_ascii_lowercase().as_str() {
            "local" => Provider::Local,
            "s3" => Provider::S3,
            "gcs" | "gs" => Provider::Gcs,
            "azure" => Provider::Azure,
            other => {
                return Err(Error::invalid(format!(
                    "BARQ_STORAGE_TYPE={other:?}: expected local, s3, gcs or azure"
                )));
            }
        };
    }
    let s = &mut settings.storage;
    let (bucket_var, prefix_var) = match s.provider {
        Provider::S3 => ("BARQ_S3_BUCKET", "BARQ_S3_PREFIX"),
        Provider::Gcs => ("BARQ_GCS_BUCKET", "BARQ_GCS_PREFIX"),
        Provider::Azure => ("BARQ_AZURE_CONTAINER", "BARQ_AZURE_PREFIX"),
        Provider::Local => ("", ""),
    };
    if let Some(b) = (!bucket_var.is_empty()).then(|| get(bucket_var)).flatten() {
        s.bucket = Some(b.to_owned());
    }
    if let Some(p) = (!prefix_var.is_empty()).then(|| get(prefix_var)).flatten() {
        s.prefix = p.trim_matches('/').to_owned();
    }
    if let Some(r) = get("BARQ_S3_REGION") {
        s.region = Some(r.to_owned());
    }
    if let Some(e) = get("BARQ_S3_ENDPOINT") {
        s.endpoint = Some(e.to_owned());
    }
    if let Some(v) = get("BARQ_S3_ALLOW_HTTP") {
        s.allow_http = parse_bool("BARQ_S3_ALLOW_HTTP", v)?;
    }
    if let Some(w) = get("BARQ_WARM_DIR") {
        settings.tiering.warm_dir = Some(PathBuf::from(w));
    }
    let s = &mut settings.storage;
    if let Some(v) = get("BARQ_COLD_STORE_REQUIRED") {
        s.required = parse_bool("BARQ_COLD_STORE_REQUIRED", v)?;
    }
    if let Some(v) = get("BARQ_COLD_STORE_RECHECK_INTERVAL") {
        s.recheck_interval = v
            .parse()
            .map_err(|e| Error::invalid(format!("BARQ_COLD_STORE_RECHECK_INTERVAL={v:?}: {e}")))?;
    }
    for (k, v) in env {
        let Some(knob) = k.strip_prefix("BARQ_INDEX_") else {
            continue;
        };
        let i = &mut settings.index;
        match knob {
            "MIN_ROWS" => i.min_rows = parse(k, v)?,
            "DELAY" => i.delay = parse(k, v)?,
            "TARGET_CLUSTER_ROWS" => i.target_cluster_rows = parse(k, v)?,
            "BITS" => i.bits = Some(parse(k, v)?),
            "RERANK_FACTOR" => i.rerank_factor = parse(k, v)?,
            "RECALL_SAMPLE_RATE" => i.recall_sample_rate = parse(k, v)?,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown setting {k}: the index variables are BARQ_INDEX_MIN_ROWS, DELAY, \
                     TARGET_CLUSTER_ROWS, BITS, RERANK_FACTOR, RECALL_SAMPLE_RATE"
                )));
            }
        }
    }
    for (k, v) in env {
        let Some(knob) = k.strip_prefix("BARQ_TIER_") else {
            continue;
        };
        let t = &mut settings.tiering;
        match knob {
            "MOVE_TO_WARM_AFTER" => {
                t.policy.move_to_warm_after = Some(parse::<HumanDuration>(k, v)?.0);
            }
            "MOVE_TO_COLD_AFTER" => {
                t.policy.move_to_cold_after = Some(parse::<HumanDuration>(k, v)?.0);
            }
            "MAX_HOT_SIZE_BYTES" => t.policy.max_hot_size_bytes = Some(parse::<Size>(k, v)?.0),
            "MAX_WARM_SIZE_BYTES" => t.policy.max_warm_size_bytes = Some(parse::<Size>(k, v)?.0),
            "MIN_RESIDENCY" => t.policy.min_residency = parse::<HumanDuration>(k, v)?.0,
            // The older name of BARQ_WARM_DIR, kept as an alias (BARQ_WARM_DIR wins).
            "WARM_DIR" if !env.contains_key("BARQ_WARM_DIR") => t.warm_dir = Some(PathBuf::from(v)),
            "WARM_DIR" => {}
            "MAINTENANCE_INTERVAL" => t.maintenance_interval = parse(k, v)?,
            "COLD_CACHE_BYTES" => t.cold_cache_bytes = parse(k, v)?,
            "MOVE_CONCURRENCY" => t.move_concurrency = parse(k, v)?,
            "MOVE_BANDWIDTH" => t.move_bandwidth = Some(parse(k, v)?),
            "ORPHAN_GRACE" => t.orphan_grace = parse(k, v)?,
            "UPLOAD_ON_SEAL" => t.upload_on_seal = Some(parse_bool(k, v)?),
            "UPLOAD_INTERVAL" => t.upload_interval = parse(k, v)?,
            "MANIFEST_RETENTION" => t.manifest_retention = parse(k, v)?,
            "VERIFY_UPLOADS" => {
                t.verify_uploads = match v.trim() {
                    "read-back" => crate::VerifyUploads::ReadBack,
                    "size" => crate::VerifyUploads::Size,
                    other => {
                        return Err(Error::invalid(format!(
                            "{k}={other:?}: expected read-back or size"
                        )));
                    }
                }
            }
            _ => {
                return Err(Error::invalid(format!(
                    "unknown setting {k}: the tiering variables are BARQ_TIER_MOVE_TO_WARM_AFTER, \
                     MOVE_TO_COLD_AFTER, MAX_HOT_SIZE_BYTES, MAX_WARM_SIZE_BYTES, MIN_RESIDENCY, \
                     MAINTENANCE_INTERVAL, COLD_CACHE_BYTES, MOVE_CONCURRENCY, MOVE_BANDWIDTH, ORPHAN_GRACE, \
                     VERIFY_UPLOADS, UPLOAD_ON_SEAL, UPLOAD_INTERVAL, MANIFEST_RETENTION"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_local_and_valid() {
        let s = load_from(None, &env(&[])).expect("defaults");
        assert_eq!(s.storage.provider, Provider::Local);
        assert_eq!(s.tiering.maintenance_interval.0, Duration::from_secs(60));
        assert_eq!(s.tiering.cold_cache_bytes.0, 1 << 30);
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("barq.toml");
        std::fs::write(
            &path,
            r#"
[storage]
provider = "s3"
bucket = "from-file"
prefix = "p"
endpoint = "http://127.0.0.1:9000"
allow_http = true
required = true

[tiering]
move_to_cold_after = "7d"
max_hot_size_bytes = "10GiB"
cold_cache_bytes = 1048576
"#,
        )
        .expect("write");
        let s = load_from(
            Some(&path),
            &env(&[
                ("BARQ_S3_BUCKET", "from-env"),
                ("BARQ_TIER_MIN_RESIDENCY", "90s"),
            ]),
        )
        .expect("load");
        assert_eq!(
            s.storage.bucket.as_deref(),
            Some("from-env"),
            "environment wins over the file"
        );
        assert_eq!(s.storage.prefix, "p");
        assert!(s.storage.required && s.tiering_options().cold_store_required);
        let strict = load_from(
            None,
            &env(&[
                ("BARQ_COLD_STORE_REQUIRED", "true"),
                ("BARQ_COLD_STORE_RECHECK_INTERVAL", "2s"),
            ]),
        )
        .expect("load");
        let t = strict.tiering_options();
        assert!(t.cold_store_required);
        assert_eq!(t.store_recheck_interval, std::time::Duration::from_secs(2));
        // One warm-directory variable, with BARQ_TIER_WARM_DIR as an alias that it overrides.
        let warm =
            |vars: &[(&str, &str)]| load_from(None, &env(vars)).expect("load").tiering.warm_dir;
        assert_eq!(warm(&[("BARQ_WARM_DIR", "/w")]), Some(PathBuf::from("/w")));
        assert_eq!(
            warm(&[("BARQ_TIER_WARM_DIR", "/t")]),
            Some(PathBuf::from("/t"))
        );
        assert_eq!(
            warm(&[("BARQ_WARM_DIR", "/w"), ("BARQ_TIER_WARM_DIR", "/t")]),
            Some(PathBuf::from("/w"))
        );
        assert!(
            !Settings::default().tiering_options().cold_store_required,
            "off by default"
        );
        assert_eq!(
            s.tiering.policy.move_to_cold_after,
            Some(Duration::from_secs(7 * 86400))
        );
        assert_eq!(s.tiering.policy.max_hot_size_bytes, Some(10 << 30));
        assert_eq!(s.tiering.cold_cache_bytes.0, 1 << 20);
        assert_eq!(s.tiering.policy.min_residency, Duration::from_secs(90));
        assert_eq!(
            s.tiering_options().policy,
            s.tiering.policy,
            "the engine gets the policy as loaded"
        );
        // BARQ_CONFIG names the file when no path is given.
        let via_env =
            load_from(None, &env(&[("BARQ_CONFIG", path.to_str().expect("utf8"))])).expect("load");
        assert_eq!(via_env.storage.bucket.as_deref(), Some("from-file"));
    }

    #[test]
    fn unknown_keys_and_variables_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("barq.toml");
        std::fs::write(&path, "[tiering]\nmove_to_cold_afterr = \"7d\"\n").expect("write");
        let err = load_from(Some(&path), &env(&[])).expect_err("unknown key");
        assert!(err.message().contains("move_to_cold_afterr"), "{err}");
        assert_eq!(err.kind(), barq_core::ErrorKind::InvalidArgument);
        assert_eq!(
            err.message(),
            "unknown key tiering.move_to_cold_afterr in the config file"
        );
        // Known keys next to unknown ones: each unknown one is named, the known ones are not.
        std::fs::write(
            &path,
            "[tiering]\nmin_residency = \"1m\"\nzeta = 1\nwarm_dirr = \"/w\"\nmove_concurrency = 3\n",
        )
        .expect("write");
        let err = load_from(Some(&path), &env(&[])).expect_err("unknown keys");
        assert_eq!(
            err.message(),
            "unknown keys tiering.warm_dirr, tiering.zeta in the config file"
        );
        // The other tables still refuse unknown keys through serde.
        std::fs::write(&path, "[storage]\nbuckett = \"b\"\n").expect("write");
        let err = load_from(Some(&path), &env(&[])).expect_err("unknown storage key");
        assert!(err.message().contains("buckett"), "{err}");
        // The policy keys are the flattened TieringPolicy, in their human forms.
        std::fs::write(
            &path,
            "[tiering]\nwarm_dir = \"/w\"\nmove_to_warm_after = \"1d\"\nmove_to_cold_after = \"7d\"\n\
             max_warm_size_bytes = 1048576\nmin_residency = \"90s\"\nmove_concurrency = 3\n",
        )
        .expect("write");
        let t = load_from(Some(&path), &env(&[]))
            .expect("policy keys")
            .tiering;
        assert_eq!(
            t.policy,
            barq_storage::tiering::TieringPolicy {
                move_to_warm_after: Some(Duration::from_secs(86400)),
                move_to_cold_after: Some(Duration::from_secs(7 * 86400)),
                max_hot_size_bytes: None,
                max_warm_size_bytes: Some(1 << 20),
                min_residency: Duration::from_secs(90),
            }
        );
        assert_eq!(t.move_concurrency, 3);
        std::fs::write(&path, "[tiering]\nmin_residency = \"soon\"\n").expect("write");
        let err = load_from(Some(&path), &env(&[])).expect_err("bad duration in the file");
        assert!(err.message().contains("not a duration"), "{err}");
        let err = load_from(None, &env(&[("BARQ_TIER_MOVE_TO_FROZEN_AFTER", "1d")]))
            .expect_err("unknown var");
        assert!(
            err.message()
                .starts_with("unknown setting BARQ_TIER_MOVE_TO_FROZEN_AFTER"),
            "{err}"
        );
        let err = load_from(None, &env(&[("BARQ_TIER_ORPHAN_GRACE", "a while")]))
            .expect_err("bad duration");
        assert!(
            err.message().contains("BARQ_TIER_ORPHAN_GRACE")
                && err.message().contains("not a duration"),
            "{err}"
        );
    }

    #[test]
    fn validation_names_the_setting() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("BARQ_STORAGE_TYPE", "s3")],
                "BARQ_S3_BUCKET is required when BARQ_STORAGE_TYPE=s3",
            ),
            (
                &[("BARQ_STORAGE_TYPE", "gcs")],
                "BARQ_GCS_BUCKET is required when BARQ_STORAGE_TYPE=gcs",
            ),
            (
                &[("BARQ_STORAGE_TYPE", "azure")],
                "BARQ_AZURE_CONTAINER is required when BARQ_STORAGE_TYPE=azure",
            ),
            (&[("BARQ_STORAGE_TYPE", "ftp")], "BARQ_STORAGE_TYPE=\"ftp\""),
            (
                &[
                    ("BARQ_STORAGE_TYPE", "s3"),
                    ("BARQ_S3_BUCKET", "b"),
                    ("BARQ_S3_ENDPOINT", "http://127.0.0.1:1"),
                ],
                "set BARQ_S3_ALLOW_HTTP=true",
            ),
            (
                &[("BARQ_S3_ALLOW_HTTP", "maybe")],
                "BARQ_S3_ALLOW_HTTP=\"maybe\"",
            ),
            (
                &[("BARQ_TIER_MOVE_TO_WARM_AFTER", "1h")],
                "tiering.move_to_warm_after (BARQ_TIER_MOVE_TO_WARM_AFTER) needs a warm tier (BARQ_WARM_DIR)",
            ),
            (
                &[
                    ("BARQ_WARM_DIR", "/w"),
                    ("BARQ_TIER_MOVE_TO_WARM_AFTER", "2h"),
                    ("BARQ_TIER_MOVE_TO_COLD_AFTER", "1h"),
                ],
                "tiering.move_to_cold_after (BARQ_TIER_MOVE_TO_COLD_AFTER) is 1h, shorter than \
                 tiering.move_to_warm_after (BARQ_TIER_MOVE_TO_WARM_AFTER) 2h",
            ),
            (
                &[("BARQ_TIER_MAX_HOT_SIZE_BYTES", "lots")],
                "BARQ_TIER_MAX_HOT_SIZE_BYTES=\"lots\"",
            ),
            (&[("BARQ_TIER_MOVE_CONCURRENCY", "0")], "at least 1"),
            (&[("BARQ_COLD_STORE_URL", "ftp://x")], "BARQ_COLD_STORE_URL"),
            (
                &[("BARQ_COLD_STORE_RECHECK_INTERVAL", "0s")],
                "must be at least 100ms",
            ),
            (
                &[("BARQ_COLD_STORE_RECHECK_INTERVAL", "soon")],
                "BARQ_COLD_STORE_RECHECK_INTERVAL=\"soon\"",
            ),
            (
                &[("BARQ_COLD_STORE_REQUIRED", "maybe")],
                "BARQ_COLD_STORE_REQUIRED",
            ),
            (&[("BARQ_COLD_STORE_URL", "s3://b/../x")], "without '..'"),
        ];
        for (vars, want) in cases {
            let err = load_from(None, &env(vars)).expect_err(want);
            assert!(err.message().contains(want), "{vars:?}: {err}");
        }
    }

    #[test]
    fn cold_store_urls() {
        let s = load_from(
            None,
            &env(&[("BARQ_COLD_STORE_URL", "s3://bucket/some/prefix/")]),
        )
        .expect("s3");
        assert_eq!(
            (
                s.storage.provider,
                s.storage.bucket.as_deref(),
                s.storage.prefix.as_str()
            ),
            (Provider::S3, Some("bucket"), "some/prefix")
        );
        let s = load_from(None, &env(&[("BARQ_COLD_STORE_URL", "gs://b")])).expect("gs");
        assert_eq!(
            (s.storage.provider, s.storage.prefix.as_str()),
            (Provider::Gcs, "")
        );
        let s = load_from(None, &env(&[("BARQ_COLD_STORE_URL", "az://c/p")])).expect("az");
        assert_eq!(
            (s.storage.provider, s.storage.bucket.as_deref()),
            (Provider::Azure, Some("c"))
        );
        let s =
            load_from(None, &env(&[("BARQ_COLD_STORE_URL", "file:///tmp/cold")])).expect("file");
        assert_eq!(s.storage.path.as_deref(), Some(Path::new("/tmp/cold")));
    }

    /// What `apply_url` makes of each URL form: (provider, bucket, prefix, path).
    #[test]
    fn cold_store_url_forms() {
        let parts = |url: &str| {
            let mut s = Settings::default();
            apply_url(&mut s, "BARQ_COLD_STORE_URL", url).map(|()| {
                let st = s.storage;
                (st.provider, st.bucket, st.prefix, st.path)
            })
        };
        let b = |s: &str| Some(s.to_owned());
        let cases = [
            ("s3://b/p", (Provider::S3, b("b"), "p", None)),
            ("s3a://b/a/b/", (Provider::S3, b("b"), "a/b", None)),
            ("gs://b/p", (Provider::Gcs, b("b"), "p", None)),
            ("gs://b", (Provider::Gcs, b("b"), "", None)),
            ("az://c/p", (Provider::Azure, b("c"), "p", None)),
            ("azure://c/p/q", (Provider::Azure, b("c"), "p/q", None)),
            ("abfss://c/p", (Provider::Azure, b("c"), "p", None)),
            (
                "abfss://c@account.dfs.core.windows.net/p",
                (Provider::Azure, b("c"), "p", None),
            ),
            (
                "file:///tmp/x",
                (Provider::Local, None, "", Some(PathBuf::from("/tmp/x"))),
            ),
            (
                "file:///tmp/a%20b",
                (Provider::Local, None, "", Some(PathBuf::from("/tmp/a b"))),
            ),
        ];
        for (url, (provider, bucket, prefix, path)) in cases {
            assert_eq!(
                parts(url).unwrap_or_else(|e| panic!("{url}: {e}")),
                (provider, bucket, prefix.to_owned(), path),
                "{url}"
            );
        }
        for (url, words) in [
            ("ftp://x/p", "expected s3://, gs://, az:// or file:// URL"),
            ("memory:///", "expected s3://"),
            ("https://s3.amazonaws.com/b/p", "expected s3://"),
            ("s3:b/p", "expected s3://"),
            ("not a url", "expected s3://"),
            ("s3://b//p", "BARQ_COLD_STORE_URL"),
            ("s3://b/a/../c", "without '..'"),
            ("s3://b/a/%2E%2E/c", "without '..'"),
            ("gs://b/..", "without '..'"),
        ] {
            let e = parts(url).expect_err(url);
            assert_eq!(e.kind(), barq_core::ErrorKind::InvalidArgument, "{url}");
            assert!(
                e.message()
                    .starts_with(&format!("BARQ_COLD_STORE_URL={url:?}"))
                    && e.message().contains(words),
                "{url}: {e}"
            );
        }
        // A dot segment that does not climb is no error.
        assert_eq!(parts("s3://b/a..b/c").expect("dots in a name").2, "a..b/c");
    }

    #[test]
    fn index_settings_come_from_the_file_and_the_environment_and_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("barq.toml");
        std::fs::write(
            &path,
            "[index]\nmin_rows = 5000\ndelay = \"30s\"\nbits = 2\n",
        )
        .expect("write");
        let i = load_from(Some(&path), &env(&[("BARQ_INDEX_RERANK_FACTOR", "8")]))
            .expect("index keys")
            .index;
        assert_eq!((i.min_rows, i.bits, i.rerank_factor), (5000, Some(2), 8));
        assert_eq!(i.target_cluster_rows, 1000, "the default");
        assert_eq!(i.delay.0, std::time::Duration::from_secs(30));
        let delay = load_from(None, &env(&[("BARQ_INDEX_DELAY", "250ms")]))
            .expect("delay from the environment")
            .index
            .delay;
        assert_eq!(delay.0, std::time::Duration::from_millis(250));
        let p = i.params();
        assert_eq!((p.bits, p.rerank_factor), (Some(2), 8));
        let err =
            load_from(None, &env(&[("BARQ_INDEX_RECALL_SAMPLE_RATE", "2")])).expect_err("rate 2");
        assert!(err.message().contains("recall_sample_rate"), "{err}");
        let err = load_from(None, &env(&[("BARQ_INDEX_BITS", "3")])).expect_err("3 bits");
        assert!(err.message().contains("index bits is 3"), "{err}");
        let err = load_from(None, &env(&[("BARQ_INDEX_NPROBE", "3")])).expect_err("unknown");
        assert!(
            err.message()
                .starts_with("unknown setting BARQ_INDEX_NPROBE"),
            "{err}"
        );
        std::fs::write(&path, "[index]\nprobes = 3\n").expect("write");
        assert!(load_from(Some(&path), &env(&[])).is_err(), "unknown key");
    }
}
