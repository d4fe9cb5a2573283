//! `barq-bench filter`: filtered search on gaussian clusters whose rows carry a keyword field of
//! 100 values (`cat`, which follows the row's centre) and an integer field (`num`, uniform in
//! 0..1000, independent of the vectors). For each selectivity (50 %, 10 %, 1 %, 0.1 %) three
//! filters: matches near the query (the query's own `cat` and its neighbours' — the rows around
//! it), far from it (other centres' `cat`s) and anywhere (a `num` range). Recall@10 against the
//! exact filtered search, warm latency against the unfiltered search of the same queries, and
//! with `--cold` the first query after a reopen (empty cache) from the cold store: requests and
//! bytes against the unfiltered query's.

use std::path::Path;
use std::time::Instant;

use barq_core::{CollectionConfig, Document, Filter, IndexedField, Metric, Payload, SearchHit};
use barq_storage::{Database, SearchRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::ann::{Mixture, cold_store, open};
use crate::{emit, percentile};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    #[arg(long, default_value_t = 128)]
    dim: usize,
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Queries per filter (recall and warm latency).
    #[arg(long, default_value_t = 100)]
    queries: usize,
    /// Gaussian centres of the data (`cat` is the centre modulo 100).
    #[arg(long, default_value_t = 1000)]
    centres: usize,
    #[arg(long, default_value_t = 0.5)]
    spread: f32,
    /// Then offload the segment to a cold store, `local` or `s3` (the S3 test server, as for
    /// `barq-bench ann`), and measure the first query after a reopen for each filter.
    #[arg(long)]
    cold: Option<String>,
    /// Cold queries (each after a reopen) per filter.
    #[arg(long, default_value_t = 5)]
    cold_rounds: usize,
}

const CATS: usize = 100;

fn payload(centre: usize, num: u64) -> Option<Payload> {
    json!({"cat": format!("c{:02}", centre % CATS), "num": num})
        .as_object()
        .cloned()
}

/// Where a filter's matches lie relative to the query.
#[derive(Debug, Clone, Copy)]
enum Lie {
    Near,
    Far,
    Anywhere,
}

impl Lie {
    fn name(self) -> &'static str {
        match self {
            Lie::Near => "near",
            Lie::Far => "far",
            Lie::Anywhere => "anywhere",
        }
    }
}

/// The filter of `share` of the rows for a query drawn around `centre`.
fn filter_for(lie: Lie, share: f64, centre: usize) -> Filter {
    let own = centre % CATS;
    let cats = |from: usize, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("c{:02}", (from + i) % CATS))
            .collect()
    };
    let v = match lie {
        Lie::Anywhere => {
            json!({"must": [{"key": "num", "range": {"lt": (share * 1000.0).round()}}]})
        }
        Lie::Near | Lie::Far => {
            // Near: the query's own cat first; far: cats from the opposite side of the ring.
            let from = match lie {
                Lie::Near => own,
                _ => own + CATS / 2,
            };
            let n = ((share * CATS as f64).round() as usize).max(1);
            if share >= 0.01 {
                json!({"must": [{"key": "cat", "match": {"any": cats(from, n)}}]})
            } else {
                json!({"must": [{"key": "cat", "match": {"value": cats(from, 1)[0]}},
                                {"key": "num", "range": {"lt": (share * 100_000.0).round()}}]})
            }
        }
    };
    Filter::from_json(&v).expect("a valid filter")
}

fn ids(hits: &[SearchHit]) -> std::collections::HashSet<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

fn recall(got: &[SearchHit], truth: &[SearchHit]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    let t = ids(truth);
    got.iter().filter(|h| t.contains(h.id.as_str())).count() as f64 / truth.len() as f64
}

struct Warm {
    recall: f64,
    p50: f64,
    p99: f64,
    matched: u64,
}

