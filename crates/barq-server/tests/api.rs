//! The API in process: the router over a real database in a temporary directory, driven with
//! `tower::ServiceExt::oneshot` (no socket). The end-to-end tests that start the `barq` binary
//! are in crates/barq-cli/tests/serve.rs.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use barq_server::spec::{Access, ROUTES};
use barq_server::{AppState, ServerConfig};
use barq_storage::{Database, Options};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    router: Router,
    state: AppState,
    _dir: tempfile::TempDir,
}

fn api(config: ServerConfig) -> Api {
    api_with(config, Options::default())
}

fn api_with(config: ServerConfig, options: Options) -> Api {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path().join("data"), options).expect("open");
    let state = AppState::new(Arc::new(db), config);
    Api {
        router: state.router(),
        state,
        _dir: dir,
    }
}

impl Api {
    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        let req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .expect("request");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let resp = self.router.clone().oneshot(req).await.expect("response");
            let status = resp.status();
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            let v = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            (status, v)
        })
    }

    fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None, None)
    }

    fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body), None)
    }

    fn documents(&self, name: &str) -> u64 {
        let (s, v) = self.get(&format!("/v1/collections/{name}"));
        assert_eq!(s, StatusCode::OK, "{v}");
        v["documents"].as_u64().expect("documents")
    }
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an API error: {v}"))
}

fn setup(a: &Api) {
    let (s, v) = a.post(
        "/v1/collections",
        r#"{"name":"docs","dimension":3,"metric":"cosine"}"#,
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = a.post(
        "/v1/collections/docs/documents",
        r#"{"documents":[{"id":"a","vector":[1,0,0],"payload":{"n":1}},{"id":"b","vector":[0,1,0]}]}"#,
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["upserted"], 2);
}

#[test]
fn documents_round_trip_and_search_returns_the_nearest_first() {
    let a = api(ServerConfig::default());
    setup(&a);
    let (s, v) = a.get("/v1/collections/docs/documents/a");
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"id": "a", "vector": [1.0, 0.0, 0.0], "payload": {"n": 1}})
    );
    let (s, v) = a.post(
        "/v1/collections/docs/search",
        r#"{"vector":[0.9,0.1,0],"k":1,"with_payload":true}"#,
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["id"], "a");
    assert_eq!(results[0]["payload"], json!({"n": 1}));
    let (s, v) = a.call(
        Method::DELETE,
        "/v1/collections/docs/documents/a",
        None,
        None,
    );
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["deleted"], json!(["a"]));
    let (s, v) = a.get("/v1/collections/docs/documents/a");
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&v), "not_found");
    assert_eq!(a.documents("docs"), 1);
}

