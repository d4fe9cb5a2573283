//! `barq-bench ann`: approximate search through the segments' IVF indexes against exact search
//! on the same data — recall@10 as the probe count varies, latency, QPS, build time and index
//! size, through the engine and through HTTP; and, with `--cold`, the first query of a fresh
//! process on the segments in the cold store with an empty cache.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use barq_core::{CollectionConfig, Document, Metric, SearchHit};
use barq_storage::segment::format::BlockKind;
use barq_storage::segment::{MmapSource, Segment};
use barq_storage::tiering::{ColdStoreSpec, TieringOptions};
use barq_storage::{Database, Durability, Options, SearchRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::{emit, percentile};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Rows of gaussian clusters (or, with --vectors, at most this many rows of the file).
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    #[arg(long, default_value_t = 128)]
    dim: usize,
    #[arg(long, default_value_t = 10)]
    k: usize,
    #[arg(long, default_value_t = 200)]
    queries: usize,
    #[arg(long, default_value = "l2")]
    metric: Metric,
    /// Gaussian centres of the data.
    #[arg(long, default_value_t = 1000)]
    centres: usize,
    /// Standard deviation of a row around its centre (centres are N(0, 1)).
    #[arg(long, default_value_t = 0.5)]
    spread: f32,
    /// Real embeddings instead of gaussian clusters: a file made by scripts/embeddings.py, whose
    /// last --queries rows are the queries and the rows before them the data (--dim is the
    /// file's).
    #[arg(long)]
    vectors: Option<PathBuf>,
    /// Also measure through the HTTP API (an in-process `barq serve` on loopback).
    #[arg(long)]
    http: bool,
    /// Then offload every segment to a cold store, `local` (a directory) or `s3` (the S3 test
    /// server: BARQ_TEST_S3_ENDPOINT, BARQ_TEST_S3_BUCKET and AWS credentials, as
    /// `eval "$(scripts/test-services.sh env)"` sets them), and time the first query of fresh
    /// processes with an empty cache.
    #[arg(long)]
    cold: Option<String>,
    /// The S3 endpoint the cold-query processes use (default BARQ_TEST_S3_ENDPOINT), e.g. a
    /// delaying proxy (`s3proxy.py --delay-ms 50`) in front of the server.
    #[arg(long)]
    query_endpoint: Option<String>,
    /// Write the data and the queries (after it) to this file in the format of
    /// scripts/embeddings.py, for a peer to index the same vectors
    /// (crates/barq-bench/peers/faiss_ann.py).
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Fresh processes (one first query each) per cold measurement.
    #[arg(long, default_value_t = 5)]
    cold_rounds: usize,
}

/// A standard normal draw (Box–Muller).
fn gauss(rng: &mut StdRng) -> f32 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
}

/// Gaussian clusters: `centres` centres drawn N(0, 1) per coordinate, each row a centre plus
/// N(0, `spread`²) noise.
pub(crate) struct Mixture {
    dim: usize,
    centres: Vec<f32>,
    spread: f32,
}

impl Mixture {
    pub(crate) fn new(dim: usize, centres: usize, spread: f32, rng: &mut StdRng) -> Mixture {
        Mixture {
            dim,
            centres: (0..centres * dim).map(|_| gauss(rng)).collect(),
            spread,
        }
    }

    pub(crate) fn draw(&self, rng: &mut StdRng) -> Vec<f32> {
        self.draw_with_centre(rng).1
    }

    /// A row and the centre it was drawn around.
    pub(crate) fn draw_with_centre(&self, rng: &mut StdRng) -> (usize, Vec<f32>) {
        let c = rng.random_range(0..self.centres.len() / self.dim);
        let v = self.centres[c * self.dim..(c + 1) * self.dim]
            .iter()
            .map(|x| x + gauss(rng) * self.spread)
            .collect();
        (c, v)
    }
}

/// The rows and queries of a run.
enum Data {
    Mixture(Mixture, Box<StdRng>),
    File(Vec<Vec<f32>>),
}

