//! `barq-bench`: macro-benchmarks of the Barq DB engine. Each benchmark prints one JSON object
//! per result on stdout (machine-readable) and a human summary on stderr.
//!
//! ```text
//! cargo run --release -p barq-bench -- ingest --dim 128 --durability none
//! cargo run --release -p barq-bench -- search --rows 1000000 --dim 128
//! cargo run --release -p barq-bench -- reopen
//! cargo run --release -p barq-bench -- memory --gib 2
//! cargo run --release -p barq-bench -- all
//! ```

mod ann;
mod bucket;
mod filter;
mod serve;
mod tiering;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barq_core::{CollectionConfig, Document, Metric};
use barq_storage::{Database, Durability, Options, SearchRequest};
use clap::{Parser, Subcommand, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "barq-bench",
    about = "Barq DB macro-benchmarks (JSON lines on stdout)"
)]
struct Args {
    /// Directory for benchmark databases (a temporary directory by default).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Mode {
    Sync,
    Interval,
    None,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Ingest throughput: WRITERS threads upserting batches of BATCH random vectors.
    Ingest {
        #[arg(long, default_value_t = 128)]
        dim: usize,
        #[arg(long, value_enum, default_value = "none")]
        durability: Mode,
        #[arg(long, default_value_t = 8)]
        writers: usize,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Vectors to write in total.
        #[arg(long, default_value_t = 1_000_000)]
        total: usize,
        /// Turn background compaction off (it competes with the writers for the CPU).
        #[arg(long)]
        no_compaction: bool,
        /// Build no indexes (index_min_rows at its maximum): the rate without index builds.
        #[arg(long)]
        no_index: bool,
    },
    /// Exact search latency and QPS over ROWS random vectors (flushed into segments; `exact`, so
    /// indexes are not used).
    Search {
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
        #[arg(long, default_value_t = 128)]
        dim: usize,
        #[arg(long, default_value_t = 10)]
        k: usize,
        #[arg(long, default_value_t = 50)]
        queries: usize,
        /// Merge all segments into one before measuring.
        #[arg(long)]
        compact: bool,
    },
    /// Approximate search through the IVF indexes against exact search: recall@K and latency
    /// as the probe count varies, build time and index size, on gaussian clusters or real
    /// embeddings; through HTTP with --http; the first cold query of a fresh process with --cold.
    Ann(ann::Args),
    /// Reopen time after a crash (abort) with a full memtable of MIB MiB in the WAL.
    Reopen {
        #[arg(long, default_value_t = 64)]
        mib: usize,
        #[arg(long, default_value_t = 128)]
        dim: usize,
    },
    /// Resident memory after opening a database holding GIB GiB of segments.
    Memory {
        #[arg(long, default_value_t = 2.0)]
        gib: f64,
        #[arg(long, default_value_t = 128)]
        dim: usize,
    },
    /// Tiering: offload / hydrate throughput vs raw object_store put / get, cold get and search.
    Tiering {
        #[arg(long, default_value_t = 200_000)]
        rows: usize,
        #[arg(long, default_value_t = 128)]
        dim: usize,
        /// `local` (a directory through LocalFileSystem), `memory` (InMemory) or `s3`: an S3
        /// endpoint named by BARQ_TEST_S3_ENDPOINT and BARQ_TEST_S3_BUCKET, with credentials in
        /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (`eval "$(scripts/test-services.sh env)"`
        /// sets all four for the test server). The run writes under a prefix of its own and
        /// deletes it at the end.
        #[arg(long, default_value = "local")]
        store: String,
        /// Verify uploads by reading them back (default) or by size only.
        #[arg(long)]
        verify_size_only: bool,
        /// Rounds of each measurement; the medians are reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// The key prefix the run writes under (and deletes at the end). Default
        /// `bench-<pid>-<ms>`, one of its own.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// The HTTP API: search overhead and upsert rate against the embedded API, then a load of
    /// CLIENTS concurrent clients for SECONDS while segments are offloaded and hydrated.
    Serve {
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value_t = 128)]
        dim: usize,
    },
    /// The bucket as the shared engine: restore time from the bucket, replica lag after a
    /// flush, query throughput of one node against a writer and two replicas.
    Bucket(bucket::Args),
    /// Filtered search: recall@10 and latency at 50 % to 0.1 % selectivity, for filters whose
    /// matches lie near the query, far from it and anywhere; with --cold, requests and bytes of
    /// a first cold query against the unfiltered one.
    Filter(filter::Args),
    /// The suite used for docs/benchmarks.md.
    All,
    #[command(hide = true)]
    ReopenChild {
        path: PathBuf,
        mib: usize,
        dim: usize,
    },
    #[command(hide = true)]
    OpenRss { path: PathBuf },
    #[command(hide = true)]
    AnnColdQuery {
        data: PathBuf,
        queries: PathBuf,
        index: usize,
        #[arg(long)]
        store: String,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        bucket_dir: PathBuf,
        #[arg(long)]
        endpoint: Option<String>,
    },
}

