//! End-to-end tests of `barq tier …`: the real binary on a temporary data directory, whose cold
//! tier is the local directory DATA_DIR/cold.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::Env;

/// A collection "docs" with 300 documents in two segments (two flushes); returns their ids.
fn two_segments(env: &Env) -> Vec<u64> {
    let create: Vec<&str> = "collection create docs --dim 4 --metric l2"
        .split(' ')
        .collect();
    env.ok(&create);
    let mut ids = Vec::new();
    for (part, range) in [0..150, 150..300].into_iter().enumerate() {
        let mut text = String::new();
        for i in range {
            let v = [i as f32 * 0.01, (i % 7) as f32, 1.0, -((i % 3) as f32)];
            text.push_str(&format!(
                "{{\"id\": \"d{i}\", \"vector\": {v:?}, \"payload\": {{\"n\": {i}}}}}\n"
            ));
        }
        let file = env.file(&format!("part{part}.jsonl"), text);
        env.ok(&["upsert", "docs", "--file", &file]);
        let flushed = env.json(&["flush", "docs"]);
        ids.push(flushed["segments"][0]["id"].as_u64().expect("segment id"));
    }
    ids
}

/// What reads return: two documents (one per segment) and a search over both segments.
fn reads(env: &Env) -> Vec<Value> {
    let search: Vec<&str> = "search docs --vector 1,2,1,0 -k 20 --with-payload"
        .split(' ')
        .collect();
    vec![
        env.json(&["get", "docs", "d3"]),
        env.json(&["get", "docs", "d297"]),
        env.json(&search),
    ]
}