impl Data {
    /// The data and the queries.
    fn new(args: &Args) -> (Data, usize, Vec<Vec<f32>>) {
        match &args.vectors {
            Some(path) => {
                let mut rows = barq_testkit::read_embeddings(path).expect("the vectors file");
                assert!(
                    rows.len() > args.queries,
                    "{} rows in {}, {} queries asked for",
                    rows.len(),
                    path.display(),
                    args.queries
                );
                let queries = rows.split_off(rows.len() - args.queries);
                rows.truncate(args.rows);
                let dim = queries[0].len();
                (Data::File(rows), dim, queries)
            }
            None => {
                let mut rng = StdRng::seed_from_u64(42);
                let mix = Mixture::new(args.dim, args.centres, args.spread, &mut rng);
                // Queries from their own stream, so that they do not depend on --rows.
                let mut qrng = StdRng::seed_from_u64(4242);
                let queries = (0..args.queries).map(|_| mix.draw(&mut qrng)).collect();
                (Data::Mixture(mix, Box::new(rng)), args.dim, queries)
            }
        }
    }

    fn rows(&self, args: &Args) -> usize {
        match self {
            Data::Mixture(..) => args.rows,
            Data::File(rows) => rows.len(),
        }
    }

    fn batch(&mut self, range: std::ops::Range<usize>) -> Vec<Document> {
        match self {
            Data::Mixture(mix, rng) => range
                .map(|i| Document::new(format!("d{i}"), mix.draw(rng)))
                .collect(),
            Data::File(rows) => range
                .map(|i| Document::new(format!("d{i}"), rows[i].clone()))
                .collect(),
        }
    }
}

fn ids(hits: &[SearchHit]) -> std::collections::HashSet<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

pub(crate) fn options() -> Options {
    Options {
        durability: Durability::None,
        background_compaction: false,
        memtable_max_bytes: 1 << 31,
        recall_sample_rate: 0.0, // off in benchmarks
        tiering: TieringOptions {
            maintenance_interval: None,
            upload_on_seal: Some(false),
            ..TieringOptions::default()
        },
        ..Options::default()
    }
}

/// The cold store of `kind` for this run (`endpoint` overrides the S3 test server's).
pub(crate) fn cold_store(
    kind: &str,
    dir: &Path,
    prefix: &str,
    endpoint: Option<&str>,
) -> ColdStoreSpec {
    if !matches!(kind, "local" | "s3") {
        panic!("--cold {kind}: expected local or s3");
    }
    let store = crate::tiering::bench_store(kind, dir, endpoint);
    ColdStoreSpec {
        store,
        prefix: prefix.to_owned(),
        description: format!("bench {kind} store"),
    }
}

pub(crate) fn open(data: &Path, cold: Option<ColdStoreSpec>) -> Database {
    let mut b = Database::builder(data).options(options());
    if let Some(spec) = cold {
        b = b.cold_store(spec);
    }
    b.open().expect("open")
}

