//! End-to-end tests of client mode (`barq --url URL …`): the real `barq serve` binary on a free
//! loopback port and a temporary data directory, driven by the real `barq` binary; the same
//! operations run in local mode on another data directory must print the same thing.

mod support;

#[path = "support/server.rs"]
// Shared with tests/serve.rs, which uses more of it.
#[allow(dead_code)]
mod server;

use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::{Env, failure, success};

/// Environment variables that would change what a client command does.
const ENV: &[&str] = &[
    "BARQ_URL",
    "BARQ_API_KEY",
    "BARQ_ADMIN_API_KEY",
    "BARQ_DATA_DIR",
    "BARQ_DURABILITY",
    "BARQ_WARM_DIR",
    "BARQ_CONFIG",
    "RUST_LOG",
];

/// A running `barq serve` (killed when dropped, also when a test panics) on a temporary data
/// directory, and how to run `barq --url URL …` against it.
struct Remote {
    server: server::Server,
    _dir: tempfile::TempDir,
}

impl Remote {
    /// Start a server with the environment `vars`.
    fn start(vars: &[(&str, &str)]) -> Remote {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = server::Server::start(&dir.path().join("data"), vars, &[]);
        Remote { server, _dir: dir }
    }

    fn url(&self) -> &str {
        &self.server.url
    }

    /// `barq --url URL args…`, with `vars` set.
    fn run_with(&self, vars: &[(&str, &str)], args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_barq"));
        cmd.arg("--url")
            .arg(self.url())
            .args(args)
            .stdin(Stdio::null());
        for v in ENV {
            cmd.env_remove(v);
        }
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().expect("run barq")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(&[], args)
    }

    fn ok(&self, args: &[&str]) -> String {
        success(&self.run(args), args)
    }

    fn json(&self, args: &[&str]) -> Value {
        parse(&self.ok(&json_args(args)), args)
    }

    fn fails(&self, args: &[&str], code: i32) -> String {
        failure(&self.run(args), args, code)
    }
}

fn json_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    all
}

fn parse(stdout: &str, args: &[&str]) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// Run `args` in both modes and check that they print the same text.
fn same_text(local: &Env, remote: &Remote, args: &[&str]) -> String {
    let l = local.ok(args);
    let r = remote.ok(args);
    assert_eq!(l, r, "barq {args:?}: local and remote text differ");
    r
}

/// Run `args --json` in both modes and check that they print the same document once `strip`
/// removed what legitimately differs (timestamps, durations, paths).
fn same_json(local: &Env, remote: &Remote, args: &[&str], strip: fn(&mut Value)) -> Value {
    let mut l = local.json(args);
    let mut r = remote.json(args);
    strip(&mut l);
    strip(&mut r);
    assert_eq!(l, r, "barq --json {args:?}: local and remote differ");
    r
}

fn keep(_: &mut Value) {}

/// Remove `keys` from every object in `v`, at any depth.
fn remove_keys(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(map) => {
            for k in keys {
                map.remove(*k);
            }
            for x in map.values_mut() {
                remove_keys(x, keys);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| remove_keys(x, keys)),
        _ => {}
    }
}

/// Collection statistics: creation times and WAL sizes depend on when and how often the
/// database was opened; the data directory differs.
fn strip_stats(v: &mut Value) {
    remove_keys(v, &["created_at_ms", "wal_bytes", "last_seq", "data_dir"]);
}

/// Tiering status: the counters are per process (one command, or the server's life), and the
/// access statistics and times depend on the process too.
fn strip_status(v: &mut Value) {
    remove_keys(
        v,
        &[
            "counters",
            "cold_store",
            "last_access_ms",
            "access_count",
            "sealed_at_ms",
            "last_maintenance_ms",
            "last_probe_ms",
            "since_ms",
        ],
    );
}

fn docs_file(env: &Env, name: &str, range: std::ops::Range<u32>) -> String {
    let mut text = String::new();
    for i in range {
        let v = [i as f32 * 0.25, (i % 5) as f32, 1.0];
        text.push_str(&format!(
            "{{\"id\": \"d{i}\", \"vector\": {v:?}, \"payload\": {{\"n\": {i}}}}}\n"
        ));
    }
    env.file(name, text)
}

