//! The documents the end-to-end tests write, and the S3 test server they use.

use serde_json::{Value, json};

pub const DIM: usize = 8;

/// Distinct per document: the first component is the document's number.
pub fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|d| {
            if d == 0 {
                i as f32
            } else {
                ((i * 31 + d * 7) % 97) as f32 / 97.0
            }
        })
        .collect()
}

/// An upsert body of documents `doc-{i}` with their vectors and `{"i": i}` payloads.
pub fn docs(range: std::ops::Range<usize>) -> String {
    let docs: Vec<Value> = range
        .map(|i| json!({"id": format!("doc-{i}"), "vector": vector(i), "payload": {"i": i}}))
        .collect();
    json!({ "documents": docs }).to_string()
}

/// The S3 test server's endpoint and bucket; a panic under `CI=true` when it is not
/// configured, else `None` after printing why the test is skipped.
pub fn s3_env() -> Option<(String, String)> {
    match (
        std::env::var("BARQ_TEST_S3_ENDPOINT"),
        std::env::var("BARQ_TEST_S3_BUCKET"),
    ) {
        (Ok(e), Ok(b)) => Some((e, b)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "BARQ_TEST_S3_ENDPOINT is not set: CI must start the S3 server (scripts/test-services.sh start)"
            )
        }
        _ => {
            eprintln!(
                "skipping: no S3 test server (`scripts/test-services.sh start`, then eval its `env`)"
            );
            None
        }
    }
}
