//! The node keeps serving through a cold-store outage, with a real S3 server: a private
//! SeaweedFS (`barq_testkit::Weed`) is stopped, then the CLI and `barq serve` start on it, take
//! writes, answer searches over hot data and report `degraded` (strict mode refuses to open);
//! the store is started again, the server sees it without a restart, the offload succeeds; a
//! SIGKILL and restart lose no acknowledged write.

#[path = "support/server.rs"]
#[allow(dead_code)]
mod server;
mod support;

use std::time::{Duration, Instant};

use barq_testkit::{Weed, list_keys, require, s3_client, weed_binary};
use serde_json::{Value, json};
use server::{Client, Server};
use support::Env;

const BUCKET: &str = "barq-outage";
const PREFIX: &str = "outage";

fn vector(i: usize) -> Vec<f32> {
    vec![i as f32, (i % 7) as f32, 1.0, -(i as f32)]
}

fn jsonl(range: std::ops::Range<usize>) -> String {
    range
        .map(|i| json!({"id": format!("d{i}"), "vector": vector(i)}).to_string() + "\n")
        .collect()
}

fn documents(range: std::ops::Range<usize>) -> String {
    let docs: Vec<Value> = range
        .map(|i| json!({"id": format!("d{i}"), "vector": vector(i)}))
        .collect();
    json!({ "documents": docs }).to_string()
}

/// Every document `0..n` reads back, and a search finds the one it is closest to.
fn check_all(c: &Client, n: usize) {
    for i in 0..n {
        let (s, v) = c.get(&format!("/v1/collections/docs/documents/d{i}"));
        assert_eq!(s, 200, "d{i}: {v}");
        let got: Vec<f32> = serde_json::from_value(v["vector"].clone()).expect("vector");
        assert_eq!(got, vector(i), "d{i}");
    }
    let (s, v) = c.post(
        "/v1/collections/docs/search",
        &json!({"vector": vector(n / 3), "k": 1}).to_string(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["id"], format!("d{}", n / 3), "{v}");
    assert_eq!(c.get("/v1/collections/docs").1["documents"], n);
}

/// The command succeeded (while the store is down it also logs the probe's failure on
/// stderr); its stdout.
fn success(out: &std::process::Output, args: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "barq {args:?} failed: {stderr}");
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// The command failed with exit status `code` and an `error: …` line; its stderr.
fn failure(out: &std::process::Output, args: &[&str], code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "barq {args:?}: {stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("error: ")),
        "barq {args:?}: no error line in {stderr}"
    );
    stderr
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_cli_and_the_server_serve_through_a_cold_store_outage() {
    let Some(bin) = weed_binary() else {
        return;
    };
    let Some(creds) = require(
        "S3 (SeaweedFS)",
        &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    ) else {
        return;
    };
    let env = Env::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut weed = Weed::new(bin, tmp.path().join("weed"), BUCKET, &creds[0], &creds[1]);
    weed.start();
    let endpoint = weed.endpoint();
    let bucket = s3_client(&endpoint, BUCKET);
    weed.wait_ready(&bucket);
    weed.kill(); // the store is down from here on
    let vars = [
        ("BARQ_STORAGE_TYPE", "s3"),
        ("BARQ_S3_BUCKET", BUCKET),
        ("BARQ_S3_ENDPOINT", endpoint.as_str()),
        ("BARQ_S3_ALLOW_HTTP", "true"),
        ("BARQ_S3_REGION", "us-east-1"),
        ("BARQ_S3_PREFIX", PREFIX),
        ("BARQ_COLD_STORE_RECHECK_INTERVAL", "200ms"),
    ];
    let barq = |args: &[&str], extra: &[(&str, &str)]| {
        let mut cmd = env.command(args);
        cmd.envs(vars.iter().chain(extra).copied())
            .stdin(std::process::Stdio::null());
        cmd.output().expect("run barq")
    };
    let store_name = format!("s3://{BUCKET}/{PREFIX}");

    // The CLI, with the store down: the probe's failure is logged, the command works.
    let create = [
        "collection",
        "create",
        "docs",
        "--dim",
        "4",
        "--metric",
        "l2",
    ];
    let out = barq(&create, &[]);
    success(&out, &create);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&store_name) && log.contains("not usable"),
        "the failure is logged, naming the store: {log}"
    );
    let file = env.file("docs.jsonl", jsonl(0..100));
    let upsert = ["upsert", "docs", "--file", &file];
    success(&barq(&upsert, &[]), &upsert);
    let flush = ["flush", "docs"];
    success(&barq(&flush, &[]), &flush);
    let search = [
        "--json",
        "search",
        "docs",
        "--vector",
        "[7, 0, 1, -7]",
        "-k",
        "1",
    ];
    let hits: Value = serde_json::from_str(&success(&barq(&search, &[]), &search)).expect("json");
    assert_eq!(hits["hits"][0]["id"], "d7", "{hits}");
    let status = ["--json", "tier", "status"];
    let v: Value = serde_json::from_str(&success(&barq(&status, &[]), &status)).expect("json");
    assert_eq!(v["cold_store_health"]["state"], "degraded", "{v}");
    let reason = v["cold_store_health"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains(&store_name), "{reason}");
    let offload = ["tier", "offload", "docs", "--all"];
    let err = failure(&barq(&offload, &[]), &offload, 4);
    assert!(err.contains(&store_name), "{err}");
    // Strict mode refuses to open without its bucket.
    let list = ["collection", "list"];
    let err = failure(
        &barq(&list, &[("BARQ_COLD_STORE_REQUIRED", "true")]),
        &list,
        4,
    );
    assert!(err.contains("the cold store is required"), "{err}");

    // The server, with the store down: it starts, is degraded, takes writes, serves hot data.
    let mut srv = Server::start(&env.data_dir(), &vars, &[]);
    let c = Client::new(&srv, None);
    let (s, v) = c.get("/readyz");
    assert_eq!((s, v["status"].as_str()), (200, Some("degraded")), "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&store_name),
        "{v}"
    );
    c.ok("/v1/collections/docs/documents", &documents(100..200));
    c.ok("/v1/collections/docs/flush", "");
    check_all(&c, 200);
    let (s, v) = c.get("/v1/tiering/status");
    assert_eq!(s, 200);
    assert_eq!(v["cold_store_health"]["state"], "degraded", "{v}");
    let (s, v) = c.post("/v1/collections/docs/offload", "");
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&store_name),
        "{v}"
    );

    // The store comes back: the server finds it by itself and the offload goes through.
    weed.start();
    weed.wait_ready(&bucket);
    wait_for("the server sees the store again", || {
        c.get("/readyz").1["status"] == "ready"
    });
    let v = c.ok("/v1/collections/docs/offload", "");
    assert_eq!(v["moves"].as_array().map(Vec::len), Some(2), "{v}");
    let keys = list_keys(&bucket, Some(PREFIX));
    let (_, segs) = c.get("/v1/collections/docs/segments");
    for s in segs["segments"].as_array().expect("segments") {
        assert_eq!(s["tier"], "cold", "{segs}");
        let key = s["remote_key"].as_str().expect("key").to_owned();
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    check_all(&c, 200);

    // Acknowledged writes only in the WAL survive a SIGKILL.
    c.ok("/v1/collections/docs/documents", &documents(200..250));
    srv.kill();
    let srv = srv.restart();
    let c = Client::new(&srv, None);
    check_all(&c, 250);
    assert_eq!(c.get("/readyz").1["status"], "ready");
}