pub fn run(dir: &Path, args: &Args) {
    let prefix = format!("bench-ann-{}", std::process::id());
    let data_dir = dir.join("data");
    let cold = args
        .cold
        .as_deref()
        .map(|kind| cold_store(kind, dir, &prefix, None));
    let db = Arc::new(open(&data_dir, cold));
    let (mut data, dim, qs) = Data::new(args);
    let (rows, k, metric) = (data.rows(args), args.k, args.metric);
    db.create_collection(CollectionConfig::new("bench", dim as u32, metric).expect("cfg"))
        .expect("create");
    let mut dump = args.dump.as_ref().map(|p| {
        let mut w = std::io::BufWriter::new(std::fs::File::create(p).expect("dump file"));
        w.write_all(&((rows + qs.len()) as u32).to_le_bytes())
            .and_then(|()| w.write_all(&(dim as u32).to_le_bytes()))
            .expect("write dump");
        w
    });
    let t = Instant::now();
    for start in (0..rows).step_by(10_000) {
        let docs = data.batch(start..(start + 10_000).min(rows));
        if let Some(w) = dump.as_mut() {
            write_rows(w, docs.iter().map(|d| &d.vector[..]));
        }
        db.upsert("bench", &docs).expect("upsert");
    }
    if let Some(mut w) = dump.take() {
        write_rows(&mut w, qs.iter().map(|q| &q[..]));
        w.flush().expect("write dump");
    }
    db.flush("bench").expect("flush");
    drop(data);
    let ingest_s = t.elapsed().as_secs_f64();
    let plain_bytes: u64 = db
        .tiering()
        .segments("bench")
        .expect("segments")
        .iter()
        .map(|s| s.size_bytes)
        .sum();
    // Right after the import nothing is indexed: every search is exact.
    let t = Instant::now();
    for q in qs.iter().take(10) {
        db.search("bench", &SearchRequest::new(q.clone(), k))
            .expect("search");
    }
    let before_index_ms = t.elapsed().as_secs_f64() * 100.0;
    let t = Instant::now();
    let built = db.build_indexes("bench").expect("index");
    let build_s = t.elapsed().as_secs_f64();
    let segs = db.tiering().segments("bench").expect("segments");
    let (mut index_bytes, mut clusters, mut nprobe) = (0u64, 0usize, Vec::new());
    for s in &segs {
        let path = data_dir
            .join("collections/bench/segments")
            .join(&s.file_name);
        let seg =
            Segment::open(Arc::new(MmapSource::open(&path).expect("map"))).expect("open segment");
        for kind in [
            BlockKind::Clusters,
            BlockKind::IndexHead,
            BlockKind::RowEntries,
        ] {
            index_bytes += seg.footer().block(kind).map_or(0, |b| b.len);
        }
        if let Some(i) = seg.index().expect("head") {
            clusters += i.head.clusters();
            nprobe.push(i.head.nprobe);
        }
    }
    let segment_bytes: u64 = segs.iter().map(|s| s.size_bytes).sum();
    let vector_bytes = (rows * dim * 4) as u64;
    let source = args
        .vectors
        .as_ref()
        .map_or("gaussian".to_owned(), |p| p.display().to_string());
    eprintln!(
        "ann {rows} x {dim} {metric} ({source}): ingest {ingest_s:.1} s; {} segment(s) indexed in {build_s:.1} s, {clusters} clusters, index {:.1} MB = {:.1} % of the f32 vectors ({:.1} B/vector); calibrated nprobe {nprobe:?}",
        built.len(),
        index_bytes as f64 / 1e6,
        100.0 * index_bytes as f64 / vector_bytes as f64,
        index_bytes as f64 / rows as f64
    );
    emit(
        json!({"bench":"ann_build","data":source,"rows":rows,"dim":dim,"metric":metric.as_str(),"segments_indexed":built.len(),"build_s":build_s,"clusters":clusters,"index_bytes":index_bytes,"index_fraction_of_vectors":index_bytes as f64 / vector_bytes as f64,"plain_segment_bytes":plain_bytes,"segment_bytes":segment_bytes,"calibrated_nprobe":nprobe,"exact_search_before_indexing_ms":before_index_ms}),
    );
    let exact: Vec<Vec<SearchHit>> = qs
        .iter()
        .map(|q| {
            db.search("bench", &SearchRequest::new(q.clone(), k).exact(true))
                .expect("exact")
        })
        .collect();
    let mut exact_lat: Vec<f64> = Vec::new();
    for q in qs.iter().take(20) {
        let t = Instant::now();
        db.search("bench", &SearchRequest::new(q.clone(), k).exact(true))
            .expect("exact");
        exact_lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    exact_lat.sort_by(f64::total_cmp);
    let exact_p50 = percentile(&exact_lat, 0.5);
    let mut settings: Vec<(String, SearchRequest)> = [1usize, 2, 4, 8, 16, 32, 64, 128]
        .iter()
        .map(|&n| {
            (
                format!("nprobe={n}"),
                SearchRequest::new(vec![], k).nprobe(n),
            )
        })
        .collect();
    settings.push(("default".into(), SearchRequest::new(vec![], k)));
    for r in [0.9f32, 0.99] {
        settings.push((
            format!("recall={r}"),
            SearchRequest::new(vec![], k).recall(r),
        ));
    }
    let common = json!({"data":source,"rows":rows,"dim":dim,"k":k,"metric":metric.as_str(),"queries":qs.len(),"exact_p50_ms":exact_p50});
    for (name, template) in &settings {
        let (recall, lat, qps) = measure(&qs, &exact, k, |q| {
            let req = SearchRequest {
                vector: q.to_vec(),
                ..template.clone()
            };
            db.search("bench", &req)
                .expect("ann")
                .into_iter()
                .map(|h| h.id)
                .collect()
        });
        report("engine", name, recall, &lat, qps, exact_p50, &common);
    }
    if args.http {
        let server = crate::serve::Running::start(Arc::clone(&db));
        let http = crate::serve::client();
        let url = format!("{}/v1/collections/bench/search", server.url);
        for (name, template) in settings.iter().filter(|(n, _)| n == "default") {
            let body = |q: &[f32]| {
                let mut b = json!({"vector": q, "k": k});
                if let Some(n) = template.nprobe {
                    b["nprobe"] = json!(n);
                }
                b.to_string()
            };
            for q in qs.iter().take(20) {
                crate::serve::post(&http, &url, body(q)).expect("warm http");
            }
            let (recall, lat, qps) = measure(&qs, &exact, k, |q| {
                let v = crate::serve::post(&http, &url, body(q)).expect("http search");
                v["results"]
                    .as_array()
                    .expect("results")
                    .iter()
                    .map(|h| h["id"].as_str().expect("id").to_owned())
                    .collect()
            });
            report("http", name, recall, &lat, qps, exact_p50, &common);
        }
        server.stop();
    }
    let Ok(db) = Arc::try_unwrap(db) else {
        panic!("the server still holds the database")
    };
    if let Some(kind) = args.cold.as_deref() {
        for s in &segs {
            db.tiering()
                .offload_segment("bench", s.id)
                .expect("offload");
        }
        db.close().expect("close");
        cold_queries(
            dir,
            &data_dir,
            kind,
            &prefix,
            args,
            &qs,
            &exact,
            segment_bytes,
        );
    } else {
        db.close().expect("close");
    }
}

fn write_rows<'a>(w: &mut impl Write, rows: impl Iterator<Item = &'a [f32]>) {
    for row in rows {
        for x in row {
            w.write_all(&x.to_le_bytes()).expect("write dump");
        }
    }
}