/// Recall against `truth` and warm latencies of `req` for every query.
fn warm(
    db: &Database,
    qs: &[(usize, Vec<f32>)],
    truth: &[Vec<SearchHit>],
    req: impl Fn(usize, &[f32]) -> SearchRequest,
) -> Warm {
    // One pass to warm the page cache and the decoded heads, then the measured one.
    for (i, (_, q)) in qs.iter().enumerate().take(10) {
        db.search("bench", &req(i, q)).expect("warm-up");
    }
    let (mut lat, mut sum, mut matched) = (Vec::new(), 0.0, 0u64);
    for (i, (_, q)) in qs.iter().enumerate() {
        let t = Instant::now();
        let (hits, stats) = db.search_explained("bench", &req(i, q)).expect("search");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        sum += recall(&hits, &truth[i]);
        matched += stats.rows_matched.unwrap_or(0);
    }
    lat.sort_by(f64::total_cmp);
    Warm {
        recall: sum / qs.len() as f64,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        matched: matched / qs.len() as u64,
    }
}

pub fn run(dir: &Path, args: &Args) {
    let prefix = format!("bench-filter-{}", std::process::id());
    let data_dir = dir.join("data");
    let spec = || {
        args.cold
            .as_deref()
            .map(|kind| cold_store(kind, dir, &prefix, None))
    };
    let db = open(&data_dir, spec());
    let fields = vec![
        IndexedField::new("cat", barq_core::FieldType::Keyword),
        IndexedField::new("num", barq_core::FieldType::Integer),
    ];
    db.create_collection(
        CollectionConfig::new("bench", args.dim as u32, Metric::L2)
            .and_then(|c| c.with_indexed_fields(fields))
            .expect("cfg"),
    )
    .expect("create");
    let mut rng = StdRng::seed_from_u64(42);
    let mix = Mixture::new(args.dim, args.centres, args.spread, &mut rng);
    let t = Instant::now();
    for start in (0..args.rows).step_by(10_000) {
        let docs: Vec<Document> = (start..(start + 10_000).min(args.rows))
            .map(|i| {
                let (c, v) = mix.draw_with_centre(&mut rng);
                Document {
                    id: format!("d{i}"),
                    vector: v,
                    payload: payload(c, rng.random_range(0..1000)),
                }
            })
            .collect();
        db.upsert("bench", &docs).expect("upsert");
    }
    db.flush("bench").expect("flush");
    let ingest_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    db.build_indexes("bench").expect("index");
    let build_s = t.elapsed().as_secs_f64();
    let segs = db.tiering().segments("bench").expect("segments");
    let segment_bytes: u64 = segs.iter().map(|s| s.size_bytes).sum();
    eprintln!(
        "filter {} x {}: ingest {ingest_s:.1} s, index and payload index built in {build_s:.1} s, {} segment(s), {:.1} MB",
        args.rows,
        args.dim,
        segs.len(),
        segment_bytes as f64 / 1e6
    );
    let mut qrng = StdRng::seed_from_u64(4242);
    let qs: Vec<(usize, Vec<f32>)> = (0..args.queries)
        .map(|_| mix.draw_with_centre(&mut qrng))
        .collect();
    let k = args.k;
    let plain_truth: Vec<Vec<SearchHit>> = qs
        .iter()
        .map(|(_, q)| {
            db.search("bench", &SearchRequest::new(q.clone(), k).exact(true))
                .expect("exact")
        })
        .collect();
    let plain = warm(&db, &qs, &plain_truth, |_, q| {
        SearchRequest::new(q.to_vec(), k)
    });
    eprintln!(
        "  unfiltered: recall {:.3}, p50 {:.3} ms, p99 {:.3} ms",
        plain.recall, plain.p50, plain.p99
    );
    emit(
        json!({"bench":"filter","rows":args.rows,"dim":args.dim,"k":k,"setting":"unfiltered","recall":plain.recall,"p50_ms":plain.p50,"p99_ms":plain.p99}),
    );
    let mut settings = Vec::new();
    for share in [0.5, 0.1, 0.01, 0.001] {
        for lie in [Lie::Near, Lie::Far, Lie::Anywhere] {
            settings.push((share, lie));
        }
    }
    for &(share, lie) in &settings {
        let filters: Vec<Filter> = qs.iter().map(|(c, _)| filter_for(lie, share, *c)).collect();
        let truth: Vec<Vec<SearchHit>> = qs
            .iter()
            .zip(&filters)
            .map(|((_, q), f)| {
                db.search(
                    "bench",
                    &SearchRequest::new(q.clone(), k)
                        .exact(true)
                        .filter(f.clone()),
                )
                .expect("exact")
            })
            .collect();
        let w = warm(&db, &qs, &truth, |i, q| {
            SearchRequest::new(q.to_vec(), k).filter(filters[i].clone())
        });
        let (_, st) = db
            .search_explained(
                "bench",
                &SearchRequest::new(qs[0].1.clone(), k).filter(filters[0].clone()),
            )
            .expect("search");
        let plan = st.segments.first().map_or("-", |s| s.plan);
        eprintln!(
            "  {:>5.1} % {:>8}: recall {:.3}, p50 {:.3} ms ({:.2}x unfiltered), p99 {:.3} ms, {} rows matched, plan {plan}",
            share * 100.0,
            lie.name(),
            w.recall,
            w.p50,
            w.p50 / plain.p50,
            w.p99,
            w.matched
        );
        emit(
            json!({"bench":"filter","rows":args.rows,"dim":args.dim,"k":k,"setting":"filtered","selectivity":share,"matches":lie.name(),"recall":w.recall,"p50_ms":w.p50,"p99_ms":w.p99,"p50_vs_unfiltered":w.p50 / plain.p50,"rows_matched":w.matched,"plan":plan}),
        );
    }
    db.close().expect("close");
    let Some(kind) = args.cold.as_deref() else {
        return;
    };
    let db = open(&data_dir, spec());
    for s in &segs {
        db.tiering()
            .offload_segment("bench", s.id)
            .expect("offload");
    }
    db.close().expect("close");
    // The first query after a reopen: the range cache is empty, the kept metadata stays.
    let cold_one = |req: SearchRequest| -> (f64, u64, u64) {
        let db = open(&data_dir, spec());
        let t = Instant::now();
        let (_, st) = db.search_explained("bench", &req).expect("cold search");
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        db.close().expect("close");
        (ms, st.cold_requests, st.cold_bytes)
    };
    let rounds = args.cold_rounds.min(qs.len());
    let median = |v: Vec<(f64, u64, u64)>| -> (f64, f64, f64) {
        let col = |f: &dyn Fn(&(f64, u64, u64)) -> f64| {
            let mut c: Vec<f64> = v.iter().map(f).collect();
            c.sort_by(f64::total_cmp);
            percentile(&c, 0.5)
        };
        (col(&|x| x.0), col(&|x| x.1 as f64), col(&|x| x.2 as f64))
    };
    let base = median(
        qs.iter()
            .take(rounds)
            .map(|(_, q)| cold_one(SearchRequest::new(q.clone(), k)))
            .collect(),
    );
    eprintln!(
        "  cold ({kind}) unfiltered: p50 {:.1} ms, {:.0} requests, {:.3} MB",
        base.0,
        base.1,
        base.2 / 1e6
    );
    emit(
        json!({"bench":"filter_cold","store":kind,"setting":"unfiltered","p50_ms":base.0,"requests":base.1,"bytes":base.2}),
    );
    for &(share, lie) in &settings {
        let r = median(
            qs.iter()
                .take(rounds)
                .map(|(c, q)| {
                    cold_one(SearchRequest::new(q.clone(), k).filter(filter_for(lie, share, *c)))
                })
                .collect(),
        );
        eprintln!(
            "  cold ({kind}) {:>5.1} % {:>8}: p50 {:.1} ms, {:.0} requests, {:.3} MB ({:.2}x unfiltered bytes)",
            share * 100.0,
            lie.name(),
            r.0,
            r.1,
            r.2 / 1e6,
            r.2 / base.2
        );
        emit(
            json!({"bench":"filter_cold","store":kind,"selectivity":share,"matches":lie.name(),"p50_ms":r.0,"requests":r.1,"bytes":r.2,"bytes_vs_unfiltered":r.2 / base.2}),
        );
    }
    if kind == "s3" {
        let spec = cold_store(kind, dir, &prefix, None);
        crate::tiering::delete_prefix(&spec.store, &prefix);
    }
}
