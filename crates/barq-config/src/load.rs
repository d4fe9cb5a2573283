//! Loading: defaults → TOML file → `BARQ_*` environment, then validation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use barq_core::{Error, Result};

use crate::settings::{Provider, Settings};

/// The variable that names the config file when no path is given.
pub const ENV_CONFIG: &str = "BARQ_CONFIG";

/// Load settings: `file` (or `$BARQ_CONFIG`) if any, then the process environment.
pub fn load(file: Option<&Path>) -> Result<Settings> {
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("BARQ_"))
        .collect();
    load_from(file, &env)
}

/// Load settings from `file` (or `env[BARQ_CONFIG]`) and the given environment.
pub fn load_from(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Settings> {
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

/// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`, `file:///path`.
fn apply_url(settings: &mut Settings, url: &str) -> Result<()> {
    let bad = || {
        Error::invalid(format!(
            "BARQ_COLD_STORE_URL={url:?}: expected s3://, gs://, az:// or file:// URL"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let s = &mut settings.storage;
    s.provider = match scheme {
        "s3" | "s3a" => Provider::S3,
        "gs" => Provider::Gcs,
        "az" | "azure" | "abfs" => Provider::Azure,
        "file" => {
            s.provider = Provider::Local;
            s.path = Some(PathBuf::from(rest));
            return Ok(());
        }
        _ => return Err(bad()),
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad());
    }
    s.bucket = Some(bucket.to_owned());
    s.prefix = prefix.trim_matches('/').to_owned();
    Ok(())
}

fn apply_env(settings: &mut Settings, env: &HashMap<String, String>) -> Result<()> {
    let get = |k: &str| env.get(k).map(String::as_str);
    if let Some(url) = get("BARQ_COLD_STORE_URL") {
        apply_url(settings, url)?;
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
        let Some(knob) = k.strip_prefix("BARQ_TIER_") else {
            continue;
        };
        let t = &mut settings.tiering;
        match knob {
            "MOVE_TO_WARM_AFTER" => t.move_to_warm_after = Some(parse(k, v)?),
            "MOVE_TO_COLD_AFTER" => t.move_to_cold_after = Some(parse(k, v)?),
            "MAX_HOT_SIZE_BYTES" => t.max_hot_size_bytes = Some(parse(k, v)?),
            "MAX_WARM_SIZE_BYTES" => t.max_warm_size_bytes = Some(parse(k, v)?),
            "MIN_RESIDENCY" => t.min_residency = parse(k, v)?,
            // The older name of BARQ_WARM_DIR, kept as an alias (BARQ_WARM_DIR wins).
            "WARM_DIR" if !env.contains_key("BARQ_WARM_DIR") => t.warm_dir = Some(PathBuf::from(v)),
            "WARM_DIR" => {}
            "MAINTENANCE_INTERVAL" => t.maintenance_interval = parse(k, v)?,
            "COLD_CACHE_BYTES" => t.cold_cache_bytes = parse(k, v)?,
            "MOVE_CONCURRENCY" => t.move_concurrency = parse(k, v)?,
            "MOVE_BANDWIDTH" => t.move_bandwidth = Some(parse(k, v)?),
            "ORPHAN_GRACE" => t.orphan_grace = parse(k, v)?,
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
                     VERIFY_UPLOADS"
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
            s.tiering.move_to_cold_after.map(|d| d.0),
            Some(Duration::from_secs(7 * 86400))
        );
        assert_eq!(s.tiering.max_hot_size_bytes.map(|s| s.0), Some(10 << 30));
        assert_eq!(s.tiering.cold_cache_bytes.0, 1 << 20);
        assert_eq!(s.tiering.min_residency.0, Duration::from_secs(90));
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
                "BARQ_WARM_DIR is not",
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
}