/// Runs `search` over every query: recall@k against `exact`, sorted latencies (ms), QPS.
fn measure(
    qs: &[Vec<f32>],
    exact: &[Vec<SearchHit>],
    k: usize,
    mut search: impl FnMut(&[f32]) -> Vec<String>,
) -> (f64, Vec<f64>, f64) {
    let mut lat = Vec::with_capacity(qs.len());
    let mut found = 0usize;
    let start = Instant::now();
    for (q, truth) in qs.iter().zip(exact) {
        let t = Instant::now();
        let got = search(q);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        let truth = ids(truth);
        found += got.iter().filter(|id| truth.contains(id.as_str())).count();
    }
    let qps = qs.len() as f64 / start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (found as f64 / (qs.len() * k) as f64, lat, qps)
}

fn report(
    path: &str,
    name: &str,
    recall: f64,
    lat: &[f64],
    qps: f64,
    exact_p50: f64,
    common: &Value,
) {
    let (p50, p99) = (percentile(lat, 0.5), percentile(lat, 0.99));
    eprintln!(
        "  {path:>6} {name:>12}: recall {recall:.3}, p50 {p50:.3} ms, p99 {p99:.3} ms, {qps:.0} QPS (exact p50 {exact_p50:.2} ms)"
    );
    let mut v = json!({"bench":"ann","path":path,"setting":name,"recall":recall,"p50_ms":p50,"p99_ms":p99,"qps":qps});
    for (key, value) in common.as_object().expect("object") {
        v[key] = value.clone();
    }
    emit(v);
}

