//! End to end on the bucket as the shared engine: real `barq serve` processes on loopback
//! ports and the S3 test server (SeaweedFS from `scripts/test-services.sh`).
//!
//! - one writer and two read-only replicas (`--replica-of`): writes on the writer appear on
//!   both replicas after their flush; the replicas refuse writes and tiering operations (403);
//!   the writer is SIGKILLed and the replicas keep serving; the writer restarts and the
//!   replicas follow; a replica restarted with an empty cache serves at once;
//! - two writer processes started on one prefix: the second fences the first, whose writes
//!   then fail with 409.

#[path = "support/data.rs"]
#[allow(dead_code)]
mod data;
#[path = "support/server.rs"]
#[allow(dead_code)]
mod server;

use std::path::Path;
use std::time::{Duration, Instant};

use data::{DIM, docs, s3_env, vector};
use serde_json::json;
use server::{Client, Server};

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("e2e-{tag}-{}-{nanos}", std::process::id())
}

/// The store settings a writer and its replicas share (the replicas get the bucket and
/// prefix from `--replica-of`).
fn store_env<'a>(endpoint: &'a str, bucket: &'a str, prefix: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("BARQ_STORAGE_TYPE", "s3"),
        ("BARQ_S3_BUCKET", bucket),
        ("BARQ_S3_ENDPOINT", endpoint),
        ("BARQ_S3_ALLOW_HTTP", "true"),
        ("BARQ_S3_REGION", "us-east-1"),
        ("BARQ_S3_PREFIX", prefix),
        ("BARQ_TIER_UPLOAD_INTERVAL", "100ms"),
    ]
}

fn replica(data: &Path, endpoint: &str, url: &str) -> Server {
    let env = [
        ("BARQ_S3_ENDPOINT", endpoint),
        ("BARQ_S3_ALLOW_HTTP", "true"),
        ("BARQ_S3_REGION", "us-east-1"),
    ];
    Server::start(
        data,
        &env,
        &["--replica-of", url, "--replica-poll-interval", "200ms"],
    )
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The documents the node counts in "docs" (`None` before the collection exists there).
fn documents(c: &Client) -> Option<u64> {
    let (s, v) = c.get("/v1/collections/docs");
    (s == 200).then(|| v["documents"].as_u64().expect("documents"))
}

/// Every document `0..n` reads back, and a search finds one of them first.
fn check_all(c: &Client, n: usize) {
    for i in (0..n).step_by(11).chain([n - 1]) {
        let (s, v) = c.get(&format!("/v1/collections/docs/documents/doc-{i}"));
        assert_eq!(s, 200, "doc-{i}: {v}");
        assert_eq!(v["payload"]["i"], i, "doc-{i}");
    }
    let (s, v) = c.post(
        "/v1/collections/docs/search",
        &json!({"vector": vector(n / 2), "k": 3}).to_string(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["id"], format!("doc-{}", n / 2), "{v}");
    assert_eq!(documents(c), Some(n as u64));
}

fn write_and_flush(w: &Client, range: std::ops::Range<usize>) {
    w.ok("/v1/collections/docs/documents", &docs(range));
    w.ok("/v1/collections/docs/flush", "");
}

#[test]
fn one_writer_and_two_replicas_follow_through_a_sigkill_and_a_restart() {
    let Some((endpoint, bucket)) = s3_env() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let prefix = unique("replicas");
    let url = format!("s3://{bucket}/{prefix}");
    let env = store_env(&endpoint, &bucket, &prefix);
    let mut writer = Server::start(
        &tmp.path().join("writer"),
        &env,
        &["--advertise-url", "http://writer.example:6464"],
    );
    let w = Client::new(&writer, None);
    let (s, v) = w.post(
        "/v1/collections",
        &json!({"name": "docs", "dimension": DIM, "metric": "l2"}).to_string(),
    );
    assert_eq!(s, 201, "{v}");
    write_and_flush(&w, 0..300);

    let r1 = replica(&tmp.path().join("r1"), &endpoint, &url);
    let r2_dir = tmp.path().join("r2");
    let mut r2 = replica(&r2_dir, &endpoint, &url);
    let replicas = [Client::new(&r1, None), Client::new(&r2, None)];
    for r in &replicas {
        wait_for("a replica serves the first flush", || {
            documents(r) == Some(300)
        });
        check_all(r, 300);
        let (s, v) = r.get("/readyz");
        assert_eq!(s, 200, "{v}");
        assert!(v["replica"]["version"].as_u64().is_some(), "{v}");
    }

    // Replicas refuse writes and tiering operations, naming the bucket.
    let r = &replicas[0];
    let (s, v) = r.post("/v1/collections/docs/documents", &docs(0..1));
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "read_only");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&prefix), "names the bucket: {v}");
    assert!(
        message.contains("the writer is at http://writer.example:6464"),
        "names the writer: {v}"
    );
    for path in [
        "/v1/collections/docs/flush",
        "/v1/collections/docs/offload",
        "/v1/tiering/maintenance",
    ] {
        let (s, v) = r.post(path, "");
        assert_eq!(s, 403, "{path}: {v}");
    }
    let (s, v) = r.post(
        "/v1/collections",
        &json!({"name": "other", "dimension": DIM, "metric": "l2"}).to_string(),
    );
    assert_eq!(s, 403, "{v}");

    // More writes, then the writer dies without a word; the replicas serve what was flushed.
    write_and_flush(&w, 300..600);
    for r in &replicas {
        wait_for("a replica serves the second flush", || {
            documents(r) == Some(600)
        });
    }
    writer.kill();
    for r in &replicas {
        check_all(r, 600);
    }

    // The writer restarts and writes on; the replicas follow.
    let writer = writer.restart();
    let w = Client::new(&writer, None);
    check_all(&w, 600);
    write_and_flush(&w, 600..900);
    for r in &replicas {
        wait_for("a replica follows the restarted writer", || {
            documents(r) == Some(900)
        });
        check_all(r, 900);
    }

    // A replica restarted with an empty cache serves at once.
    r2.terminate();
    std::fs::remove_dir_all(&r2_dir).expect("empty the replica's cache");
    let r2 = replica(&r2_dir, &endpoint, &url);
    check_all(&Client::new(&r2, None), 900);
    let (s, v) = Client::new(&r2, None).get("/metrics");
    assert_eq!(s, 200);
    let text = v
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string());
    assert!(text.contains("barq_replica_manifest_version"), "{text}");
}

