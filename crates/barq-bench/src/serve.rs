//! `barq-bench serve`: the HTTP API against the embedded API on the same machine.
//!
//! 1. Overhead, on a quiet server: search latency through HTTP minus the same search through
//!    the embedded API (target ≤ 1 ms), and upsert throughput through HTTP in batches of 1,000
//!    against the embedded ingest rate with the same writers and durability (target ≥ 0.5×).
//! 2. Load: CLIENTS concurrent clients upserting (batches of 100) and searching for SECONDS
//!    while a maintainer flushes, offloads and hydrates through the admin routes; then every
//!    acknowledged id is read back. Reports errors, lost writes, p50 / p99 per operation.
//!
//! The server runs in this process (the same `barq_server` code as `barq serve`) on a loopback
//! port; clients are blocking HTTP clients on their own threads.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use barq_core::{CollectionConfig, Document, Metric};
use barq_server::{AppState, ServerConfig};
use barq_storage::{Database, Durability, Options, SearchRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::percentile;

fn random_vector(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.random::<f32>()).collect()
}

/// A deterministic vector per id number, so that read-back can check contents.
fn vector_of(n: u64, dim: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(n);
    random_vector(&mut rng, dim)
}

pub(crate) struct Running {
    pub(crate) url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub(crate) fn start(db: Arc<Database>) -> Running {
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("addr");
                url_tx.send(format!("http://{addr}")).expect("send url");
                let state = AppState::new(db, ServerConfig::default());
                barq_server::serve(
                    listener,
                    state,
                    async {
                        let _ = stop_rx.await;
                    },
                    Duration::from_secs(60),
                )
                .await
                .expect("serve");
            });
        });
        Running {
            url: url_rx.recv().expect("server url"),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub(crate) fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }
}

pub(crate) fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client")
}

pub(crate) fn post(
    c: &reqwest::blocking::Client,
    url: &str,
    body: String,
) -> Result<Value, String> {
    let resp = c
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let v: Value = resp.json().map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(v)
    } else {
        Err(format!("{status}: {v}"))
    }
}

/// An upsert body; vectors as JSON arrays or, with `base64`, as base64 strings.
fn docs_json(ids: std::ops::Range<u64>, prefix: &str, dim: usize, base64: bool) -> String {
    let docs: Vec<Value> = ids
        .map(|n| {
            let v = vector_of(n, dim);
            let vector = if base64 {
                json!(barq_core::encode_base64_vector(&v))
            } else {
                json!(v)
            };
            json!({"id": format!("{prefix}{n}"), "vector": vector})
        })
        .collect();
    json!({ "documents": docs }).to_string()
}

fn options() -> Options {
    Options {
        durability: Durability::Sync,
        tiering: barq_storage::tiering::TieringOptions {
            maintenance_interval: None,
            ..Default::default()
        },
        recall_sample_rate: 0.0, // off in benchmarks
        ..Options::default()
    }
}

pub(crate) fn run(dir: &Path, clients: usize, seconds: u64, dim: usize) {
    let db = Arc::new(Database::open(dir.join("data"), options()).expect("open"));
    let server = Running::start(Arc::clone(&db));
    let base = server.url.clone();
    let http = client();
    overhead(&db, &http, &base, dim);
    if seconds > 0 {
        load(&db, &base, clients, seconds, dim);
    }
    server.stop();
    match Arc::try_unwrap(db) {
        Ok(db) => db.close().expect("close"),
        Err(_) => eprintln!("  (database still shared at exit)"),
    }
}

