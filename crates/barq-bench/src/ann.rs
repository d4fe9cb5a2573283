//! `barq-bench ann`: approximate search through the segments' IVF indexes against exact search
//! on the same data — recall@10 as the probe count varies, latency, QPS, build time and index
//! size.

use std::path::Path;
use std::time::Instant;

use barq_core::{CollectionConfig, Document, Metric, SearchHit};
use barq_storage::segment::format::BlockKind;
use barq_storage::segment::{MmapSource, Segment};
use barq_storage::{Database, Durability, Options, SearchRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::{emit, percentile};

/// A standard normal draw (Box–Muller).
fn gauss(rng: &mut StdRng) -> f32 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
}

/// Gaussian clusters: `centres` centres drawn N(0, 1) per coordinate, each row a centre plus
/// N(0, `spread`²) noise.
struct Mixture {
    dim: usize,
    centres: Vec<f32>,
    spread: f32,
}

impl Mixture {
    fn new(dim: usize, centres: usize, spread: f32, rng: &mut StdRng) -> Mixture {
        Mixture {
            dim,
            centres: (0..centres * dim).map(|_| gauss(rng)).collect(),
            spread,
        }
    }

    fn draw(&self, rng: &mut StdRng) -> Vec<f32> {
        let c = rng.random_range(0..self.centres.len() / self.dim);
        self.centres[c * self.dim..(c + 1) * self.dim]
            .iter()
            .map(|x| x + gauss(rng) * self.spread)
            .collect()
    }
}

fn ids(hits: &[SearchHit]) -> std::collections::HashSet<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    dir: &Path,
    rows: usize,
    dim: usize,
    k: usize,
    queries: usize,
    metric: Metric,
    centres: usize,
    spread: f32,
) {
    let opts = Options {
        durability: Durability::None,
        background_compaction: false,
        memtable_max_bytes: 1 << 31,
        recall_sample_rate: 0.0, // off in benchmarks
        ..Options::default()
    };
    let db = Database::open(dir, opts).expect("open");
    db.create_collection(CollectionConfig::new("bench", dim as u32, metric).expect("cfg"))
        .expect("create");
    let mut rng = StdRng::seed_from_u64(42);
    let mix = Mixture::new(dim, centres, spread, &mut rng);
    let t = Instant::now();
    let batch = 10_000;
    for start in (0..rows).step_by(batch) {
        let docs: Vec<Document> = (start..(start + batch).min(rows))
            .map(|i| Document::new(format!("d{i}"), mix.draw(&mut rng)))
            .collect();
        db.upsert("bench", &docs).expect("upsert");
    }
    db.flush("bench").expect("flush");
    let ingest_s = t.elapsed().as_secs_f64();
    let plain_bytes: u64 = db
        .tiering()
        .segments("bench")
        .expect("segments")
        .iter()
        .map(|s| s.size_bytes)
        .sum();
    let qs: Vec<Vec<f32>> = (0..queries).map(|_| mix.draw(&mut rng)).collect();
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
        let path = dir.join("collections/bench/segments").join(&s.file_name);
        let seg = Segment::open(std::sync::Arc::new(MmapSource::open(&path).expect("map")))
            .expect("open segment");
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
    let vector_bytes = (rows * dim * 4) as u64;
    eprintln!(
        "ann {rows} x {dim} {metric}: ingest {ingest_s:.1} s; {} segment(s) indexed in {build_s:.1} s, {clusters} clusters, index {:.1} MB = {:.1} % of the f32 vectors ({:.1} B/vector); calibrated nprobe {nprobe:?}",
        built.len(),
        index_bytes as f64 / 1e6,
        100.0 * index_bytes as f64 / vector_bytes as f64,
        index_bytes as f64 / rows as f64
    );
    emit(
        json!({"bench":"ann_build","rows":rows,"dim":dim,"metric":metric.as_str(),"segments_indexed":built.len(),"build_s":build_s,"clusters":clusters,"index_bytes":index_bytes,"index_fraction_of_vectors":index_bytes as f64 / vector_bytes as f64,"plain_segment_bytes":plain_bytes,"calibrated_nprobe":nprobe,"exact_search_before_indexing_ms":before_index_ms}),
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
    let mut settings: Vec<(String, SearchRequest)> = [1usize, 2, 4, 8, 16, 32, 64]
        .iter()
        .map(|&n| {
            (
                format!("nprobe={n}"),
                SearchRequest::new(vec![], k).nprobe(n),
            )
        })
        .collect();
    for r in [0.9f32, 0.95, 0.99] {
        settings.push((
            format!("recall={r}"),
            SearchRequest::new(vec![], k).recall(r),
        ));
    }
    for (name, template) in settings {
        let mut lat = Vec::with_capacity(qs.len());
        let mut hits = 0usize;
        let start = Instant::now();
        for (q, truth) in qs.iter().zip(&exact) {
            let req = SearchRequest {
                vector: q.clone(),
                ..template.clone()
            };
            let t = Instant::now();
            let got = db.search("bench", &req).expect("ann");
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            let truth = ids(truth);
            hits += got.iter().filter(|h| truth.contains(h.id.as_str())).count();
        }
        let qps = qs.len() as f64 / start.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        let recall = hits as f64 / (qs.len() * k) as f64;
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        eprintln!(
            "  {name:>12}: recall@{k} {recall:.3}, p50 {p50:.3} ms, p99 {p99:.3} ms, {qps:.0} QPS (exact p50 {:.2} ms)",
            percentile(&exact_lat, 0.5)
        );
        emit(
            json!({"bench":"ann","setting":name,"rows":rows,"dim":dim,"k":k,"metric":metric.as_str(),"queries":qs.len(),"recall":recall,"p50_ms":p50,"p99_ms":p99,"qps":qps,"exact_p50_ms":percentile(&exact_lat, 0.5)}),
        );
    }
    db.close().expect("close");
}
