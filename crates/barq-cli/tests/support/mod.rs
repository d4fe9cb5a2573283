//! Helpers shared by the CLI tests: run the real `barq` binary on a temporary data directory
//! and check its exit status, stdout and stderr.

// Each test crate (`cli`, `tier`) uses a different subset of the helpers.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A temporary directory with a data directory (`data`, not created) and room for input files.
pub struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            tmp: tempfile::tempdir().expect("create temp dir"),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// Write an input file; returns its path as a string for the command line.
    pub fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, contents).expect("write input file");
        path.to_str().expect("utf-8 temp path").to_owned()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_barq"));
        cmd.arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .env_remove("BARQ_DATA_DIR")
            .env_remove("BARQ_URL")
            .env_remove("BARQ_DURABILITY")
            .env_remove("BARQ_WARM_DIR")
            .env_remove("RUST_LOG");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run barq")
    }

    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn barq");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait for barq")
    }

    /// Run, expect success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        success(&self.run(args), args)
    }

    /// Run with `--json`, expect success, parse stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let stdout = self.ok(&all);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
    }

    /// Run, expect exit status `code` and exactly one `error: ` line on stderr; return it.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        failure(&self.run(args), args, code)
    }

    pub fn count(&self, collection: &str) -> u64 {
        self.json(&["stats", collection])["documents"]
            .as_u64()
            .expect("documents is a number")
    }
}

pub fn success(out: &Output, args: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "barq {args:?} failed: {stderr}");
    assert!(stderr.is_empty(), "barq {args:?} wrote to stderr: {stderr}");
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

pub fn failure(out: &Output, args: &[&str], code: i32) -> String {
    let stderr = String::from_utf8(out.stderr.clone()).expect("utf-8 stderr");
    assert_eq!(
        out.status.code(),
        Some(code),
        "barq {args:?}: stderr {stderr:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "barq {args:?} wrote to stdout on failure"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    stderr
}

pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// Write `rows` as an `.fvecs` file.
pub fn write_fvecs(env: &Env, name: &str, rows: &[Vec<f32>]) -> String {
    let mut bytes = Vec::new();
    for row in rows {
        bytes.extend((row.len() as i32).to_le_bytes());
        for x in row {
            bytes.extend(x.to_le_bytes());
        }
    }
    env.file(name, bytes)
}
