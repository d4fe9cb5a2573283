//! `barq-bench bucket`: the bucket as the shared engine. A writer loads ROWS vectors, compacts
//! them into one indexed segment and publishes to the store; then
//! - restore: a new data directory from the bucket alone (the manifest and nothing else), and
//!   the first query on it;
//! - replica lag: the time from a flush returning on the writer to the flushed document being
//!   served by each of two replicas (upload on seal, publish, poll, apply);
//! - query throughput: QUERY_THREADS threads searching the writer alone, then the writer and
//!   both replicas in turn (all in one process on this machine's cores).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use barq_core::{CollectionConfig, Document, Metric};
use barq_storage::tiering::{ColdStoreSpec, TieringOptions, UploadVerification};
use barq_storage::{Database, Durability, Options, SearchRequest};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

const COLLECTION: &str = "bench";

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// `s3` (the S3 test server of `eval "$(scripts/test-services.sh env)"`), `memory` or
    /// `local`.
    #[arg(long, default_value = "s3")]
    store: String,
    /// How often the replicas poll the bucket, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Flushes whose replica lag is measured.
    #[arg(long, default_value_t = 10)]
    flushes: usize,
    /// Threads of the query-throughput measurement.
    #[arg(long, default_value_t = 4)]
    query_threads: usize,
    /// Seconds of each throughput measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

fn options() -> Options {
    Options {
        durability: Durability::None,
        background_compaction: false,
        memtable_max_bytes: 256 << 20,
        recall_sample_rate: 0.0, // off in benchmarks
        tiering: TieringOptions {
            maintenance_interval: None,
            upload_on_seal: Some(true),
            verify_uploads: UploadVerification::Size,
            cold_cache_bytes: 4 << 30,
            ..TieringOptions::default()
        },
        ..Options::default()
    }
}