fn overhead(db: &Arc<Database>, http: &reqwest::blocking::Client, base: &str, dim: usize) {
    // Search: 20,000 vectors in one segment, the same query both ways.
    db.create_collection(CollectionConfig::new("probe", dim as u32, Metric::L2).expect("cfg"))
        .expect("create");
    let mut rng = StdRng::seed_from_u64(9);
    for chunk in 0..20 {
        let docs: Vec<Document> = (0..1000)
            .map(|i| {
                Document::new(
                    format!("p{}", chunk * 1000 + i),
                    random_vector(&mut rng, dim),
                )
            })
            .collect();
        db.upsert("probe", &docs).expect("upsert");
    }
    db.flush("probe").expect("flush");
    let q = random_vector(&mut rng, dim);
    let n = 300;
    let mut embedded = Vec::with_capacity(n);
    let mut via_http = Vec::with_capacity(n);
    let body = json!({"vector": q, "k": 10}).to_string();
    let url = format!("{base}/v1/collections/probe/search");
    for _ in 0..20 {
        db.search("probe", &SearchRequest::new(q.clone(), 10))
            .expect("warm");
        post(http, &url, body.clone()).expect("warm http");
    }
    // Interleaved, so that both see the same machine state.
    for _ in 0..n {
        let t = Instant::now();
        db.search("probe", &SearchRequest::new(q.clone(), 10))
            .expect("search");
        embedded.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        post(http, &url, body.clone()).expect("http search");
        via_http.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    embedded.sort_by(f64::total_cmp);
    via_http.sort_by(f64::total_cmp);
    let (e50, h50) = (percentile(&embedded, 0.5), percentile(&via_http, 0.5));
    eprintln!(
        "search 20k x {dim}, k=10: embedded p50 {e50:.3} ms, HTTP p50 {h50:.3} ms: +{:.3} ms (target <= 1 ms); p99 {:.3} vs {:.3} ms",
        h50 - e50,
        percentile(&embedded, 0.99),
        percentile(&via_http, 0.99)
    );
    println!(
        "{}",
        json!({"bench": "serve-search-overhead", "dim": dim, "rows": 20000, "embedded_p50_ms": e50, "http_p50_ms": h50,
               "overhead_ms": h50 - e50, "embedded_p99_ms": percentile(&embedded, 0.99), "http_p99_ms": percentile(&via_http, 0.99)})
    );

    // Ingest: WRITERS writers × BATCHES batches of 1,000, embedded then HTTP (bodies built
    // before the clock starts: serializing is the client's work).
    let writers = 4;
    let batches = 25;
    let per_writer = (batches * 1000) as u64;
    db.create_collection(
        CollectionConfig::new("ingest-embedded", dim as u32, Metric::L2).expect("cfg"),
    )
    .expect("create");
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers as u64 {
            s.spawn(move || {
                for b in 0..batches as u64 {
                    let start = w * per_writer + b * 1000;
                    let docs: Vec<Document> = (start..start + 1000)
                        .map(|n| Document::new(format!("e{n}"), vector_of(n, dim)))
                        .collect();
                    db.upsert("ingest-embedded", &docs).expect("upsert");
                }
            });
        }
    });
    let embedded_rate = (writers as u64 * per_writer) as f64 / t.elapsed().as_secs_f64();
    let mut http_rates = Vec::new();
    for (encoding, base64) in [("json-floats", false), ("base64", true)] {
        let collection = format!("ingest-http-{encoding}");
        db.create_collection(
            CollectionConfig::new(&collection, dim as u32, Metric::L2).expect("cfg"),
        )
        .expect("create");
        let bodies: Vec<Vec<String>> = (0..writers as u64)
            .map(|w| {
                (0..batches as u64)
                    .map(|b| {
                        let start = w * per_writer + b * 1000;
                        docs_json(start..start + 1000, "h", dim, base64)
                    })
                    .collect()
            })
            .collect();
        let url = format!("{base}/v1/collections/{collection}/documents");
        let t = Instant::now();
        std::thread::scope(|s| {
            for w in bodies {
                let url = url.clone();
                s.spawn(move || {
                    let c = client();
                    for body in w {
                        post(&c, &url, body).expect("http upsert");
                    }
                });
            }
        });
        let rate = (writers as u64 * per_writer) as f64 / t.elapsed().as_secs_f64();
        http_rates.push((encoding, rate));
    }
    for (encoding, rate) in &http_rates {
        eprintln!(
            "upsert {writers} writers x {batches} batches of 1000, {dim}-d, sync durability: embedded {embedded_rate:.0}/s, HTTP with {encoding} vectors {rate:.0}/s = {:.2}x (target >= 0.5x)",
            rate / embedded_rate
        );
        println!(
            "{}",
            json!({"bench": "serve-ingest", "dim": dim, "writers": writers, "batch": 1000, "encoding": encoding,
                   "embedded_per_s": embedded_rate, "http_per_s": rate, "ratio": rate / embedded_rate})
        );
    }
}

#[derive(Default)]
struct Stats {
    upsert_ms: Vec<f64>,
    search_ms: Vec<f64>,
    errors: Vec<String>,
    acked: Vec<(u64, u64)>,
}

