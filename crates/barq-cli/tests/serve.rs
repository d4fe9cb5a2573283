//! End to end: the real `barq serve` binary on a free loopback port, driven over HTTP.
//!
//! - the offload scenario against the S3 test server (SeaweedFS from
//!   `scripts/test-services.sh`): write → flush → offload → the objects are in the bucket
//!   (listed with an independent client) → the segment files are gone locally → reads are
//!   correct → SIGTERM (exit 0) and restart → still correct;
//! - auth and bad input through the binary;
//! - SIGKILL during an offload, and again during a hydration → restart → every acknowledged
//!   write is readable and every segment is in exactly one consistent state.

#[path = "support/data.rs"]
#[allow(dead_code)]
mod data;
#[path = "support/server.rs"]
#[allow(dead_code)]
mod server;

use std::path::Path;

use data::{DIM, docs, s3_env, vector};
use serde_json::{Value, json};
use server::{Client, Server};

fn create(c: &Client, dim: usize) {
    let (s, v) = c.post(
        "/v1/collections",
        &json!({"name": "docs", "dimension": dim, "metric": "l2"}).to_string(),
    );
    assert_eq!(s, 201, "{v}");
}

/// Every document `0..n` reads back with its vector and payload, and a search for one of them
/// finds it first.
fn check_all(c: &Client, n: usize) {
    for i in (0..n).step_by(7).chain([n - 1]) {
        let (s, v) = c.get(&format!("/v1/collections/docs/documents/doc-{i}"));
        assert_eq!(s, 200, "doc-{i}: {v}");
        let got: Vec<f32> = serde_json::from_value(v["vector"].clone()).expect("vector");
        assert_eq!(got, vector(i), "doc-{i}");
        assert_eq!(v["payload"]["i"], i, "doc-{i}");
    }
    let (s, v) = c.post(
        "/v1/collections/docs/search",
        &json!({"vector": vector(n / 2), "k": 3, "with_payload": true}).to_string(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["id"], format!("doc-{}", n / 2), "{v}");
    assert_eq!(v["results"][0]["score"], 0.0);
    let (_, v) = c.get("/v1/collections/docs");
    assert_eq!(v["documents"], n, "{v}");
}

fn segment_files(data: &Path) -> Vec<String> {
    let dir = data.join("collections/docs/segments");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn list(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    barq_testkit::list_keys(&barq_testkit::s3_client(endpoint, bucket), Some(prefix))
}

#[test]
fn offload_through_http_to_s3_survives_a_restart() {
    let Some((endpoint, bucket)) = s3_env() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let prefix = format!("e2e-{}-{}", std::process::id(), rand_suffix());
    let env = [
        ("BARQ_STORAGE_TYPE", "s3"),
        ("BARQ_S3_BUCKET", bucket.as_str()),
        ("BARQ_S3_ENDPOINT", endpoint.as_str()),
        ("BARQ_S3_ALLOW_HTTP", "true"),
        ("BARQ_S3_REGION", "us-east-1"),
        ("BARQ_S3_PREFIX", prefix.as_str()),
    ];
    let mut srv = Server::start(&data, &env, &[]);
    assert!(
        srv.log().contains(&format!("s3://{bucket}/{prefix}")),
        "{}",
        srv.log()
    );
    let c = Client::new(&srv, None);
    create(&c, DIM);
    c.ok("/v1/collections/docs/documents", &docs(0..300));
    c.ok("/v1/collections/docs/flush", "");
    c.ok("/v1/collections/docs/documents", &docs(300..600));
    c.ok("/v1/collections/docs/flush", "");
    let v = c.ok("/v1/collections/docs/offload", "");
    assert_eq!(v["moves"].as_array().map(Vec::len), Some(2), "{v}");

    // The objects are in the bucket, seen by a client that is not Barq.
    let keys = list(&endpoint, &bucket, &prefix);
    let (_, segs) = c.get("/v1/collections/docs/segments");
    let segs = segs["segments"].as_array().expect("segments").clone();
    assert_eq!(segs.len(), 2);
    for s in &segs {
        assert_eq!(s["tier"], "cold");
        let key = s["remote_key"].as_str().expect("remote key");
        assert!(keys.contains(&key.to_owned()), "{key} not in {keys:?}");
    }
    // The segment files are gone locally; the manifest and the WAL are not.
    assert!(
        !segment_files(&data).iter().any(|f| f.ends_with(".seg")),
        "{:?}",
        segment_files(&data)
    );
    assert!(data.join("MANIFEST").is_file());
    assert!(data.join("collections/docs/wal").exists());

    check_all(&c, 600);
    let (s, v) = c.get("/v1/tiering/status");
    assert_eq!(s, 200);
    assert_eq!(v["cold_store_reachable"], true, "{v}");
    assert_eq!(c.get("/readyz").0, 200);

    // SIGTERM drains and exits 0; a new process reads the same data from the bucket.
    let status = srv.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        srv.log()
    );
    assert!(srv.log().contains("database closed"), "{}", srv.log());
    let srv = srv.restart();
    let c = Client::new(&srv, None);
    check_all(&c, 600);
    let v = c.ok("/v1/collections/docs/hydrate", "");
    assert_eq!(v["moves"].as_array().map(Vec::len), Some(2), "{v}");
    check_all(&c, 600);
    assert_eq!(
        segment_files(&data)
            .iter()
            .filter(|f| f.ends_with(".seg"))
            .count(),
        2
    );
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[test]
fn auth_and_bad_input_through_the_binary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let srv = Server::start(
        &data,
        &[
            ("BARQ_API_KEY", "data-key"),
            ("BARQ_ADMIN_API_KEY", "admin-key"),
        ],
        &["--max-body-bytes", "16KiB"],
    );
    assert!(!srv.log().contains("data-key"), "the key is never logged");
    let anon = Client::new(&srv, None);
    let wrong = Client::new(&srv, Some("nope"));
    let data_c = Client::new(&srv, Some("data-key"));
    let admin = Client::new(&srv, Some("admin-key"));
    assert_eq!(anon.get("/healthz").0, 200);
    let (s, v) = anon.get("/v1/collections");
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, v) = wrong.get("/v1/collections");
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    create(&data_c, 3);
    data_c.ok(
        "/v1/collections/docs/documents",
        r#"{"documents":[{"id":"a","vector":[1,2,3]}]}"#,
    );
    let (s, v) = data_c.call("DELETE", "/v1/collections/docs", None);
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let (s, v) = data_c.post("/v1/tiering/maintenance", "");
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(admin.post("/v1/tiering/maintenance", "").0, 200);

    let long_id = "x".repeat(257);
    let big = format!(
        r#"{{"documents":[{{"id":"b","vector":[1,2,3],"payload":{{"p":"{}"}}}}]}}"#,
        "x".repeat(20_000)
    );
    let cases = [
        (
            "/v1/collections/docs/documents",
            r#"{"documents":[{"id":"b","vector":[1,2]}]}"#.to_owned(),
            400,
            "dimension mismatch: collection \"docs\" expects 3, got 2",
        ),
        (
            "/v1/collections/docs/documents",
            r#"{"documents":[{"id":"b","vector":[1e39,2,3]}]}"#.to_owned(),
            400,
            "finite",
        ),
        (
            "/v1/collections/docs/documents",
            r#"{"documents":[{"id":"b","vector":[NaN,2,3]}]}"#.to_owned(),
            400,
            "malformed JSON",
        ),
        (
            "/v1/collections/docs/documents",
            format!(r#"{{"documents":[{{"id":"{long_id}","vector":[1,2,3]}}]}}"#),
            400,
            "256",
        ),
        (
            "/v1/collections/docs/documents",
            r#"{"documents":[{"id":"b","#.to_owned(),
            400,
            "malformed JSON",
        ),
        ("/v1/collections/docs/documents", big, 413, "limit"),
        (
            "/v1/collections/..%2F..%2Ftmp/documents",
            r#"{"documents":[{"id":"b","vector":[1,2,3]}]}"#.to_owned(),
            400,
            "invalid collection name",
        ),
    ];
    for (path, body, status, needle) in cases {
        let (s, v) = data_c.post(path, &body);
        assert_eq!(s, status, "{path}: {v}");
        let message = v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"));
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        assert!(v["error"]["code"].is_string());
    }
    let (_, v) = data_c.get("/v1/collections/docs");
    assert_eq!(v["documents"], 1, "nothing was written: {v}");
    assert_eq!(data_c.get("/v1/collections/docs/documents/b").0, 404);
    assert!(!tmp.path().join("tmp").exists());
}

#[test]
fn a_sigkill_during_an_offload_or_a_hydration_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // Slow moves: ~2.6 MB at 512 KiB/s each way (a download reports progress in ~1 MiB
    // steps, so there is time left after the first one).
    let env = [
        ("BARQ_TIER_MOVE_BANDWIDTH", "512KiB"),
        ("BARQ_TIER_MAINTENANCE_INTERVAL", "0s"),
    ];
    let mut srv = Server::start(&data, &env, &[]);
    let c = Client::new(&srv, None);
    let dim = 128;
    create(&c, dim);
    let mut acked = 0;
    for start in (0..5000).step_by(1000) {
        c.ok(
            "/v1/collections/docs/documents",
            &big_docs(dim, start..start + 1000),
        );
        acked = start + 1000;
    }
    c.ok("/v1/collections/docs/flush", "");

    // Killed in the middle of an offload, with writes acknowledged while it moved.
    acked = kill_mid_move(&mut srv, &data, "offload", dim, acked);
    let srv = srv.restart();
    let c = Client::new(&srv, None);
    check_after_crash(&c, &data, dim, acked);
    // The offload can be done now.
    let v = c.ok("/v1/collections/docs/offload", "");
    assert!(v["moves"].is_array(), "{v}");
    let (_, v) = c.get("/v1/tiering/status");
    assert_eq!(
        v["tiers"]["hot"]["segments"].as_u64().unwrap_or(0),
        0,
        "{v}"
    );

    // Killed in the middle of a hydration (a download to a temporary file).
    let mut srv = srv;
    acked = kill_mid_move(&mut srv, &data, "hydrate", dim, acked);
    let srv = srv.restart();
    let c = Client::new(&srv, None);
    check_after_crash(&c, &data, dim, acked);
    let v = c.ok("/v1/collections/docs/hydrate", "");
    assert!(v["moves"].is_array(), "{v}");
    let (_, v) = c.get("/v1/tiering/status");
    assert_eq!(
        v["tiers"]["cold"]["segments"].as_u64().unwrap_or(0),
        0,
        "{v}"
    );
    check_after_crash(&c, &data, dim, acked);
}