fn random_vectors(rng: &mut StdRng, n: usize, dim: usize) -> Vec<f32> {
    (0..n * dim)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect()
}

fn docs(prefix: &str, start: usize, vectors: &[f32], dim: usize) -> Vec<Document> {
    vectors
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| Document::new(format!("{prefix}{}", start + i), v.to_vec()))
        .collect()
}

fn emit(v: serde_json::Value) {
    println!("{v}");
}

fn workdir(args_dir: &Option<PathBuf>) -> (Option<tempfile::TempDir>, PathBuf) {
    match args_dir {
        Some(d) => {
            let p = d.join(format!("run-{}", std::process::id()));
            std::fs::create_dir_all(&p).expect("create bench dir");
            (None, p)
        }
        None => {
            let t = tempfile::tempdir().expect("tempdir");
            let p = t.path().to_owned();
            (Some(t), p)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn ingest(
    dir: &Path,
    dim: usize,
    mode: Mode,
    writers: usize,
    batch: usize,
    total: usize,
    compaction: bool,
    index: bool,
) {
    let durability = match mode {
        Mode::Sync => Durability::Sync,
        Mode::Interval => Durability::Interval(Duration::from_millis(100)),
        Mode::None => Durability::None,
    };
    let db = Arc::new(
        Database::open(
            dir,
            Options {
                durability,
                background_compaction: compaction,
                recall_sample_rate: 0.0, // off in benchmarks
                index_min_rows: if index {
                    Options::default().index_min_rows
                } else {
                    u64::MAX
                },
                ..Options::default()
            },
        )
        .expect("open"),
    );
    db.create_collection(CollectionConfig::new("bench", dim as u32, Metric::L2).expect("cfg"))
        .expect("create");
    let per_writer = total / writers;
    // Build every batch of documents before the clock starts, so that only the database is
    // measured (not the client building its request).
    let work: Vec<Vec<Vec<Document>>> = (0..writers)
        .map(|w| {
            let vectors = random_vectors(
                &mut StdRng::seed_from_u64(w as u64),
                batch.min(per_writer),
                dim,
            );
            (0..per_writer)
                .step_by(batch)
                .map(|start| {
                    let n = batch.min(per_writer - start);
                    docs(&format!("w{w}-"), start, &vectors[..n * dim], dim)
                })
                .collect()
        })
        .collect();
    // Dirty pages of an earlier run (or of building the work) would be written back while this
    // one flushes, competing for the disk: every run starts with none.
    let _ = std::process::Command::new("sync").status();
    let start = Instant::now();
    std::thread::scope(|s| {
        for batches in &work {
            let db = Arc::clone(&db);
            s.spawn(move || {
                for b in batches {
                    db.upsert("bench", b).expect("upsert");
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let n = per_writer * writers;
    let rate = n as f64 / secs;
    // How long background work takes to index every segment large enough for an index.
    let min_rows = Options::default().index_min_rows;
    let waiting = Instant::now();
    let caught_up = (index && compaction).then(|| {
        while waiting.elapsed() < Duration::from_secs(600) {
            let stats = db.collection_stats("bench").expect("stats");
            if stats
                .segment_list
                .iter()
                .all(|s| s.indexed == Some(true) || s.rows < min_rows)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        waiting.elapsed().as_secs_f64()
    });
    eprintln!(
        "ingest dim={dim} durability={mode:?} writers={writers} batch={batch} indexes={index}: {n} vectors in {secs:.2}s = {rate:.0} vectors/s{}",
        caught_up.map_or(String::new(), |s| format!(
            "; every large segment indexed {s:.1} s after the last write"
        ))
    );
    emit(
        json!({"bench":"ingest","dim":dim,"durability":format!("{mode:?}").to_lowercase(),"writers":writers,"batch":batch,"indexes":index,"vectors":n,"seconds":secs,"vectors_per_sec":rate,"index_caught_up_s":caught_up}),
    );
    Arc::into_inner(db)
        .expect("sole owner")
        .close()
        .expect("close");
}

fn load(db: &Database, rows: usize, dim: usize) {
    let mut rng = StdRng::seed_from_u64(7);
    let chunk = 10_000;
    let mut done = 0;
    while done < rows {
        let n = chunk.min(rows - done);
        let v = random_vectors(&mut rng, n, dim);
        db.upsert("bench", &docs("d", done, &v, dim))
            .expect("upsert");
        done += n;
    }
    db.flush("bench").expect("flush");
}

/// Minor page faults of this process so far (`/proc/self/stat`, field 10).
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.to_owned();
            after.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

/// The `p` quantile of sorted values (NaN for none).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn search(dir: &Path, rows: usize, dim: usize, k: usize, queries: usize, compact: bool) {
    let opts = Options {
        durability: Durability::None,
        background_compaction: false,
        recall_sample_rate: 0.0, // off in benchmarks
        ..Options::default()
    };
    let db = Database::open(dir, opts.clone()).expect("open");
    db.create_collection(CollectionConfig::new("bench", dim as u32, Metric::L2).expect("cfg"))
        .expect("create");
    let t = Instant::now();
    load(&db, rows, dim);
    if compact {
        db.compact("bench").expect("compact");
    }
    let segments = db.collection_stats("bench").expect("stats").segments;
    eprintln!(
        "loaded {rows} x {dim} into {segments} segments in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let mut rng = StdRng::seed_from_u64(99);
    let qs: Vec<Vec<f32>> = (0..queries)
        .map(|_| random_vectors(&mut rng, 1, dim))
        .collect();
    // The first query after an open (the files are in the page cache, as after a restart of
    // a running node): it maps the segments' pages in and verifies each block's checksum once.
    db.close().expect("close");
    let db = Database::open(dir, opts).expect("reopen");
    let faults = minor_faults();
    let t = Instant::now();
    db.search("bench", &SearchRequest::new(qs[0].clone(), k).exact(true))
        .expect("search");
    let first_ms = t.elapsed().as_secs_f64() * 1000.0;
    let first_faults = minor_faults() - faults;
    let t = Instant::now();
    db.search(
        "bench",
        &SearchRequest::new(qs[1 % queries].clone(), k).exact(true),
    )
    .expect("search");
    let second_ms = t.elapsed().as_secs_f64() * 1000.0;
    // What the checksum part costs: CRC32C of as many bytes as the vectors, on one core.
    let vector_bytes = rows * dim * 4;
    let buf = vec![7u8; vector_bytes];
    let t = Instant::now();
    std::hint::black_box(crc32c::crc32c(&buf));
    let crc_ms = t.elapsed().as_secs_f64() * 1000.0;
    drop(buf);
    eprintln!(
        "first query after open {first_ms:.1} ms ({first_faults} minor page faults), second {second_ms:.1} ms; CRC32C of the {:.0} MB of vectors takes {crc_ms:.1} ms on one core",
        vector_bytes as f64 / 1e6
    );
    emit(
        json!({"bench":"search_first_after_open","rows":rows,"dim":dim,"first_ms":first_ms,"minor_faults":first_faults,"second_ms":second_ms,"crc32c_of_vectors_ms":crc_ms}),
    );
    // warm-up: the rest of the first touch
    for q in qs.iter().take(3) {
        db.search("bench", &SearchRequest::new(q.clone(), k).exact(true))
            .expect("search");
    }
    let mut lat = Vec::with_capacity(queries);
    let start = Instant::now();
    for q in &qs {
        let t = Instant::now();
        let hits = db
            .search("bench", &SearchRequest::new(q.clone(), k).exact(true))
            .expect("search");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(hits.len(), k.min(rows));
    }
    let qps = queries as f64 / start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    eprintln!(
        "search {rows} x {dim} k={k} ({segments} segments): p50 {p50:.2} ms, p99 {p99:.2} ms, {qps:.1} QPS"
    );
    emit(
        json!({"bench":"search","rows":rows,"dim":dim,"k":k,"segments":segments,"queries":queries,"p50_ms":p50,"p99_ms":p99,"qps":qps}),
    );
    db.close().expect("close");
}

fn reopen(dir: &Path, mib: usize, dim: usize) {
    let exe = std::env::current_exe().expect("exe");
    let status = Command::new(exe)
        .args([
            "reopen-child",
            &dir.display().to_string(),
            &mib.to_string(),
            &dim.to_string(),
        ])
        .status()
        .expect("spawn child");
    assert!(!status.success(), "the child aborts after writing");
    let t = Instant::now();
    let db = Database::open(dir, Options::default()).expect("reopen");
    let secs = t.elapsed().as_secs_f64();
    let stats = db.collection_stats("bench").expect("stats");
    eprintln!(
        "reopen after crash: {} memtable rows ({:.1} MiB) replayed in {:.3}s",
        stats.memtable_rows,
        stats.memtable_bytes as f64 / (1 << 20) as f64,
        secs
    );
    emit(
        json!({"bench":"reopen","memtable_rows":stats.memtable_rows,"memtable_bytes":stats.memtable_bytes,"wal_bytes":stats.wal_bytes,"seconds":secs}),
    );
    db.close().expect("close");
}

fn reopen_child(dir: &Path, mib: usize, dim: usize) {
    // Keep everything in the memtable (no flush) until just under the limit, then crash.
    let limit = 64 << 20;
    let db = Database::open(
        dir,
        Options {
            durability: Durability::None,
            memtable_max_bytes: limit,
            recall_sample_rate: 0.0, // off in benchmarks
            ..Options::default()
        },
    )
    .expect("open");
    db.create_collection(CollectionConfig::new("bench", dim as u32, Metric::L2).expect("cfg"))
        .expect("create");
    let mut rng = StdRng::seed_from_u64(3);
    let target = (mib << 20).min(limit - (1 << 20));
    let mut i = 0;
    while db.collection_stats("bench").expect("stats").memtable_bytes < target as u64 {
        let v = random_vectors(&mut rng, 1000, dim);
        db.upsert("bench", &docs("r", i, &v, dim)).expect("upsert");
        i += 1000;
    }
    std::process::abort();
}

/// (VmRSS, VmHWM, RssAnon) in KiB. RssAnon is the heap and stacks; the rest of VmRSS is mapped
/// file pages (segments) that the kernel can drop at will.
fn rss_kib() -> (u64, u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"), field("RssAnon:"))
}

fn memory(dir: &Path, gib: f64, dim: usize) {
    let rows = ((gib * (1u64 << 30) as f64) / (dim * 4) as f64) as usize;
    {
        let opts = Options {
            durability: Durability::None,
            background_compaction: false,
            recall_sample_rate: 0.0, // off in benchmarks
            ..Options::default()
        };
        let db = Database::open(dir, opts).expect("open");
        db.create_collection(CollectionConfig::new("bench", dim as u32, Metric::L2).expect("cfg"))
            .expect("create");
        load(&db, rows, dim);
        db.close().expect("close");
    }
    let exe = std::env::current_exe().expect("exe");
    let out = Command::new(exe)
        .args(["open-rss", &dir.display().to_string()])
        .output()
        .expect("spawn");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

fn open_rss(dir: &Path) {
    let (before, _, _) = rss_kib();
    let db = Database::open(dir, Options::default()).expect("open");
    let (after, hwm, _) = rss_kib();
    let stats = db.collection_stats("bench").expect("stats");
    let (after_stats, _, _) = rss_kib();
    let t = Instant::now();
    db.search(
        "bench",
        &SearchRequest::new(vec![0.5; 128.min(stats.dimension as usize)], 10),
    )
    .expect("search");
    let first_search = t.elapsed().as_secs_f64();
    let (after_search, _, anon_after_search) = rss_kib();
    eprintln!(
        "memory: opened {} segments, {:.2} GiB; RSS {:.1} MiB before open, {:.1} MiB after open (peak {:.1} MiB), \
         {:.1} MiB after stats, {:.1} MiB after a first search ({first_search:.2}s), of which {:.1} MiB anonymous (the rest is mapped segment pages)",
        stats.segments,
        stats.segment_bytes as f64 / (1u64 << 30) as f64,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        hwm as f64 / 1024.0,
        after_stats as f64 / 1024.0,
        after_search as f64 / 1024.0,
        anon_after_search as f64 / 1024.0,
    );
    emit(json!({
        "bench": "memory", "segments": stats.segments, "segment_bytes": stats.segment_bytes,
        "rss_before_open_kib": before, "rss_after_open_kib": after, "rss_peak_at_open_kib": hwm,
        "rss_after_stats_kib": after_stats, "rss_after_first_search_kib": after_search, "rss_anon_after_first_search_kib": anon_after_search,
        "first_search_seconds": first_search
    }));
    db.close().expect("close");
}

fn main() {
    // RUST_LOG=barq_storage=debug shows the engine's own timings (e.g. of each download).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args = Args::parse();
    let (_guard, dir) = workdir(&args.dir);
    let sub = |name: &str| {
        let p = dir.join(name);
        let _ = std::fs::remove_dir_all(&p);
        p
    };
    match args.cmd {
        Cmd::Ingest {
            dim,
            durability,
            writers,
            batch,
            total,
            no_compaction,
            no_index,
        } => ingest(
            &dir,
            dim,
            durability,
            writers,
            batch,
            total,
            !no_compaction,
            !no_index,
        ),
        Cmd::Search {
            rows,
            dim,
            k,
            queries,
            compact,
        } => search(&dir, rows, dim, k, queries, compact),
        Cmd::Ann(a) => ann::run(&dir, &a),
        Cmd::Bucket(a) => bucket::run(&dir, &a),
        Cmd::Filter(a) => filter::run(&dir, &a),
        Cmd::AnnColdQuery {
            data,
            queries,
            index,
            store,
            prefix,
            bucket_dir,
            endpoint,
        } => ann::cold_query_child(
            &data,
            &queries,
            index,
            &store,
            &prefix,
            &bucket_dir,
            endpoint.as_deref(),
        ),
        Cmd::Reopen { mib, dim } => reopen(&dir, mib, dim),
        Cmd::Memory { gib, dim } => memory(&dir, gib, dim),
        Cmd::Tiering {
            rows,
            dim,
            store,
            verify_size_only,
            rounds,
            prefix,
        } => {
            let verify = if verify_size_only {
                barq_storage::tiering::UploadVerification::Size
            } else {
                barq_storage::tiering::UploadVerification::ReadBack
            };
            tiering::run(&dir, rows, dim, &store, verify, rounds.max(1), prefix)
        }
        Cmd::Serve {
            clients,
            seconds,
            dim,
        } => serve::run(&dir, clients, seconds, dim),
        Cmd::ReopenChild { path, mib, dim } => reopen_child(&path, mib, dim),
        Cmd::OpenRss { path } => open_rss(&path),
        Cmd::All => {
            for dim in [128, 768] {
                for mode in [Mode::None, Mode::Interval, Mode::Sync] {
                    let total = if dim == 128 { 1_000_000 } else { 200_000 };
                    ingest(
                        &sub(&format!("ingest-{dim}-{mode:?}")),
                        dim,
                        mode,
                        8,
                        1000,
                        total,
                        true,
                        true,
                    );
                }
            }
            search(&sub("search-100k"), 100_000, 128, 10, 100, false);
            search(&sub("search-1m"), 1_000_000, 128, 10, 30, false);
            reopen(&sub("reopen"), 64, 128);
            memory(&sub("memory"), 2.0, 128);
        }
    }
    if args.dir.is_some() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
