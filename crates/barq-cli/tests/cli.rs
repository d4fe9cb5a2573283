//! End-to-end tests of the `barq` binary: each runs the real executable on a temporary data
//! directory and checks its stdout, stderr and exit status.

mod support;

use std::path::Path;

use support::{Env, f32s, success, write_fvecs};

const DOCS: &str = r#"{"id": "a", "vector": [1.0, 0.0, 0.0], "payload": {"title": "first", "n": 1}}
{"id": "b", "vector": [0.0, 1.0, 0.0]}

{"id": "c", "vector": [0.7, 0.7, 0.1], "payload": null}
"#;

#[test]
fn collection_lifecycle() {
    let env = Env::new();
    let out = env.ok(&[
        "collection",
        "create",
        "docs",
        "--dim",
        "3",
        "--metric",
        "cosine",
    ]);
    assert_eq!(
        out,
        "created collection \"docs\" (dimension 3, metric cosine)\n"
    );
    env.ok(&[
        "collection",
        "create",
        "other",
        "--dim",
        "2",
        "--metric",
        "l2",
    ]);
    env.fails(
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
    );

    let list = env.ok(&["collection", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines[0], "NAME   DIMENSION  METRIC  DOCUMENTS");
    assert_eq!(lines[1], "docs           3  cosine          0");
    assert_eq!(lines[2], "other          2  l2              0");
    let list = env.json(&["collection", "list"]);
    assert_eq!(list["collections"][1]["metric"], "l2");

    let file = env.file("docs.jsonl", DOCS);
    assert_eq!(
        env.ok(&["upsert", "docs", "--file", &file]),
        "upserted 3 documents into \"docs\"\n"
    );
    assert_eq!(env.count("docs"), 3);

    let doc = env.json(&["get", "docs", "a"]);
    assert_eq!(doc["id"], "a");
    assert_eq!(f32s(&doc["vector"]), vec![1.0, 0.0, 0.0]);
    assert_eq!(doc["payload"]["title"], "first");
    let human = env.ok(&["get", "docs", "a"]);
    assert_eq!(
        human,
        "id:       a\nvector:   [1, 0, 0]\npayload:  {\"n\":1,\"title\":\"first\"}\n"
    );
    assert!(env.json(&["get", "docs", "c"]).get("payload").is_none());

    let hits = env.json(&["search", "docs", "--vector", "[0.9, 0.1, 0.0]", "-k", "2"]);
    let ids: Vec<&str> = hits["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["a", "c"]);
    assert!(hits["hits"][0].get("payload").is_none());
    let human = env.ok(&[
        "search",
        "docs",
        "--vector",
        "1,0,0",
        "-k",
        "1",
        "--with-payload",
    ]);
    assert_eq!(
        human,
        "RANK  ID  SIMILARITY  PAYLOAD\n   1  a     1.000000  {\"n\":1,\"title\":\"first\"}\n"
    );

    let deleted = env.json(&["delete", "docs", "b", "zzz"]);
    assert_eq!(deleted["deleted"], serde_json::json!(["b"]));
    assert_eq!(deleted["missing"], serde_json::json!(["zzz"]));
    let err = env.fails(&["get", "docs", "b"], 1);
    assert_eq!(
        err,
        "error: document \"b\" not found in collection \"docs\"\n"
    );
    env.fails(&["--json", "get", "docs", "b"], 1);
    env.fails(&["get", "nope", "a"], 1);

    let flushed = env.json(&["flush", "docs"]);
    assert_eq!(flushed["segments"].as_array().expect("segments").len(), 1);
    assert_eq!(flushed["segments"][0]["rows"], 3, "a, c and b's tombstone");
    env.ok(&[
        "upsert",
        "docs",
        "--file",
        &env.file("d.jsonl", "{\"id\":\"a\",\"vector\":[0,0,1]}"),
    ]);
    assert!(
        env.ok(&["flush", "docs"])
            .starts_with("flushed \"docs\" to segment ")
    );
    let compacted = env.json(&["compact", "docs"]);
    assert_eq!(compacted["inputs"].as_array().expect("inputs").len(), 2);
    assert_eq!(compacted["dropped_rows"], 2, "old a and b's tombstone");
    assert_eq!(compacted["output"]["rows"], 2);

    let stats = env.json(&["stats"]);
    let docs = &stats["collections"][0];
    assert_eq!(docs["name"], "docs");
    assert_eq!(docs["documents"], 2);
    assert_eq!(docs["segments"], 1);
    assert_eq!(docs["memtable_rows"], 0);
    assert_eq!(stats["collections"][1]["name"], "other");
    let human = env.ok(&["stats"]);
    assert!(
        human.lines().nth(1).expect("header").starts_with("NAME "),
        "{human}"
    );
    assert!(env.ok(&["stats", "docs"]).contains("documents      2\n"));

    assert_eq!(
        env.ok(&["collection", "drop", "other"]),
        "dropped collection \"other\"\n"
    );
    env.fails(&["collection", "drop", "other"], 1);
    assert_eq!(
        env.json(&["collection", "list"])["collections"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn invalid_input_writes_nothing() {
    let env = Env::new();
    env.ok(&[
        "collection",
        "create",
        "docs",
        "--dim",
        "3",
        "--metric",
        "l2",
    ]);
    let good = r#"{"id": "ok", "vector": [1, 2, 3]}"#;
    env.ok(&["upsert", "docs", "--file", &env.file("good.jsonl", good)]);

    let cases = [
        (
            r#"{"id": "x", "vector": [1, 2]}"#,
            "line 2: dimension mismatch: collection \"docs\" expects 3, got 2",
        ),
        (
            r#"{"id": "x", "vector": [1, "NaN", 3]}"#,
            "line 2: invalid type: string \"NaN\", expected f32",
        ),
        (
            &format!(r#"{{"id": "{}", "vector": [1, 2, 3]}}"#, "x".repeat(257)),
            "line 2: invalid document id: 257 bytes, the limit is 256",
        ),
        (
            r#"{"id": "x", "vector": [1, 2, 3], "paylod": {}}"#,
            "line 2: unknown field `paylod`",
        ),
        (
            r#"{"id": "x", "vector": [1, 2, 3"#,
            "line 2: EOF while parsing",
        ),
    ];
    for (i, (bad, expected)) in cases.iter().enumerate() {
        // The bad line comes after a good one (and a third follows): none of them is written.
        let text = format!("{{\"id\": \"g{i}\", \"vector\": [0, 0, 0]}}\n{bad}\n{good}\n");
        let file = env.file(&format!("bad{i}.jsonl"), text);
        let err = env.fails(&["upsert", "docs", "--file", &file], 2);
        assert!(err.contains(&format!("bad{i}.jsonl {expected}")), "{err}");
        assert_eq!(env.count("docs"), 1, "case {i} wrote something");
    }

    let err = env.fails(
        &[
            "collection",
            "create",
            "x",
            "--dim",
            "3",
            "--metric",
            "cosin",
        ],
        2,
    );
    assert_eq!(
        err,
        "error: unknown metric \"cosin\": expected cosine, l2 or dot\n"
    );
    env.fails(
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
    );
    env.fails(
        &["collection", "create", "x", "--dim", "0", "--metric", "l2"],
        2,
    );
    let err = env.fails(&["search", "docs", "--vector", "[1, 2]"], 2);
    assert!(err.contains("dimension mismatch"), "{err}");
    env.fails(&["search", "docs", "--vector", "1,2,3", "-k", "0"], 2);
    env.fails(&["search", "docs", "--vector", "1,nope,3"], 2);
    let err = env.fails(&["upsert", "docs", "--file", "/nonexistent/x.jsonl"], 2);
    assert!(err.contains("cannot open /nonexistent/x.jsonl"), "{err}");
    assert_eq!(env.count("docs"), 1);
}

#[test]
fn import_stops_at_the_batch_with_a_bad_line() {
    let env = Env::new();
    env.ok(&[
        "collection",
        "create",
        "docs",
        "--dim",
        "2",
        "--metric",
        "dot",
    ]);
    let mut text = String::new();
    for i in 0..5 {
        text.push_str(&format!("{{\"id\": \"d{i}\", \"vector\": [{i}, 1]}}\n"));
    }
    text.push_str("{\"id\": \"bad\", \"vector\": [1]}\n");
    let file = env.file("docs.jsonl", text);
    let err = env.fails(&["import", "docs", &file, "--batch-size", "2"], 2);
    assert!(
        err.contains("docs.jsonl line 6: dimension mismatch"),
        "{err}"
    );
    assert!(
        err.contains("the 4 documents before it were imported"),
        "{err}"
    );
    assert_eq!(env.count("docs"), 4, "two whole batches, not the third");
}

#[test]
fn import_fvecs_uses_row_numbers_as_ids() {
    let env = Env::new();
    env.ok(&[
        "collection",
        "create",
        "sift",
        "--dim",
        "4",
        "--metric",
        "l2",
    ]);
    let rows: Vec<Vec<f32>> = (0..25)
        .map(|i| (0..4).map(|j| (i * 4 + j) as f32 * 0.25 - 3.0).collect())
        .collect();
    let file = write_fvecs(&env, "base.fvecs", &rows);
    let result = env.json(&["import", "sift", &file, "--batch-size", "10"]);
    assert_eq!(result["imported"], 25);
    assert_eq!(result["format"], "fvecs");
    assert_eq!(
        (
            result["segments_written"].as_u64(),
            result["segments"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert!(
        result["seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{result}"
    );
    // A second import adds a segment: written counts this import's, segments the collection's.
    let again = env.json(&["import", "sift", &file, "-q"]);
    assert_eq!(
        (
            again["segments_written"].as_u64(),
            again["segments"].as_u64()
        ),
        (Some(1), Some(2))
    );
    let text = env.ok(&["import", "sift", &file, "-q"]);
    assert!(
        text.contains(" s ("),
        "a sub-second import shows its fraction: {text}"
    );
    for (i, row) in rows.iter().enumerate() {
        let doc = env.json(&["get", "sift", &i.to_string()]);
        assert_eq!(&f32s(&doc["vector"]), row, "row {i}");
    }
    env.fails(&["get", "sift", "25"], 1);
    let hits = env.json(&[
        "search",
        "sift",
        "--vector",
        &format!("{:?}", rows[7]),
        "-k",
        "1",
    ]);
    assert_eq!(hits["hits"][0]["id"], "7");
    assert_eq!(hits["hits"][0]["score"], 0.0);

    let wrong = write_fvecs(&env, "wrong.fvecs", &[vec![1.0; 3]]);
    let err = env.fails(&["import", "sift", &wrong], 2);
    assert!(
        err.contains("wrong.fvecs row 0: dimension mismatch"),
        "{err}"
    );
    let mut truncated = std::fs::read(&file).expect("read fvecs");
    truncated.truncate(truncated.len() - 2);
    let truncated = env.file("truncated.fvecs", truncated);
    let err = env.fails(&["import", "sift", &truncated, "-q"], 2);
    assert!(
        err.contains("row 24: the file ends in the middle of a vector"),
        "{err}"
    );
}

#[test]
fn upsert_and_import_read_stdin() {
    let env = Env::new();
    env.ok(&[
        "collection",
        "create",
        "docs",
        "--dim",
        "3",
        "--metric",
        "cosine",
    ]);
    let args = ["upsert", "docs", "--file", "-"];
    success(&env.run_with_stdin(&args, DOCS.as_bytes()), &args);
    assert_eq!(env.count("docs"), 3);
    let args = ["--json", "import", "docs", "-"];
    let line = "{\"id\": \"z\", \"vector\": [1, 1, 1]}\n";
    let out = success(&env.run_with_stdin(&args, line.as_bytes()), &args);
    assert!(out.contains("\"imported\": 1"), "{out}");
    assert_eq!(env.count("docs"), 4);
}

#[test]
fn locked_data_dir_names_the_holder() {
    let env = Env::new();
    let db = barq_storage::Database::open(env.data_dir(), barq_storage::Options::default())
        .expect("open in the test process");
    let err = env.fails(&["collection", "list"], 3);
    let expected = format!("is locked by process {}", std::process::id());
    assert!(err.contains(&expected), "{err}");
    db.close().expect("close");
    env.ok(&["collection", "list"]);
}

#[test]
fn data_dir_is_only_created_by_collection_create() {
    let env = Env::new();
    let err = env.fails(&["collection", "list"], 1);
    assert!(err.contains("does not exist"), "{err}");
    env.fails(&["stats"], 1);
    assert!(!env.data_dir().exists());
    env.fails(
        &["collection", "create", "x", "--dim", "2", "--metric", "bad"],
        2,
    );
    assert!(
        !env.data_dir().exists(),
        "a bad argument must not create it"
    );
    env.ok(&["collection", "create", "x", "--dim", "2", "--metric", "l2"]);
    env.ok(&["collection", "drop", "x"]);
    let out = env.ok(&["collection", "list"]);
    assert!(out.starts_with("no collections in "), "{out}");
}

#[test]
fn refuses_a_directory_that_is_not_a_data_dir() {
    let env = Env::new();
    std::fs::create_dir(env.data_dir()).expect("mkdir");
    let precious = env.data_dir().join("notes.tmp");
    std::fs::write(&precious, "keep me").expect("write");
    let err = env.fails(
        &["collection", "create", "x", "--dim", "2", "--metric", "l2"],
        2,
    );
    assert!(err.contains("is not a Barq DB data directory"), "{err}");
    assert!(Path::new(&precious).exists(), "opening must not sweep it");
}

#[test]
fn every_subcommand_has_help_with_examples() {
    let env = Env::new();
    for sub in [
        &["collection"][..],
        &["collection", "create"],
        &["collection", "list"],
        &["collection", "drop"],
        &["upsert"],
        &["import"],
        &["get"],
        &["delete"],
        &["search"],
        &["count"],
        &["flush"],
        &["compact"],
        &["index"],
        &["stats"],
        &[],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        let help = env.ok(&args);
        assert!(help.contains("Example"), "{sub:?}: {help}");
    }
}

/// A bare relative data directory (`--data-dir d`, `BARQ_DATA_DIR=mydata`) works like `./d`.
#[test]
fn a_bare_relative_data_directory_works() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let barq = |args: &[&str], env: Option<(&str, &str)>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_barq"));
        cmd.current_dir(tmp.path())
            .args(args)
            .env_remove("BARQ_DATA_DIR")
            .env_remove("BARQ_URL")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run barq");
        success(&out, args)
    };
    let create = ["collection", "create", "t", "--dim", "2", "--metric", "l2"];
    let mut args = vec!["--data-dir", "d"];
    args.extend(create);
    barq(&args, None);
    barq(&create, Some(("BARQ_DATA_DIR", "mydata")));
    for dir in ["d", "mydata"] {
        let list = barq(&["--data-dir", dir, "collection", "list"], None);
        assert!(list.lines().any(|l| l.starts_with("t ")), "{dir}: {list}");
        assert!(tmp.path().join(dir).join("MANIFEST").exists(), "{dir}");
    }
}

/// `barq index` builds the indexes the `[index]` settings ask for, `barq stats` shows them per
/// segment, and `barq search --explain` says how each segment was searched.
#[test]
fn index_builds_missing_indexes_and_search_explains_itself() {
    let env = Env::new();
    let config = env.file("barq.toml", "[index]\nmin_rows = 1000\n");
    let with = |args: &[&str]| -> Vec<String> {
        let mut v = vec!["--config".to_owned(), config.clone()];
        v.extend(args.iter().map(|s| (*s).to_owned()));
        v
    };
    let run_json = |args: &[&str]| {
        let v = with(args);
        env.json(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let run_ok = |args: &[&str]| {
        let v = with(args);
        env.ok(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    run_ok(&["collection", "create", "v", "--dim", "4", "--metric", "l2"]);
    let mut x = 11u64;
    let rows: Vec<Vec<f32>> = (0..3000)
        .map(|_| {
            (0..4)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (x >> 40) as f32 / (1u64 << 24) as f32
                })
                .collect()
        })
        .collect();
    let file = write_fvecs(&env, "rows.fvecs", &rows);
    run_ok(&["import", "v", &file, "-q"]);
    let stats = run_json(&["stats", "v"]);
    assert_eq!(stats["indexed_segments"], 0, "{stats}");
    let built = run_json(&["index", "v"]);
    assert_eq!(
        built["indexed"].as_array().map(Vec::len),
        Some(1),
        "{built}"
    );
    let stats = run_json(&["stats", "v"]);
    assert_eq!(stats["indexed_segments"], 1, "{stats}");
    assert_eq!(stats["segment_list"][0]["indexed"], true, "{stats}");
    let text = run_ok(&["stats", "v"]);
    assert!(text.contains("INDEXED") && text.contains("yes"), "{text}");
    let again = run_ok(&["index", "v"]);
    assert!(again.contains("indexed already"), "{again}");

    let q = format!("{:?}", rows[42]);
    let hits = run_json(&["search", "v", "--vector", &q, "-k", "3", "--explain"]);
    assert_eq!(hits["hits"][0]["id"], "42", "{hits}");
    assert_eq!(hits["explain"]["segments"][0]["plan"], "index", "{hits}");
    let exact = run_json(&["search", "v", "--vector", &q, "--exact", "--explain"]);
    assert_eq!(exact["explain"]["segments"][0]["plan"], "exact", "{exact}");
    assert_eq!(exact["explain"]["rows_scanned"], 3000, "{exact}");
    let plain = run_json(&["search", "v", "--vector", &q]);
    assert!(plain.get("explain").is_none(), "{plain}");
    let text = run_ok(&["search", "v", "--vector", &q, "--explain"]);
    assert!(text.contains("PLAN") && text.contains("index"), "{text}");
    assert!(text.contains("clusters probed"), "{text}");
}

#[test]
fn search_and_count_take_a_filter_and_index_adds_payload_fields() {
    let env = Env::new();
    let out = env.ok(&[
        "collection",
        "create",
        "f",
        "--dim",
        "2",
        "--metric",
        "l2",
        "--index-field",
        "lang:keyword",
    ]);
    assert!(out.contains("indexing lang:keyword"), "{out}");
    env.fails(
        &[
            "collection",
            "create",
            "g",
            "--dim",
            "2",
            "--metric",
            "l2",
            "--index-field",
            "lang:text",
        ],
        2,
    );
    let docs: String = (0..30)
        .map(|i| {
            format!(
                "{{\"id\": \"d{i:02}\", \"vector\": [{i}, 0], \"payload\": {{\"lang\": \"{}\", \"year\": {}}}}}\n",
                if i % 3 == 0 { "en" } else { "de" },
                2000 + i
            )
        })
        .collect();
    let file = env.file("docs.jsonl", docs);
    env.ok(&["upsert", "f", "--file", &file]);
    env.ok(&["flush", "f"]);
    let filter = r#"{"must": [{"key": "lang", "match": {"value": "en"}}, {"key": "year", "range": {"lt": 2020}}]}"#;
    let hits = env.json(&[
        "search",
        "f",
        "--vector",
        "[14, 0]",
        "-k",
        "2",
        "--filter",
        filter,
        "--explain",
    ]);
    assert_eq!(hits["hits"][0]["id"], "d15", "{hits}");
    assert_eq!(hits["hits"][1]["id"], "d12", "{hits}");
    assert_eq!(hits["explain"]["segments"][0]["rows_matched"], 7, "{hits}");
    let text = env.ok(&[
        "search",
        "f",
        "--vector",
        "[14, 0]",
        "--filter",
        filter,
        "--explain",
    ]);
    assert!(
        text.contains("MATCHED") && text.contains("payload scan"),
        "{text}"
    );
    let none = env.ok(&[
        "search",
        "f",
        "--vector",
        "[1, 0]",
        "--filter",
        r#"{"must": [{"key": "lang", "match": {"value": "fr"}}]}"#,
    ]);
    assert!(none.contains("no document matches the filter"), "{none}");
    assert_eq!(
        env.ok(&["count", "f", "--filter", filter]),
        "7 documents match in \"f\"\n"
    );
    assert_eq!(env.json(&["count", "f"])["count"], 30);
    let err = env.fails(
        &[
            "search",
            "f",
            "--vector",
            "[1, 0]",
            "--filter",
            r#"{"must": [{"key": "lang", "match": {"valu": 1}}]}"#,
        ],
        2,
    );
    assert!(err.contains("filter.must[0].match"), "{err}");
    let err = env.fails(&["count", "f", "--filter", "{not json"], 2);
    assert!(err.contains("invalid --filter"), "{err}");
    let built = env.json(&["index", "f", "--field", "year:integer"]);
    assert!(built["indexed"].as_array().is_some(), "{built}");
    let stats = env.json(&["stats", "f"]);
    assert_eq!(
        stats["indexed_fields"],
        serde_json::json!([{"path": "lang", "type": "keyword"}, {"path": "year", "type": "integer"}]),
        "{stats}"
    );
    env.fails(&["index", "f", "--field", "year:bool"], 2);
}