/// First queries of fresh processes on the offloaded segments, with an empty range cache: once
/// with the cold metadata kept on local disk (a restart), once without it (a new node).
#[allow(clippy::too_many_arguments)]
fn cold_queries(
    dir: &Path,
    data_dir: &Path,
    kind: &str,
    prefix: &str,
    args: &Args,
    qs: &[Vec<f32>],
    exact: &[Vec<SearchHit>],
    segment_bytes: u64,
) {
    let rounds = args.cold_rounds.min(qs.len() - 1);
    let queries: Vec<Value> = (0..=rounds)
        .map(|i| json!({"vector": qs[i], "truth": exact[i].iter().map(|h| h.id.clone()).collect::<Vec<_>>()}))
        .collect();
    let file = dir.join("cold-queries.json");
    std::fs::write(&file, serde_json::to_vec(&queries).expect("json")).expect("write queries");
    let exe = std::env::current_exe().expect("current exe");
    for keep in [true, false] {
        let mut results: Vec<Value> = Vec::new();
        for i in 0..rounds {
            if !keep {
                let _ = std::fs::remove_dir_all(data_dir.join("kept"));
            }
            let mut cmd = Command::new(&exe);
            cmd.arg("ann-cold-query")
                .arg(data_dir)
                .arg(&file)
                .arg(i.to_string())
                .args(["--store", kind, "--prefix", prefix, "--bucket-dir"])
                .arg(dir);
            if let Some(e) = &args.query_endpoint {
                cmd.args(["--endpoint", e]);
            }
            let out = cmd.output().expect("run the cold query process");
            assert!(
                out.status.success(),
                "cold query process: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            results.push(serde_json::from_slice(&out.stdout).expect("child json"));
        }
        let col = |key: &str| -> Vec<f64> {
            let mut v: Vec<f64> = results
                .iter()
                .map(|r| r[key].as_f64().expect("number"))
                .collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let (ms, reqs, bytes, recall) = (
            col("query_ms"),
            col("cold_requests"),
            col("cold_bytes"),
            col("recall"),
        );
        let mean_recall = recall.iter().sum::<f64>() / recall.len() as f64;
        let what = if keep {
            "kept metadata"
        } else {
            "no kept metadata"
        };
        eprintln!(
            "  cold first query ({kind}{}, {what}): p50 {:.1} ms (max {:.1}), {} requests (max {}), {:.2} MB = {:.2} % of the segments (max {:.2} %), recall {mean_recall:.3}; open {:.1} ms; then a second query {:.1} ms",
            args.query_endpoint
                .as_deref()
                .map_or(String::new(), |e| format!(" via {e}")),
            percentile(&ms, 0.5),
            ms[ms.len() - 1],
            percentile(&reqs, 0.5),
            reqs[reqs.len() - 1],
            percentile(&bytes, 0.5) / 1e6,
            100.0 * percentile(&bytes, 0.5) / segment_bytes as f64,
            100.0 * bytes[bytes.len() - 1] / segment_bytes as f64,
            percentile(&col("open_ms"), 0.5),
            percentile(&col("second_query_ms"), 0.5),
        );
        emit(
            json!({"bench":"ann_cold","store":kind,"endpoint":args.query_endpoint,"kept_metadata":keep,"rows":qs.len(),"segment_bytes":segment_bytes,"runs":results}),
        );
    }
    if kind == "s3" {
        let spec = cold_store(kind, dir, prefix, None);
        crate::tiering::delete_prefix(&spec.store, prefix);
    }
}

/// One fresh process: opens the database, times its first search (query `index` of `file`)
/// and a second one, and prints the numbers as JSON.
pub fn cold_query_child(
    data_dir: &Path,
    file: &Path,
    index: usize,
    store: &str,
    prefix: &str,
    bucket_dir: &Path,
    endpoint: Option<&str>,
) {
    let queries: Vec<Value> =
        serde_json::from_slice(&std::fs::read(file).expect("queries")).expect("json");
    let vector = |i: usize| -> Vec<f32> {
        queries[i]["vector"]
            .as_array()
            .expect("vector")
            .iter()
            .map(|x| x.as_f64().expect("f32") as f32)
            .collect()
    };
    let t = Instant::now();
    let db = open(
        data_dir,
        Some(cold_store(store, bucket_dir, prefix, endpoint)),
    );
    let open_ms = t.elapsed().as_secs_f64() * 1000.0;
    let truth: Vec<&str> = queries[index]["truth"]
        .as_array()
        .expect("truth")
        .iter()
        .map(|x| x.as_str().expect("id"))
        .collect();
    let t = Instant::now();
    let (hits, stats) = db
        .search_explained("bench", &SearchRequest::new(vector(index), truth.len()))
        .expect("cold search");
    let query_ms = t.elapsed().as_secs_f64() * 1000.0;
    let found = hits
        .iter()
        .filter(|h| truth.contains(&h.id.as_str()))
        .count();
    let t = Instant::now();
    db.search("bench", &SearchRequest::new(vector(index + 1), truth.len()))
        .expect("second search");
    let second_query_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{}",
        json!({"open_ms":open_ms,"query_ms":query_ms,"second_query_ms":second_query_ms,"recall":found as f64 / truth.len() as f64,"cold_requests":stats.cold_requests,"cold_bytes":stats.cold_bytes,"clusters_probed":stats.clusters_probed,"rows_reranked":stats.rows_reranked})
    );
}