#[test]
fn remote_commands_print_what_local_commands_print() {
    let local = Env::new();
    let server = Remote::start(&[]);

    same_text(
        &local,
        &server,
        &[
            "collection",
            "create",
            "docs",
            "--dim",
            "3",
            "--metric",
            "l2",
        ],
    );
    let first = docs_file(&local, "first.jsonl", 0..120);
    same_text(&local, &server, &["upsert", "docs", "--file", &first]);
    same_text(&local, &server, &["get", "docs", "d7"]);
    same_json(&local, &server, &["get", "docs", "d7"], keep);
    let search = [
        "search",
        "docs",
        "--vector",
        "1,2,1",
        "-k",
        "7",
        "--with-payload",
    ];
    same_text(&local, &server, &search);
    let hits = same_json(&local, &server, &search, keep);
    assert_eq!(hits["hits"].as_array().map(Vec::len), Some(7), "{hits}");

    same_text(&local, &server, &["flush", "docs"]);
    let second = docs_file(&local, "second.jsonl", 120..200);
    same_text(&local, &server, &["upsert", "docs", "--file", &second]);
    same_text(&local, &server, &["flush", "docs"]);

    let stats = same_json(&local, &server, &["stats", "docs"], strip_stats);
    assert_eq!(stats["documents"], 200, "{stats}");
    assert_eq!(stats["segments"], 2, "{stats}");
    same_json(&local, &server, &["stats"], strip_stats);
    same_text(&local, &server, &["collection", "list"]);
    same_json(&local, &server, &["collection", "list"], keep);

    // Tiering: offload everything (asynchronous operations on the server), read from the cold
    // tier, bring it back.
    same_text(&local, &server, &["tier", "offload", "docs", "--all"]);
    let status = same_json(&local, &server, &["tier", "status"], strip_status);
    assert_eq!(status["tiers"]["cold"]["segments"], 2, "{status}");
    // The tables of tiers and segments are the same; the cold store's path and the counters
    // (of one command, or of the server's life) differ.
    let tables = |text: &str| {
        let start = text.find("\n\nTIER").expect("a table of tiers");
        let end = text.find("\nCOUNTER").expect("a table of counters");
        text[start..end].to_owned()
    };
    let (l, r) = (
        local.ok(&["tier", "status"]),
        server.ok(&["tier", "status"]),
    );
    assert_eq!(tables(&l), tables(&r), "tier status:\n{l}\n{r}");
    assert!(r.contains("collection \"docs\""), "{r}");
    assert!(r.contains("\nCOUNTER (SINCE THE SERVER STARTED)"), "{r}");
    same_json(&local, &server, &search, keep);
    same_text(&local, &server, &["tier", "offload", "docs", "--all"]);
    same_text(
        &local,
        &server,
        &["tier", "hydrate", "docs", "--segment", "1"],
    );
    same_json(&local, &server, &["tier", "hydrate", "docs", "--all"], keep);
    let status = same_json(&local, &server, &["tier", "status"], strip_status);
    assert_eq!(status["tiers"]["hot"]["segments"], 2, "{status}");
    same_text(&local, &server, &["tier", "pin", "docs"]);
    same_text(&local, &server, &["tier", "pin", "docs"]);
    same_text(
        &local,
        &server,
        &["tier", "unpin", "docs", "--segment", "1"],
    );
    same_text(&local, &server, &["tier", "unpin", "docs"]);
    same_json(&local, &server, &["tier", "maintenance"], keep);

    same_text(&local, &server, &["compact", "docs"]);
    same_text(
        &local,
        &server,
        &["delete", "docs", "d1", "d2", "d1", "nope"],
    );
    same_json(&local, &server, &["delete", "docs", "d2", "d3"], keep);
    same_json(&local, &server, &["get", "docs", "d150"], keep);

    // Import: the same result but for the timing.
    let third = docs_file(&local, "third.jsonl", 200..2500);
    same_json(
        &local,
        &server,
        &["import", "docs", &third, "--batch-size", "500"],
        |v| remove_keys(v, &["seconds", "file"]),
    );
    let stats = same_json(&local, &server, &["stats", "docs"], strip_stats);
    assert_eq!(stats["documents"], 2497, "{stats}");
    same_json(&local, &server, &search, keep);

    same_text(&local, &server, &["collection", "drop", "docs"]);
    same_json(&local, &server, &["collection", "list"], keep);
}