#[test]
fn a_second_writer_process_on_the_same_prefix_fences_the_first() {
    let Some((endpoint, bucket)) = s3_env() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let prefix = unique("fence");
    let env = store_env(&endpoint, &bucket, &prefix);
    let a_srv = Server::start(&tmp.path().join("a"), &env, &[]);
    let a = Client::new(&a_srv, None);
    let create = json!({"name": "docs", "dimension": DIM, "metric": "l2"}).to_string();
    assert_eq!(a.post("/v1/collections", &create).0, 201);
    write_and_flush(&a, 0..100);
    let epoch = |c: &Client| {
        let (_, v) = c.get("/v1/tiering/status");
        v["bucket"]["epoch"].as_u64()
    };
    wait_for("the first writer claims an epoch", || epoch(&a) == Some(1));

    let b_srv = Server::start(&tmp.path().join("b"), &env, &[]);
    let b = Client::new(&b_srv, None);
    assert_eq!(b.post("/v1/collections", &create).0, 201);
    write_and_flush(&b, 0..50);
    wait_for("the second writer claims the next epoch", || {
        epoch(&b) == Some(2)
    });

    // The first writer's next publish finds epoch 2: from then on it takes no writes.
    write_and_flush(&a, 100..110);
    wait_for("the first writer is fenced", || {
        let (s, _) = a.post("/v1/collections/docs/documents", &docs(200..201));
        s == 409
    });
    let (s, v) = a.post("/v1/collections/docs/documents", &docs(300..301));
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("epoch 2")),
        "{v}"
    );
    let (_, v) = a.get("/v1/tiering/status");
    assert!(v["bucket"]["fenced"].is_string(), "{v}");
    // The second writer goes on.
    write_and_flush(&b, 50..60);
}

/// Run `barq ARGS` with `env` added to a clean `BARQ_*` environment.
fn barq(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_barq"));
    for (k, _) in std::env::vars() {
        if k.starts_with("BARQ_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run barq")
}

#[test]
fn barq_restore_builds_a_node_from_the_bucket_after_the_data_directory_is_lost() {
    let Some((endpoint, bucket)) = s3_env() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let prefix = unique("restore");
    let url = format!("s3://{bucket}/{prefix}");
    let env = store_env(&endpoint, &bucket, &prefix);
    let data = tmp.path().join("data");
    let mut writer = Server::start(&data, &env, &[]);
    let w = Client::new(&writer, None);
    let create = json!({"name": "docs", "dimension": DIM, "metric": "l2"}).to_string();
    assert_eq!(w.post("/v1/collections", &create).0, 201);
    write_and_flush(&w, 0..400);
    wait_for("every segment is uploaded and published", || {
        let (_, v) = w.get("/v1/tiering/status");
        let b = &v["bucket"];
        b["upload_lag_segments"] == 0 && b["published_version"] == b["local_version"]
    });
    writer.kill();
    std::fs::remove_dir_all(&data).expect("lose the data directory");

    let client_env = [
        ("BARQ_S3_ENDPOINT", endpoint.as_str()),
        ("BARQ_S3_ALLOW_HTTP", "true"),
        ("BARQ_S3_REGION", "us-east-1"),
    ];
    // Bad input: a URL that names no store, nothing written.
    let restored = tmp.path().join("restored");
    let restored_s = restored.to_str().expect("utf8");
    let out = barq(
        &["--data-dir", restored_s, "restore", "--from", "ftp://x/y"],
        &client_env,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--from"),
        "{out:?}"
    );
    assert!(!restored.exists());

    let out = barq(
        &["--data-dir", restored_s, "restore", "--from", &url],
        &client_env,
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("restored 1 collection and 1 segment"),
        "{text}"
    );
    // Into a directory that holds data: refused.
    let out = barq(
        &["--data-dir", restored_s, "restore", "--from", &url],
        &client_env,
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    let srv = Server::start(&restored, &env, &[]);
    let c = Client::new(&srv, None);
    check_all(&c, 400);
    write_and_flush(&c, 400..450);
    check_all(&c, 450);
}