fn wait_published(db: &Database) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let b = db.tiering().status().expect("status").bucket;
        if b.upload_lag_segments == 0 && b.published_version == Some(b.local_version) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not published in 10 minutes: {b:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn run(dir: &Path, a: &Args) {
    let store = crate::tiering::bench_store(&a.store, dir, None);
    let poll = Duration::from_millis(a.poll_ms);
    let prefix = format!(
        "bench-bucket-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    );
    let spec = ColdStoreSpec {
        store: Arc::clone(&store),
        prefix: prefix.clone(),
        description: format!("{} bucket, prefix {prefix}", a.store),
    };
    let writer = Database::builder(dir.join("writer"))
        .options(options())
        .cold_store(spec.clone())
        .open()
        .expect("open the writer");
    writer
        .create_collection(
            CollectionConfig::new(COLLECTION, a.dim as u32, Metric::L2).expect("cfg"),
        )
        .expect("create");
    // Gaussian clusters, as `barq-bench ann` uses (uniform random vectors have no neighbours
    // an index could find faster than a scan).
    let mut rng = StdRng::seed_from_u64(7);
    let mix = crate::ann::Mixture::new(a.dim, 1000, 0.5, &mut rng);
    let started = Instant::now();
    let batch = 10_000;
    for start in (0..a.rows).step_by(batch) {
        let n = batch.min(a.rows - start);
        let docs: Vec<Document> = (start..start + n)
            .map(|i| Document::new(format!("d{i}"), mix.draw(&mut rng)))
            .collect();
        writer.upsert(COLLECTION, &docs).expect("upsert");
    }
    writer
        .compact(COLLECTION)
        .expect("compact into one indexed segment");
    wait_published(&writer);
    let stats = writer.collection_stats(COLLECTION).expect("stats");
    eprintln!(
        "loaded, compacted and published {} rows ({} segments, {} MiB) in {:.1}s",
        a.rows,
        stats.segments,
        stats.segment_bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    let queries: Vec<Vec<f32>> = (0..64).map(|_| mix.draw(&mut rng)).collect();

    // Restore.
    let mut restores = Vec::new();
    let mut first_queries = Vec::new();
    for (round, query) in queries.iter().take(3).enumerate() {
        let target = dir.join(format!("restored-{round}"));
        let t = Instant::now();
        let (db, report) = Database::builder(&target)
            .options(Options {
                tiering: TieringOptions {
                    upload_on_seal: Some(false),
                    ..options().tiering
                },
                ..options()
            })
            .cold_store(spec.clone())
            .restore()
            .expect("restore");
        let took = t.elapsed().as_secs_f64();
        let before = db.tiering().status().expect("status").counters;
        let t = Instant::now();
        db.search(COLLECTION, &SearchRequest::new(query.clone(), 10))
            .expect("first query");
        let first = t.elapsed().as_secs_f64();
        let after = db.tiering().status().expect("status").counters;
        let fetched = (
            after.remote_requests - before.remote_requests,
            after.remote_bytes_fetched - before.remote_bytes_fetched,
        );
        assert_eq!(db.count(COLLECTION).expect("count"), a.rows as u64);
        restores.push(took);
        first_queries.push(first);
        emit_restore(
            a,
            round,
            took,
            (first, fetched),
            report.segments,
            report.bytes,
        );
        db.close().expect("close");
    }
    let restore_median = median(&mut restores);

    // Replica lag.
    let replicas: Vec<Database> = (0..2)
        .map(|i| {
            Database::builder(dir.join(format!("replica-{i}")))
                .options(options())
                .cold_store(spec.clone())
                .open_replica(poll)
                .expect("open a replica")
        })
        .collect();
    let mut lags = Vec::new();
    for f in 0..a.flushes {
        let id = format!("lag-{f}");
        writer
            .upsert(COLLECTION, &[Document::new(id.clone(), mix.draw(&mut rng))])
            .expect("upsert");
        writer.flush(COLLECTION).expect("flush");
        let flushed = Instant::now();
        for r in &replicas {
            while r.get(COLLECTION, &id).expect("get").is_none() {
                assert!(
                    flushed.elapsed() < Duration::from_secs(60),
                    "a replica never saw {id}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            lags.push(flushed.elapsed().as_secs_f64());
        }
    }
    let max_lag = lags.iter().copied().fold(0.0, f64::max);
    let median_lag = median(&mut lags);
    emit_json(json!({
        "bench": "bucket", "measure": "replica_lag", "rows": a.rows, "dim": a.dim,
        "store": a.store, "poll_s": poll.as_secs_f64(), "flushes": a.flushes,
        "median_s": median_lag, "max_s": max_lag,
        "target_s": poll.as_secs_f64() + 1.0,
    }));

    // Query throughput: warm every node's cache first.
    let all: Vec<&Database> = std::iter::once(&writer).chain(replicas.iter()).collect();
    for db in &all {
        for q in &queries {
            db.search(COLLECTION, &SearchRequest::new(q.clone(), 10))
                .expect("warm-up");
        }
    }
    let requests = |dbs: &[&Database]| -> u64 {
        dbs.iter()
            .map(|d| {
                d.tiering()
                    .status()
                    .expect("status")
                    .counters
                    .remote_requests
            })
            .sum()
    };
    let one = throughput(&all[..1], &queries, a.query_threads, a.seconds);
    let replica_alone = throughput(&all[1..2], &queries, a.query_threads, a.seconds);
    let before = requests(&all);
    let three = throughput(&all, &queries, a.query_threads, a.seconds);
    let store_requests = requests(&all) - before;
    emit_json(json!({
        "bench": "bucket", "measure": "query_throughput", "rows": a.rows, "dim": a.dim,
        "threads": a.query_threads, "seconds": a.seconds,
        "one_node_qps": one, "one_replica_qps": replica_alone,
        "writer_and_two_replicas_qps": three,
        "store_requests_during_the_three_node_run": store_requests,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
    }));
    eprintln!(
        "restore median {restore_median:.3}s (first query {:.3}s); replica lag median {median_lag:.3}s max {max_lag:.3}s (poll {:?}); QPS one node {one:.0}, one replica {replica_alone:.0}, writer + 2 replicas {three:.0} ({store_requests} store requests)",
        median(&mut first_queries),
        poll
    );
    drop(replicas);
    writer.close().expect("close");
    crate::tiering::delete_prefix(&store, &prefix);
}

fn emit_restore(
    a: &Args,
    round: usize,
    took: f64,
    (first, (requests, bytes_fetched)): (f64, (u64, u64)),
    segments: u64,
    bytes: u64,
) {
    emit_json(json!({
        "bench": "bucket", "measure": "restore", "round": round, "rows": a.rows, "dim": a.dim,
        "store": a.store, "restore_s": took, "first_query_s": first,
        "first_query_requests": requests, "first_query_bytes": bytes_fetched,
        "segments": segments, "segment_bytes": bytes,
    }));
}

fn emit_json(v: serde_json::Value) {
    println!("{v}");
}

/// Searches per second of `threads` threads for `seconds`, each query on the next node of
/// `nodes` in turn.
fn throughput(nodes: &[&Database], queries: &[Vec<f32>], threads: usize, seconds: u64) -> f64 {
    let done = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while Instant::now() < until {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let db = nodes[i % nodes.len()];
                    db.search(
                        COLLECTION,
                        &SearchRequest::new(queries[i % queries.len()].clone(), 10),
                    )
                    .expect("search");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