/// `doc-i` for `i` in `range`, with 128-ish-dimension vectors that the checks recompute.
fn big_docs(dim: usize, range: std::ops::Range<usize>) -> String {
    let docs: Vec<Value> = range
        .map(|i| json!({"id": format!("doc-{i}"), "vector": big_vector(dim, i)}))
        .collect();
    json!({ "documents": docs }).to_string()
}

fn big_vector(dim: usize, i: usize) -> Vec<f32> {
    (0..dim).map(|d| ((i + d) % 13) as f32).collect()
}

/// Start `what` (`offload` or `hydrate`) as an asynchronous operation, wait until it moves
/// bytes, write 100 more documents (acknowledged) while it runs, then SIGKILL the server.
/// Returns the number of acknowledged documents.
fn kill_mid_move(srv: &mut Server, data: &Path, what: &str, dim: usize, acked: usize) -> usize {
    let c = Client::new(srv, None);
    let (s, op) = c.post(&format!("/v1/collections/docs/{what}"), r#"{"async":true}"#);
    assert_eq!(s, 202, "{op}");
    let id = op["id"].as_str().expect("id").to_owned();
    let mut moving = false;
    for _ in 0..2000 {
        let (_, v) = c.get(&format!("/v1/operations/{id}"));
        assert_eq!(
            v["state"], "running",
            "the {what} must still be running: {v}"
        );
        // Bytes reported, or (a download from the local store arrives in one piece, after the
        // bandwidth limit's wait) its temporary file created.
        let downloading = segment_files(data).iter().any(|f| f.ends_with(".tmp"));
        if v["bytes_done"].as_u64().unwrap_or(0) > 0 || downloading {
            moving = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(moving, "the {what} never started moving bytes");
    c.ok(
        "/v1/collections/docs/documents",
        &big_docs(dim, acked..acked + 100),
    );
    let (_, v) = c.get(&format!("/v1/operations/{id}"));
    assert_eq!(v["state"], "running", "killed mid-{what}: {v}");
    srv.kill();
    acked + 100
}

/// Every acknowledged document reads back, and every segment is in exactly one consistent
/// state: a hot segment has its file, a cold one does not, and no temporary file is left.
fn check_after_crash(c: &Client, data: &Path, dim: usize, acked: usize) {
    let (_, v) = c.get("/v1/collections/docs");
    assert_eq!(v["documents"], acked, "{v}");
    for i in (0..acked).step_by(97).chain([acked - 1]) {
        let (s, v) = c.get(&format!("/v1/collections/docs/documents/doc-{i}"));
        assert_eq!(s, 200, "doc-{i} lost: {v}");
        assert_eq!(v["vector"], json!(big_vector(dim, i)), "doc-{i}");
    }
    let (_, segs) = c.get("/v1/collections/docs/segments");
    let files = segment_files(data);
    assert!(!files.iter().any(|f| f.ends_with(".tmp")), "{files:?}");
    for s in segs["segments"].as_array().expect("segments") {
        let local = files.contains(&s["file_name"].as_str().expect("file").to_owned());
        match s["tier"].as_str() {
            Some("hot") => assert!(local, "{s}"),
            Some("cold") => assert!(!local, "{s}"),
            other => panic!("tier {other:?}"),
        }
    }
}

/// SIGKILL while `POST /index` rewrites a large segment with its index, at three moments of the
/// build: after each restart every acknowledged write reads back, no temporary file is left,
/// and the segment is in the manifest once — plain or indexed, never half-written.
#[test]
fn a_sigkill_during_an_index_build_loses_nothing_and_leaves_no_half_written_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let env = [
        ("BARQ_INDEX_MIN_ROWS", "1000"),
        ("BARQ_TIER_MAINTENANCE_INTERVAL", "0s"),
    ];
    let mut srv = Server::start(&data, &env, &[]);
    let c = Client::new(&srv, None);
    let dim = 32;
    create(&c, dim);
    let mut acked = 0;
    for start in (0..60_000).step_by(2000) {
        c.ok(
            "/v1/collections/docs/documents",
            &big_docs(dim, start..start + 2000),
        );
        acked = start + 2000;
    }
    c.ok("/v1/collections/docs/flush", "");
    for delay_ms in [0u64, 40, 120] {
        let c = Client::new(&srv, None);
        let (s, op) = c.post("/v1/collections/docs/index", r#"{"async":true}"#);
        assert_eq!(s, 202, "{op}");
        let id = op["id"].as_str().expect("id").to_owned();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let (_, v) = c.get(&format!("/v1/operations/{id}"));
        assert_eq!(
            v["state"], "running",
            "killed mid-build ({delay_ms} ms): {v}"
        );
        srv.kill();
        srv = srv.restart();
        let c = Client::new(&srv, None);
        check_after_crash(&c, &data, dim, acked);
        let (_, v) = c.get("/v1/collections/docs");
        assert_eq!(v["segments"], 1, "the segment, once: {v}");
    }
    let c = Client::new(&srv, None);
    let v = c.ok("/v1/collections/docs/index", "");
    let (_, stats) = c.get("/v1/collections/docs");
    // The background pass may have indexed it first.
    assert!(v["indexed"].is_array(), "{v}");
    assert_eq!(stats["indexed_segments"], 1, "{stats}");
    check_after_crash(&c, &data, dim, acked);
}