#[test]
fn remote_errors_have_the_exit_status_of_local_errors() {
    let local = Env::new();
    let server = Remote::start(&[]);
    let create = [
        "collection",
        "create",
        "docs",
        "--dim",
        "3",
        "--metric",
        "cosine",
    ];
    local.ok(&create);
    server.ok(&create);
    let good = local.file("good.jsonl", "{\"id\": \"a\", \"vector\": [1, 0, 0]}\n");
    let cases: &[(&[&str], i32)] = &[
        // Not found: a document, a collection.
        (&["get", "docs", "missing"], 1),
        (&["get", "nope", "a"], 1),
        (&["search", "nope", "--vector", "1,0,0"], 1),
        // Invalid input.
        (&["search", "docs", "--vector", "1,0"], 2),
        (&["search", "docs", "--vector", "1,0,0", "-k", "0"], 2),
        (
            &[
                "collection",
                "create",
                "Bad/Name",
                "--dim",
                "3",
                "--metric",
                "l2",
            ],
            2,
        ),
        // Conflict.
        (
            &[
                "collection",
                "create",
                "docs",
                "--dim",
                "3",
                "--metric",
                "l2",
            ],
            3,
        ),
    ];
    for &(args, code) in cases {
        let l = local.fails(args, code);
        let r = server.fails(args, code);
        assert_eq!(l, r, "barq {args:?}: local and remote errors differ");
    }
    // A bad line in the input is found before anything is sent.
    let bad = local.file("bad.jsonl", "{\"id\": \"a\", \"vector\": [1, 0]}\n");
    let err = server.fails(&["upsert", "docs", "--file", &bad], 2);
    assert!(err.contains("line 1"), "{err}");
    server.ok(&["upsert", "docs", "--file", &good]);
    server.fails(&["tier", "offload", "docs", "--segment", "99"], 1);

    // Nobody listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_barq"))
        .args(["--url", &url, "stats"])
        .env_remove("BARQ_API_KEY")
        .output()
        .expect("run barq");
    let err = failure(&out, &["stats"], 4);
    assert!(
        err.starts_with(&format!("error: cannot reach the Barq server at {url}: ")),
        "{err}"
    );
}

#[test]
fn remote_commands_send_the_api_key() {
    let server = Remote::start(&[
        ("BARQ_API_KEY", "data-key"),
        ("BARQ_ADMIN_API_KEY", "admin-key"),
    ]);
    let create = [
        "collection",
        "create",
        "docs",
        "--dim",
        "3",
        "--metric",
        "l2",
    ];

    // No key, a wrong key.
    let err = server.fails(&create, 4);
    assert!(
        err.contains("refused") && err.contains("--api-key"),
        "{err}"
    );
    let out = server.run_with(&[("BARQ_API_KEY", "wrong")], &create);
    let err = failure(&out, &create, 4);
    assert!(err.contains("not valid"), "{err}");

    // The data key: data routes work, admin routes are forbidden.
    let data = [("BARQ_API_KEY", "data-key")];
    let out = server.run_with(&data, &create);
    success(&out, &create);
    let out = server.run_with(&[], &["--api-key", "data-key", "collection", "list"]);
    let list = success(&out, &["collection", "list"]);
    assert!(list.contains("docs"), "{list}");
    let drop = ["collection", "drop", "docs"];
    let err = failure(&server.run_with(&data, &drop), &drop, 4);
    assert!(err.contains("BARQ_ADMIN_API_KEY"), "{err}");

    // The admin key, for admin routes only.
    let both = [
        ("BARQ_API_KEY", "data-key"),
        ("BARQ_ADMIN_API_KEY", "admin-key"),
    ];
    let out = server.run_with(&both, &drop);
    assert_eq!(success(&out, &drop), "dropped collection \"docs\"\n");
}