#[test]
fn bad_input_is_a_4xx_json_error_and_writes_nothing() {
    let a = api(ServerConfig {
        max_body_bytes: 4096,
        ..ServerConfig::default()
    });
    setup(&a);
    let long_id = "x".repeat(300);
    let cases: Vec<(String, String, StatusCode, &str, &str)> = vec![
        (
            "/v1/collections/docs/documents".into(),
            r#"{"documents":[{"id":"c","vector":[1,0]}]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "dimension mismatch: collection \"docs\" expects 3, got 2",
        ),
        (
            // 1e39 does not fit an f32: it becomes infinity, which is not a valid component.
            "/v1/collections/docs/documents".into(),
            r#"{"documents":[{"id":"c","vector":[1,0,0]},{"id":"d","vector":[1e39,0,0]}]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "d",
        ),
        (
            "/v1/collections/docs/documents".into(),
            r#"{"documents":[{"id":"c","vector":[NaN,0,0]}]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "malformed JSON",
        ),
        (
            "/v1/collections/docs/documents".into(),
            format!(r#"{{"documents":[{{"id":"{long_id}","vector":[1,0,0]}}]}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "id",
        ),
        (
            "/v1/collections/docs/documents".into(),
            r#"{"documents":[{"id":"c","vector":[1,0,0]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "malformed JSON",
        ),
        (
            "/v1/collections/docs/documents".into(),
            format!(
                r#"{{"documents":[{{"id":"c","vector":[1,0,0],"payload":{{"pad":"{}"}}}}]}}"#,
                "p".repeat(8192)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "limit",
        ),
        (
            "/v1/collections/..%2F..%2Fetc/documents".into(),
            r#"{"documents":[{"id":"c","vector":[1,0,0]}]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "invalid collection name \"../../etc\"",
        ),
        (
            "/v1/collections".into(),
            r#"{"name":"../x","dimension":3,"metric":"cosine"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "invalid collection name",
        ),
        (
            "/v1/collections".into(),
            r#"{"name":"x","dimension":3,"metric":"hamming"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "unknown variant `hamming`",
        ),
        (
            "/v1/collections/docs/search".into(),
            r#"{"vector":[1,0,0],"k":0}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "k",
        ),
        (
            "/v1/collections/docs/documents".into(),
            r#"{"documents":[{"id":"c","vector":[1,0,0],"paylod":{"a":1}}]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "unknown field `paylod`",
        ),
        (
            "/v1/collections/docs/search".into(),
            r#"{"vector":[1,0,0],"top":3}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "unknown field `top`",
        ),
    ];
    for (path, body, status, code, needle) in cases {
        let (s, v) = a.post(&path, &body);
        assert_eq!(s, status, "{path} {}: {v}", &body[..body.len().min(80)]);
        assert_eq!(error_code(&v), code, "{v}");
        let message = v["error"]["message"].as_str().expect("message");
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    // Nothing was written: still the two documents, no collection "x", and "c" is absent.
    assert_eq!(a.documents("docs"), 2);
    assert_eq!(
        a.get("/v1/collections/docs/documents/c").0,
        StatusCode::NOT_FOUND
    );
    let (_, v) = a.get("/v1/collections");
    assert_eq!(v["collections"].as_array().map(Vec::len), Some(1), "{v}");
}

#[test]
fn vectors_may_be_sent_as_base64() {
    let a = api(ServerConfig::default());
    setup(&a);
    let v = [0.5f32, -2.0, 1.0e-3];
    let b64 = barq_core::encode_base64_vector(&v);
    let (s, body) = a.post(
        "/v1/collections/docs/documents",
        &format!(r#"{{"documents":[{{"id":"c","vector":"{b64}"}}]}}"#),
    );
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, doc) = a.get("/v1/collections/docs/documents/c");
    let got: Vec<f32> = serde_json::from_value(doc["vector"].clone()).expect("vector");
    assert_eq!(got, v);
    let (s, res) = a.post(
        "/v1/collections/docs/search",
        &format!(r#"{{"vector":"{b64}","k":1}}"#),
    );
    assert_eq!(s, StatusCode::OK, "{res}");
    assert_eq!(res["results"][0]["id"], "c");
    // A base64 vector of the wrong length is named like any other.
    let short = barq_core::encode_base64_vector(&v[..2]);
    let (s, e) = a.post(
        "/v1/collections/docs/documents",
        &format!(r#"{{"documents":[{{"id":"d","vector":"{short}"}}]}}"#),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expects 3, got 2"),
        "{e}"
    );
}

#[test]
fn missing_things_are_404_and_a_duplicate_collection_is_409() {
    let a = api(ServerConfig::default());
    setup(&a);
    let (s, v) = a.get("/v1/collections/nope");
    assert_eq!((s, error_code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, v) = a.post("/v1/collections/docs/offload", r#"{"segments":[99]}"#);
    assert_eq!((s, error_code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, v) = a.post(
        "/v1/collections",
        r#"{"name":"docs","dimension":3,"metric":"cosine"}"#,
    );
    assert_eq!((s, error_code(&v)), (StatusCode::CONFLICT, "conflict"));
    let (s, v) = a.get("/v1/no/such/route");
    assert_eq!((s, error_code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, v) = a.call(Method::PUT, "/v1/collections", None, None);
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[test]
fn keys_are_required_and_admin_routes_need_the_admin_key() {
    let a = api(ServerConfig {
        api_key: Some("data-key".into()),
        admin_api_key: Some("admin-key".into()),
        ..ServerConfig::default()
    });
    let create = r#"{"name":"docs","dimension":3,"metric":"cosine"}"#;
    let (s, v) = a.call(Method::POST, "/v1/collections", Some(create), None);
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (s, v) = a.call(Method::POST, "/v1/collections", Some(create), Some("wrong"));
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert_eq!(
        a.documents_unchecked(),
        0,
        "a refused request created nothing"
    );
    let (s, _) = a.call(
        Method::POST,
        "/v1/collections",
        Some(create),
        Some("data-key"),
    );
    assert_eq!(s, StatusCode::CREATED);
    // The data key on an admin route: 403, and nothing happens.
    let (s, v) = a.call(
        Method::DELETE,
        "/v1/collections/docs",
        None,
        Some("data-key"),
    );
    assert_eq!((s, error_code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, v) = a.call(
        Method::POST,
        "/v1/collections/docs/offload",
        None,
        Some("data-key"),
    );
    assert_eq!((s, error_code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    // The admin key works on data routes and admin routes.
    let (s, _) = a.call(Method::GET, "/v1/collections/docs", None, Some("admin-key"));
    assert_eq!(s, StatusCode::OK);
    let (s, _) = a.call(
        Method::DELETE,
        "/v1/collections/docs",
        None,
        Some("admin-key"),
    );
    assert_eq!(s, StatusCode::OK);
    // Health checks are open, for HEAD too.
    assert_eq!(
        a.call(Method::GET, "/healthz", None, None).0,
        StatusCode::OK
    );
    assert_eq!(a.call(Method::GET, "/readyz", None, None).0, StatusCode::OK);
    assert_eq!(
        a.call(Method::HEAD, "/healthz", None, None).0,
        StatusCode::OK
    );
    // The scheme is case-insensitive.
    let req = Request::builder()
        .method(Method::GET)
        .uri("/v1/collections")
        .header(header::AUTHORIZATION, "bearer data-key")
        .body(Body::empty())
        .expect("request");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let resp = rt
        .block_on(a.router.clone().oneshot(req))
        .expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
}

impl Api {
    /// Collections in the database, read past the auth layer.
    fn documents_unchecked(&self) -> usize {
        self.state.db().list_collections().len()
    }
}

#[test]
fn without_an_admin_key_the_api_key_guards_admin_routes() {
    let a = api(ServerConfig {
        api_key: Some("k".into()),
        ..ServerConfig::default()
    });
    let (s, _) = a.call(Method::POST, "/v1/tiering/maintenance", None, None);
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = a.call(Method::POST, "/v1/tiering/maintenance", None, Some("k"));
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[test]
fn the_openapi_document_lists_exactly_the_routes_that_are_served() {
    let a = api(ServerConfig::default());
    setup(&a);
    let (s, doc) = a.get("/v1/openapi.json");
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("operations") {
            documented += 1;
            let route = ROUTES
                .iter()
                .find(|r| r.path == path && r.method.eq_ignore_ascii_case(method))
                .unwrap_or_else(|| panic!("{method} {path} is documented but not in ROUTES"));
            assert_eq!(op["summary"], route.summary);
        }
    }
    assert_eq!(documented, ROUTES.len());
    // Every route is served: the router answers something other than "no route" / "method not
    // allowed" for each (ids that do not exist give the handler's own 404).
    for r in ROUTES {
        let path = r.path.replace("{name}", "docs").replace("{id}", "op-999");
        let method = Method::from_bytes(r.method.as_bytes()).expect("method");
        let body = r.body.map(|_| "{}");
        let (s, v) = a.call(method, &path, body, None);
        assert_ne!(
            s,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {path}: {v}",
            r.method
        );
        if s == StatusCode::NOT_FOUND {
            let message = v["error"]["message"].as_str().unwrap_or_default();
            assert!(
                !message.starts_with("no route"),
                "{} {path} is not routed",
                r.method
            );
        }
        // The access levels in the table are what the auth layer enforces (checked above with
        // keys); here only that admin routes are the mutating tiering/compaction/drop ones.
        if r.access == Access::Admin {
            assert!(
                [
                    "DELETE /v1/collections/{name}",
                    "PUT /v1/collections/{name}/tiering",
                    "POST /v1/tiering/maintenance"
                ]
                .contains(&format!("{} {}", r.method, r.path).as_str())
                    || [
                        "compact",
                        "index",
                        "indexed-fields",
                        "offload",
                        "hydrate",
                        "pin",
                        "unpin"
                    ]
                    .iter()
                    .any(|w| r.path.ends_with(w)),
                "{} {} should not need the admin key",
                r.method,
                r.path
            );
        }
    }
}

#[test]
fn an_asynchronous_offload_reports_progress_and_its_result() {
    let a = api(ServerConfig::default());
    setup(&a);
    let (s, v) = a.post("/v1/collections/docs/flush", "");
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, op) = a.post("/v1/collections/docs/offload", r#"{"async":true}"#);
    assert_eq!(s, StatusCode::ACCEPTED, "{op}");
    let id = op["id"].as_str().expect("id").to_owned();
    let mut last = Value::Null;
    for _ in 0..200 {
        let (s, v) = a.get(&format!("/v1/operations/{id}"));
        assert_eq!(s, StatusCode::OK);
        if v["state"] != "running" {
            last = v;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(last["state"], "succeeded", "{last}");
    assert_eq!(last["result"]["moves"][0]["to"], "cold");
    assert_eq!(last["bytes_done"], last["bytes_total"]);
    assert!(last["bytes_total"].as_u64().unwrap_or(0) > 0);
    let (_, v) = a.get("/v1/collections/docs/segments");
    assert_eq!(v["segments"][0]["tier"], "cold");
    // Reads are the same from the cold tier.
    let (_, v) = a.get("/v1/collections/docs/documents/a");
    assert_eq!(v["payload"], json!({"n": 1}));
    // Hydrate synchronously.
    let (s, v) = a.post("/v1/collections/docs/hydrate", "");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["moves"][0]["to"], "hot");
}

/// An API whose cold store is a fault-injecting wrapper over an in-memory store.
fn api_over_faulty_store(config: ServerConfig) -> (Api, Arc<barq_testkit::FaultyStore>) {
    use barq_storage::tiering::{ColdStoreSpec, TieringOptions};
    use barq_testkit::FaultyStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let faulty = Arc::new(FaultyStore::new(Arc::new(
        object_store::memory::InMemory::new(),
    )));
    let options = Options {
        tiering: TieringOptions {
            maintenance_interval: None,
            store_recheck_interval: std::time::Duration::from_millis(50),
            // The offloads under test are the only uploads.
            upload_on_seal: Some(false),
            ..TieringOptions::default()
        },
        ..Options::default()
    };
    let db = Database::builder(dir.path().join("data"))
        .options(options)
        .cold_store(ColdStoreSpec {
            store: faulty.clone(),
            prefix: "t".into(),
            description: "test store".into(),
        })
        .open()
        .expect("open");
    let state = AppState::new(Arc::new(db), config);
    let a = Api {
        router: state.router(),
        state,
        _dir: dir,
    };
    (a, faulty)
}

#[test]
fn an_unreachable_cold_store_is_503_for_what_needs_it_and_nothing_else() {
    let (a, faulty) = api_over_faulty_store(ServerConfig::default());
    setup(&a);
    let (s, v) = a.post("/v1/collections/docs/flush", "");
    assert_eq!(s, StatusCode::OK, "{v}");
    faulty.set_offline(true);
    let (s, v) = a.post("/v1/collections/docs/offload", "");
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("test store"),
        "{v}"
    );
    // Degraded, not unready: the node still serves writes and hot data.
    let (s, v) = a.get("/readyz");
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("degraded")),
        "{v}"
    );
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("test store"),
        "{v}"
    );
    let (s, v) = a.get("/v1/tiering/status");
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["cold_store_reachable"], false, "{v}");
    assert_eq!(v["cold_store_health"]["state"], "degraded", "{v}");
    // Hot data is served and written as usual.
    assert_eq!(a.get("/v1/collections/docs/documents/a").0, StatusCode::OK);
    let (s, v) = a.post(
        "/v1/collections/docs/documents",
        r#"{"documents":[{"id":"c","vector":[0,0,1]}]}"#,
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    faulty.set_offline(false);
    // The re-probe (every 50 ms here) finds the store again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, v) = a.get("/readyz");
        assert_eq!(s, StatusCode::OK, "{v}");
        if v["status"] == "ready" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {v}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Two segments, and the store refuses the first upload (all its retries): the other one
    // still moves, and the answer names both.
    a.post("/v1/collections/docs/flush", "");
    faulty.fail(barq_testkit::Op::Put, 3);
    let (s, v) = a.post("/v1/collections/docs/offload", "");
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("1 of 2 moves failed"), "{message}");
    let (_, segs) = a.get("/v1/collections/docs/segments");
    let tiers: Vec<&str> = segs["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .filter_map(|s| s["tier"].as_str())
        .collect();
    assert_eq!(tiers, ["hot", "cold"], "{segs}");
    let (s, v) = a.post("/v1/collections/docs/offload", "");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["moves"].as_array().map(Vec::len), Some(1), "{v}");
}

#[test]
fn a_request_over_the_timeout_is_a_503_timeout_and_async_operations_are_not_cut() {
    use barq_testkit::Op;
    let (a, faulty) = api_over_faulty_store(ServerConfig {
        request_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    });
    setup(&a);
    a.post("/v1/collections/docs/flush", "");
    faulty.delay(Op::Put, Duration::from_secs(1));
    // As an operation, a move is not bound by the request timeout.
    let started = std::time::Instant::now();
    let (s, op) = a.post("/v1/collections/docs/offload", r#"{"async":true}"#);
    assert_eq!(s, StatusCode::ACCEPTED, "{op}");
    let id = op["id"].as_str().expect("id").to_owned();
    let done = (0..500).find_map(|_| {
        let (_, v) = a.get(&format!("/v1/operations/{id}"));
        if v["state"] == "running" {
            std::thread::sleep(Duration::from_millis(20));
            None
        } else {
            Some(v)
        }
    });
    assert_eq!(done.expect("finished")["state"], "succeeded");
    assert!(started.elapsed() >= Duration::from_secs(1));
    // The same kind of move as a plain request is cut at the timeout with a 503.
    let (s, v) = a.post(
        "/v1/collections/docs/documents",
        r#"{"documents":[{"id":"c","vector":[0,0,1]}]}"#,
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    a.post("/v1/collections/docs/flush", "");
    let (s, v) = a.post("/v1/collections/docs/offload", "");
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("async")
    );
}

#[test]
fn tiering_overrides_round_trip_in_human_units() {
    let a = api(ServerConfig::default());
    setup(&a);
    let (s, v) = a.call(
        Method::PUT,
        "/v1/collections/docs/tiering",
        Some(r#"{"move_to_cold_after":"7d","max_hot_size_bytes":"1GiB"}"#),
        None,
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    // Durations come back as humantime strings, sizes as exact integers.
    assert_eq!(
        v["overrides"],
        serde_json::json!({"move_to_cold_after": "7days", "max_hot_size_bytes": 1_073_741_824u64}),
        "{v}"
    );
    let (s, got) = a.call(Method::GET, "/v1/collections/docs/tiering", None, None);
    assert_eq!(
        (s, &got),
        (StatusCode::OK, &v),
        "GET shows what PUT answered"
    );
    let o = a.state.db().tiering().overrides("docs").expect("overrides");
    assert_eq!(o.move_to_cold_after, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(o.max_hot_size_bytes, Some(1 << 30));
    let (s, v) = a.call(
        Method::PUT,
        "/v1/collections/docs/tiering",
        Some(r#"{"move_to_cold_afterr":"7d"}"#),
        None,
    );
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_argument"),
        "an unknown field: {v}"
    );
    let (s, v) = a.call(
        Method::PUT,
        "/v1/collections/docs/tiering",
        Some(r#"{"move_to_cold_after":"soon"}"#),
        None,
    );
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_argument")
    );
    // A warm delay on a database without a warm tier: refused by name, nothing changes.
    let (s, v) = a.call(
        Method::PUT,
        "/v1/collections/docs/tiering",
        Some(r#"{"move_to_warm_after":"1d"}"#),
        None,
    );
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_argument"),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(r#"tiering overrides of collection "docs": "#)
            && message.contains("tiering.move_to_warm_after")
            && message.contains("needs a warm tier"),
        "{v}"
    );
    let after = a.state.db().tiering().overrides("docs").expect("overrides");
    assert_eq!(after, o, "a refused PUT changes nothing");
}

#[test]
fn metrics_count_requests_and_show_the_database() {
    let a = api(ServerConfig::default());
    setup(&a);
    a.get("/v1/collections/docs/documents/a");
    let (s, v) = a.get("/metrics");
    assert_eq!(s, StatusCode::OK);
    let text = v.as_str().expect("text");
    for needle in [
        r#"barq_http_requests_total{method="GET",route="/v1/collections/{name}/documents/{id}",status="200"} 1"#,
        r#"barq_http_request_duration_seconds_count{method="GET",route="/v1/collections/{name}/documents/{id}"} 1"#,
        r#"barq_collection_documents{collection="docs"} 2"#,
        "barq_tier_moves_total{result=\"done\"} 0",
        "barq_cold_cache_requests_total{result=\"hit\"}",
        "barq_remote_requests_total{result=\"sent\"}",
        "barq_tier_move_duration_seconds_total",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
}

/// A scrape never touches the cold store: with every segment cold and nothing cached, `/metrics`
/// sends no request to it, and it leaves out only the document count of the cold collection.
#[test]
fn a_metrics_scrape_sends_nothing_to_the_cold_store() {
    let (a, faulty) = api_over_faulty_store(ServerConfig::default());
    setup(&a);
    assert_eq!(a.post("/v1/collections/docs/flush", "").0, StatusCode::OK);
    a.post(
        "/v1/collections/docs/documents",
        r#"{"documents":[{"id":"c","vector":[0,0,1]}]}"#,
    );
    assert_eq!(a.post("/v1/collections/docs/flush", "").0, StatusCode::OK);
    let (s, v) = a.post("/v1/collections/docs/offload", "");
    assert_eq!(s, StatusCode::OK, "{v}");
    let before = faulty.requests();
    let (s, v) = a.get("/metrics");
    assert_eq!(s, StatusCode::OK);
    let text = v.as_str().expect("text");
    assert_eq!(
        faulty.requests(),
        before,
        "the scrape sent requests to the store"
    );
    assert!(
        text.contains("barq_collection_rows{collection=\"docs\"} 3"),
        "{text}"
    );
    assert!(
        !text.contains("barq_collection_documents{collection=\"docs\"}"),
        "{text}"
    );
    assert!(text.contains("barq_cold_store_degraded{} 0"), "{text}");
    // The exact count is still there for those who ask for it (and it reads the store).
    assert_eq!(a.documents("docs"), 3);
}

/// `index` builds the missing indexes, the collection shows them per segment, `explain` says
/// how each segment was searched, and cold searches fill the per-query histograms.
#[test]
fn indexes_are_built_on_demand_shown_per_segment_and_searches_explain_themselves() {
    let a = api_with(
        ServerConfig::default(),
        Options {
            background_compaction: false,
            index_min_rows: 1000,
            ..Options::default()
        },
    );
    let (s, v) = a.post(
        "/v1/collections",
        r#"{"name":"docs","dimension":8,"metric":"l2"}"#,
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut x = 7u64;
    let docs: Vec<Value> = (0..3000)
        .map(|i| {
            let v: Vec<f32> = (0..8)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (x >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect();
            json!({"id": format!("d{i}"), "vector": v})
        })
        .collect();
    let (s, v) = a.post(
        "/v1/collections/docs/documents",
        &json!({ "documents": docs }).to_string(),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = a.post("/v1/collections/docs/flush", "");
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = a.get("/v1/collections/docs");
    assert_eq!(v["indexed_segments"], 0, "{v}");
    assert_eq!(v["unindexed_rows"], 3000, "{v}");
    let (s, v) = a.post("/v1/collections/docs/index", "");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["indexed"].as_array().map(Vec::len), Some(1), "{v}");
    let (_, v) = a.get("/v1/collections/docs");
    assert_eq!(v["indexed_segments"], 1, "{v}");
    assert_eq!(v["unindexed_rows"], 0, "{v}");
    let seg = &v["segment_list"][0];
    assert_eq!(seg["indexed"], true, "{v}");
    assert!(seg["clusters"].as_u64().is_some_and(|c| c >= 1), "{v}");
    assert!(seg["index_bytes"].as_u64().is_some_and(|b| b > 0), "{v}");
    let (s, v) = a.post("/v1/collections/docs/index", "");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["indexed"], json!([]), "nothing left to index");

    let q = r#""vector":[0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5],"k":5"#;
    let (s, v) = a.post(
        "/v1/collections/docs/search",
        &format!("{{{q},\"explain\":true}}"),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let ex = &v["explain"];
    assert_eq!(ex["segments"][0]["plan"], "index", "{v}");
    assert!(
        ex["clusters_probed"].as_u64().is_some_and(|c| c >= 1),
        "{v}"
    );
    assert!(ex["rows_reranked"].as_u64().is_some_and(|r| r >= 5), "{v}");
    let (s, v) = a.post(
        "/v1/collections/docs/search",
        &format!("{{{q},\"exact\":true,\"explain\":true}}"),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["explain"]["segments"][0]["plan"], "exact", "{v}");
    assert_eq!(v["explain"]["rows_scanned"], 3000, "{v}");
    let (s, v) = a.post("/v1/collections/docs/search", &format!("{{{q}}}"));
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("explain").is_none(), "only when asked: {v}");
    let (s, v) = a.post(
        "/v1/collections/docs/search",
        &format!("{{{q},\"recall\":1.5}}"),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    let (s, v) = a.post("/v1/collections/docs/offload", "");
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = a.post(
        "/v1/collections/docs/search",
        &format!("{{{q},\"explain\":true}}"),
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["explain"]["segments"][0]["tier"], "cold", "{v}");
    assert!(
        v["explain"]["cold_requests"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{v}"
    );
    let (_, m) = a.get("/metrics");
    let text = m.as_str().expect("text");
    for needle in [
        "barq_search_cold_requests_count 1",
        "barq_search_cold_bytes_count 1",
        "barq_cold_heads_kept{} 1",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
}

#[test]
fn filtered_search_count_and_indexed_fields_over_http_and_bad_filters_are_400s() {
    let a = api(ServerConfig::default());
    let (s, v) = a.post(
        "/v1/collections",
        r#"{"name":"docs","dimension":2,"metric":"l2","indexed_fields":[{"path":"lang","type":"keyword"}]}"#,
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["indexed_fields"],
        json!([{"path": "lang", "type": "keyword"}])
    );
    let docs: Vec<Value> = (0..40)
        .map(|i| {
            json!({"id": format!("d{i:02}"), "vector": [i as f32, 0.0],
                   "payload": {"lang": if i % 4 == 0 { "en" } else { "de" }, "year": 2000 + i}})
        })
        .collect();
    // Half in a segment, half in the memtable.
    for (i, half) in docs.chunks(20).enumerate() {
        let (s, v) = a.post(
            "/v1/collections/docs/documents",
            &json!({"documents": half}).to_string(),
        );
        assert_eq!(s, StatusCode::OK, "{v}");
        if i == 0 {
            let (s, _) = a.post("/v1/collections/docs/flush", "");
            assert_eq!(s, StatusCode::OK);
        }
    }
    let search = json!({"vector": [21.0, 0.0], "k": 3, "explain": true,
        "filter": {"must": [{"key": "lang", "match": {"value": "en"}},
                            {"key": "year", "range": {"gte": 2010}}]}});
    let (s, v) = a.post("/v1/collections/docs/search", &search.to_string());
    assert_eq!(s, StatusCode::OK, "{v}");
    let ids: Vec<&str> = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|h| h["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["d20", "d24", "d16"], "the nearest among the matches");
    assert_eq!(
        v["explain"]["rows_matched"], 2,
        "d12 and d16 in the segment: {v}"
    );
    assert_eq!(
        v["explain"]["segments"][0]["filter"], "payload scan",
        "year is not indexed"
    );
    let (s, v) = a.post(
        "/v1/collections/docs/count",
        r#"{"filter":{"must":[{"key":"lang","match":{"value":"en"}}]}}"#,
    );
    assert_eq!((s, v["count"].clone()), (StatusCode::OK, json!(10)), "{v}");
    let (s, v) = a.post("/v1/collections/docs/count", "");
    assert_eq!((s, v["count"].clone()), (StatusCode::OK, json!(40)), "{v}");
    let (s, v) = a.post(
        "/v1/collections/docs/indexed-fields",
        r#"{"indexed_fields":[{"path":"year","type":"integer"}]}"#,
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["indexed_fields"].as_array().map(Vec::len), Some(2));
    let (s, v) = a.get("/v1/collections/docs");
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["indexed_fields"][1],
        json!({"path": "year", "type": "integer"})
    );
    // Bad filters: a 400 that names the condition, and nothing runs.
    for (filter, names) in [
        (
            json!({"must": [{"key": "lang", "equals": "en"}]}),
            "filter.must[0]",
        ),
        (
            json!({"must": [{"key": "year", "range": {"from": 1}}]}),
            "filter.must[0].range",
        ),
        (
            json!({"should": [{"key": "lang", "match": {"value": [1]}}]}),
            "filter.should[0].match",
        ),
        (
            json!({"must": [{"key": "", "match": {"value": 1}}]}),
            "filter.must[0].key",
        ),
        (json!({"maybe": []}), "unknown field \"maybe\""),
        (json!([1]), "filter"),
    ] {
        let body = json!({"vector": [1.0, 0.0], "filter": filter.clone()}).to_string();
        let (s, v) = a.post("/v1/collections/docs/search", &body);
        assert_eq!(s, StatusCode::BAD_REQUEST, "{filter}: {v}");
        assert_eq!(error_code(&v), "invalid_argument", "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{filter}: {message}");
        let (s, _) = a.post(
            "/v1/collections/docs/count",
            &json!({"filter": filter}).to_string(),
        );
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
    let mut deep = json!({"must": [{"key": "lang", "match": {"value": "en"}}]});
    for _ in 0..9 {
        deep = json!({"must": [deep]});
    }
    let (s, v) = a.post(
        "/v1/collections/docs/search",
        &json!({"vector": [1.0, 0.0], "filter": deep}).to_string(),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nest at most"),
        "{v}"
    );
    let (s, v) = a.post(
        "/v1/collections/docs/indexed-fields",
        r#"{"indexed_fields":[{"path":"lang","type":"integer"}]}"#,
    );
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(a.documents("docs"), 40);
}