/// Files under `dir` (recursively) whose name ends with `.seg`.
fn seg_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "seg") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The name of segment `id`'s object in the cold store: its id and its checksum, from the
/// manifest.
fn object_name(env: &Env, id: u64) -> String {
    let text = std::fs::read_to_string(env.data_dir().join("MANIFEST")).expect("manifest");
    let m: Value = serde_json::from_str(&text).expect("json");
    let seg = m["manifest"]["collections"]["docs"]["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .find(|s| s["id"] == id)
        .expect("the segment");
    let crc = seg["checksum"].as_str().expect("checksum");
    format!("{id:020}-{}.seg", crc.trim_start_matches("crc32c:"))
}

/// The tier of each segment of "docs" (oldest first), and the database's `tiers`.
fn tiers(env: &Env) -> (Vec<String>, Value) {
    let status = env.json(&["tier", "status"]);
    let segments = status["collections"][0]["segments"]
        .as_array()
        .expect("segments");
    let tiers = segments
        .iter()
        .map(|s| s["tier"].as_str().expect("tier").to_owned());
    (tiers.collect(), status["tiers"].clone())
}

#[test]
fn offload_all_then_hydrate_one() {
    let env = Env::new();
    let ids = two_segments(&env);
    let before = reads(&env);
    let hot_dir = env.data_dir().join("collections/docs/segments");
    assert_eq!(seg_files(&hot_dir).len(), 2);

    let out = env.ok(&["tier", "offload", "docs", "--all"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (line, id) in lines.iter().zip(&ids) {
        assert!(
            line.starts_with(&format!("segment {id}: hot → cold, ")),
            "{out}"
        );
    }
    assert!(
        lines[2].starts_with("moved 2 segments of \"docs\" to cold, "),
        "{out}"
    );

    assert!(seg_files(&hot_dir).is_empty(), "hot copies are deleted");
    let cold = seg_files(&env.data_dir().join("cold"));
    assert_eq!(cold.len(), 2, "{cold:?}");
    for (path, id) in cold.iter().zip(&ids) {
        let expected = Path::new("cold/docs/segments").join(object_name(&env, *id));
        assert!(path.ends_with(&expected), "{path:?}");
    }
    assert_eq!(reads(&env), before, "cold reads return the same");
    let (segments, all) = tiers(&env);
    assert_eq!(segments, ["cold", "cold"]);
    assert_eq!(all["cold"]["segments"], 2);
    assert!(all.get("hot").is_none(), "{all}");

    let moved = env.json(&["tier", "hydrate", "docs", "--segment", &ids[0].to_string()]);
    assert_eq!(moved["moves"].as_array().map(Vec::len), Some(1), "{moved}");
    assert_eq!(moved["moves"][0]["segment_id"], ids[0]);
    assert_eq!(moved["moves"][0]["from"], "cold");
    assert_eq!(moved["moves"][0]["to"], "hot");
    assert!(moved["moves"][0]["bytes"].as_u64() > Some(0));
    assert_eq!(moved["failed"], serde_json::json!([]));
    let (segments, all) = tiers(&env);
    assert_eq!(segments, ["hot", "cold"]);
    assert_eq!(
        (&all["hot"]["segments"], &all["cold"]["segments"]),
        (&1.into(), &1.into())
    );
    assert_eq!(seg_files(&hot_dir).len(), 1);
    assert_eq!(reads(&env), before);

    let human = env.ok(&["tier", "status"]);
    assert!(human.contains("\nTIER  SEGMENTS  "), "{human}");
    let header = human
        .lines()
        .skip_while(|l| *l != "collection \"docs\"")
        .nth(1);
    let header = header
        .expect("a segment table")
        .split_whitespace()
        .collect::<Vec<_>>();
    let columns = "ID TIER SIZE ROWS REMOTE PINNED LAST ACCESS ACCESSES BUSY";
    assert_eq!(header.join(" "), columns);
    assert!(human.contains("\nuploads "), "{human}");

    // The hydrated segment kept its remote copy: offloading it again uploads nothing.
    let again = env.json(&["tier", "offload", "docs", "--all"]);
    assert_eq!(again["moves"].as_array().map(Vec::len), Some(1), "{again}");
    assert_eq!(again["moves"][0]["segment_id"], ids[0]);
    assert_eq!(again["bytes_moved"], 0);
    let out = env.ok(&["tier", "offload", "docs", "--all"]);
    assert_eq!(
        out,
        "nothing to move: every segment of \"docs\" is already cold\n"
    );
    let out = env.ok(&["tier", "offload", "docs", "--segment", &ids[1].to_string()]);
    assert!(
        out.starts_with(&format!("segment {}: already cold\n", ids[1])),
        "{out}"
    );
    assert_eq!(reads(&env), before);
}

#[test]
fn pin_and_unpin_round_trip() {
    let env = Env::new();
    let ids = two_segments(&env);
    let pinned = |env: &Env| -> (bool, Vec<bool>) {
        let status = env.json(&["tier", "status"]);
        let c = &status["collections"][0];
        let segs = c["segments"].as_array().expect("segments");
        let segs = segs.iter().map(|s| s["pinned"] == true).collect();
        (c["pinned"] == true, segs)
    };
    assert_eq!(pinned(&env), (false, vec![false, false]));

    assert_eq!(
        env.ok(&["tier", "pin", "docs"]),
        "pinned collection \"docs\"\n"
    );
    assert_eq!(pinned(&env), (true, vec![true, true]));
    let again = env.json(&["tier", "pin", "docs"]);
    assert_eq!(again["changed"], false);
    assert_eq!(
        env.ok(&["tier", "unpin", "docs"]),
        "unpinned collection \"docs\"\n"
    );
    assert_eq!(pinned(&env), (false, vec![false, false]));

    let id = ids[1].to_string();
    env.ok(&["tier", "offload", "docs", "--segment", &id]);
    let out = env.ok(&["tier", "pin", "docs", "--segment", &id]);
    assert_eq!(
        out,
        format!(
            "pinned segment {id} of \"docs\"; it is not hot now: run `barq tier hydrate docs \
             --segment {id}` or `barq tier maintenance`\n"
        )
    );
    assert_eq!(pinned(&env), (false, vec![false, true]));
    let result = env.json(&["tier", "unpin", "docs", "--segment", &id]);
    assert_eq!(result["segment"], ids[1]);
    assert_eq!(result["pinned"], false);
    assert_eq!(result["changed"], true);
    assert_eq!(pinned(&env), (false, vec![false, false]));

    env.fails(&["tier", "pin", "docs", "--segment", "999"], 1);
    env.fails(&["tier", "unpin", "nope"], 1);
}

#[test]
fn maintenance_runs_one_pass() {
    let env = Env::new();
    two_segments(&env);
    let report = env.json(&["tier", "maintenance"]);
    assert!(report["planned"].is_u64(), "{report}");
    assert!(report["moves_done"].is_array(), "{report}");
    assert_eq!(report["moves_failed"], serde_json::json!([]));
    assert!(report["gc_error"].is_null(), "{report}");
    let human = env.ok(&["tier", "maintenance"]);
    assert!(human.starts_with("maintenance: "), "{human}");
}

#[test]
fn usage_and_lookup_errors() {
    let env = Env::new();
    two_segments(&env);
    for args in [
        &["tier", "offload", "docs"][..],
        &["tier", "hydrate", "docs"],
        &["tier", "offload", "docs", "--all", "--segment", "1"],
        &["tier", "offload", "docs", "--segment", "x"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    let err = env.fails(&["tier", "offload", "nope", "--all"], 1);
    assert!(err.contains("\"nope\""), "{err}");
    let err = env.fails(&["tier", "hydrate", "docs", "--segment", "999"], 1);
    assert_eq!(err, "error: collection \"docs\" has no segment 999\n");
    assert_eq!(tiers(&env).0, ["hot", "hot"]);
}

#[test]
fn a_failed_segment_does_not_stop_the_others() {
    let env = Env::new();
    let ids = two_segments(&env);
    let before = reads(&env);
    // A non-empty directory where the first segment's object must go: its upload fails.
    let key = env
        .data_dir()
        .join("cold/docs/segments")
        .join(object_name(&env, ids[0]));
    std::fs::create_dir_all(key.join("blocker")).expect("mkdir");

    let out = env.run(&["tier", "offload", "docs", "--all"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    // (The engine also logs a warning for the failed move.)
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("error: segment {}: ", ids[0])),
        "{stderr}"
    );
    assert_eq!(
        lines[1],
        "error: could not move 1 segment of \"docs\" to cold (see above); the others were moved"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("segment {}: hot → cold, ", ids[1])),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("segment {}: failed\n", ids[0])),
        "{stdout}"
    );
    assert_eq!(tiers(&env).0, ["hot", "cold"]);
    assert_eq!(reads(&env), before);

    // --segment: the engine's error is the command's (after the engine's own warning).
    let id = ids[0].to_string();
    let out = env.run(&["tier", "offload", "docs", "--segment", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: cold store "), "{stderr}");
    assert!(last.contains("Is a directory"), "{stderr}");
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(&key).expect("unblock");
    let moved = env.json(&["tier", "offload", "docs", "--all"]);
    assert_eq!(moved["moves"][0]["segment_id"], ids[0]);
    assert_eq!(moved["failed"], serde_json::json!([]));
    assert_eq!(reads(&env), before);
}

#[test]
fn warm_dir_option_and_help() {
    let env = Env::new();
    two_segments(&env);
    let warm = env.data_dir().with_file_name("warm");
    let warm_arg = warm.to_str().expect("utf-8 path");
    let status = env.json(&["--warm-dir", warm_arg, "tier", "status"]);
    assert_eq!(status["warm_dir"], warm_arg);
    let out = env
        .command(&["--json", "tier", "status"])
        .env("BARQ_WARM_DIR", &warm)
        .output();
    let status: Value = serde_json::from_slice(&out.expect("run").stdout).expect("json");
    assert_eq!(status["warm_dir"], warm_arg);
    assert!(env.json(&["tier", "status"])["warm_dir"].is_null());
    assert!(env.ok(&["--help"]).contains("--warm-dir <DIR>"));
    for sub in "status offload hydrate pin unpin maintenance".split(' ') {
        let help = env.ok(&["tier", sub, "--help"]);
        assert!(help.contains("Examples:\n  barq "), "{sub}: {help}");
    }
    assert!(
        env.ok(&["tier", "--help"])
            .contains("barq tier offload docs --all")
    );
}