fn load(db: &Arc<Database>, base: &str, clients: usize, seconds: u64, dim: usize) {
    db.create_collection(CollectionConfig::new("load", dim as u32, Metric::L2).expect("cfg"))
        .expect("create");
    let stop = AtomicBool::new(false);
    let moves = AtomicU64::new(0);
    let conflicts = AtomicU64::new(0);
    let started = Instant::now();
    let per_client: Vec<Stats> = std::thread::scope(|s| {
        // The maintainer: flush, offload everything, hydrate everything, over and over.
        let maintainer = s.spawn(|| {
            let c = client();
            let mut errors = Vec::new();
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(2));
                let route = if round % 2 == 0 { "offload" } else { "hydrate" };
                round += 1;
                for (path, body) in [("flush", String::new()), (route, String::new())] {
                    match post(&c, &format!("{base}/v1/collections/load/{path}"), body) {
                        Ok(v) => {
                            let n = v["moves"].as_array().map_or(0, Vec::len);
                            moves.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        // A segment being compacted is busy: the move is refused, not lost.
                        Err(e) if e.starts_with("409") => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => errors.push(format!("{path}: {e}")),
                    }
                }
            }
            errors
        });
        let handles: Vec<_> = (0..clients as u64)
            .map(|cid| {
                let stop = &stop;
                s.spawn(move || {
                    let c = client();
                    let mut st = Stats::default();
                    let mut rng = StdRng::seed_from_u64(cid);
                    let mut next = 0u64;
                    let prefix = format!("c{cid}-");
                    let upsert_url = format!("{base}/v1/collections/load/documents");
                    let search_url = format!("{base}/v1/collections/load/search");
                    while !stop.load(Ordering::Relaxed) {
                        if rng.random::<f32>() < 0.3 {
                            let body = docs_json(next..next + 100, &prefix, dim, false);
                            let t = Instant::now();
                            match post(&c, &upsert_url, body) {
                                Ok(_) => {
                                    st.upsert_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                                    st.acked.push((next, next + 100));
                                }
                                Err(e) => st.errors.push(format!("upsert: {e}")),
                            }
                            next += 100;
                        } else {
                            let body = json!({"vector": random_vector(&mut rng, dim), "k": 10})
                                .to_string();
                            let t = Instant::now();
                            match post(&c, &search_url, body) {
                                Ok(_) => st.search_ms.push(t.elapsed().as_secs_f64() * 1000.0),
                                Err(e) => st.errors.push(format!("search: {e}")),
                            }
                        }
                    }
                    st
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Stats> = handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect();
        all.push(Stats {
            errors: maintainer.join().expect("maintainer"),
            ..Stats::default()
        });
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut upsert: Vec<f64> = per_client
        .iter()
        .flat_map(|s| s.upsert_ms.iter().copied())
        .collect();
    let mut search: Vec<f64> = per_client
        .iter()
        .flat_map(|s| s.search_ms.iter().copied())
        .collect();
    upsert.sort_by(f64::total_cmp);
    search.sort_by(f64::total_cmp);
    let errors: Vec<&String> = per_client.iter().flat_map(|s| s.errors.iter()).collect();
    for e in errors.iter().take(5) {
        eprintln!("  error: {e}");
    }
    // Read every acknowledged id back through the engine, and check its vector.
    let t = Instant::now();
    let mut acked = 0u64;
    let mut lost = 0u64;
    for (cid, st) in per_client.iter().enumerate().take(clients) {
        for &(a, b) in &st.acked {
            for n in a..b {
                acked += 1;
                match db.get("load", &format!("c{cid}-{n}")) {
                    Ok(Some(d)) if d.vector == vector_of(n, dim) => {}
                    _ => lost += 1,
                }
            }
        }
    }
    let status = db.tiering().status().expect("status");
    eprintln!(
        "load: {clients} clients for {elapsed:.0} s, {dim}-d: {} upserts of 100 (p50 {:.1} ms, p99 {:.1} ms), {} searches (p50 {:.1} ms, p99 {:.1} ms); {} errors; {} segment moves ({} refused as busy); {acked} acknowledged documents read back in {:.1} s: {lost} lost; cold reads: {} requests",
        upsert.len(),
        percentile(&upsert, 0.5),
        percentile(&upsert, 0.99),
        search.len(),
        percentile(&search, 0.5),
        percentile(&search, 0.99),
        errors.len(),
        moves.load(Ordering::Relaxed),
        conflicts.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64(),
        status.counters.remote_requests,
    );
    println!(
        "{}",
        json!({"bench": "serve-load", "clients": clients, "seconds": elapsed, "dim": dim,
               "upserts": upsert.len(), "upsert_p50_ms": percentile(&upsert, 0.5), "upsert_p99_ms": percentile(&upsert, 0.99),
               "searches": search.len(), "search_p50_ms": percentile(&search, 0.5), "search_p99_ms": percentile(&search, 0.99),
               "errors": errors.len(), "moves": moves.load(Ordering::Relaxed), "moves_refused_busy": conflicts.load(Ordering::Relaxed),
               "acknowledged": acked, "lost": lost})
    );
    assert_eq!(lost, 0, "acknowledged writes were lost");
    assert!(errors.is_empty(), "the load saw errors");
}
