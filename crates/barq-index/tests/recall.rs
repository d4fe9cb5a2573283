//! Recall of the index against exact search, on seeded gaussian mixtures, for every metric.
//! (Real text embeddings are tested by the storage engine's recall suite.)

use barq_core::Metric;
use barq_index::ivf::{exact_key, indexed_space};
use barq_index::{IndexParams, build};

/// A small deterministic generator for the test data (independent of the index's own).
struct Lcg(u64);
impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

/// `n` rows around `centers` gaussian centres (spread 1 around centres of spread 1.5, so that
/// neighbourhoods cross cluster borders and a query must probe several clusters), and
/// `queries` fresh points from the same mixture.
fn mixture(
    n: usize,
    queries: usize,
    dim: usize,
    centers: usize,
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    let mut g = Lcg(seed);
    let cs: Vec<f32> = (0..centers * dim).map(|_| g.gauss() * 1.5).collect();
    let mut draw = |count: usize| {
        let mut out = Vec::with_capacity(count * dim);
        for _ in 0..count {
            let c = (g.unit() * centers as f64) as usize % centers;
            for d in 0..dim {
                out.push(cs[c * dim + d] + g.gauss());
            }
        }
        out
    };
    let data = draw(n);
    let q = draw(queries);
    (data, q)
}

fn recall(metric: Metric, dim: usize, rows: usize, target: f32) -> (f32, usize, usize) {
    let (data, queries) = mixture(rows, 100, dim, 200, 17 + dim as u64);
    let index = build(metric, dim, &data, &IndexParams::default()).expect("build");
    let space: Vec<f32> = data
        .chunks_exact(dim)
        .flat_map(|v| indexed_space(metric, v))
        .collect();
    let nprobe = index.head.nprobe_for(target);
    let k = 10;
    let mut hits = 0;
    for q in queries.chunks_exact(dim) {
        let qs = indexed_space(metric, q);
        let mut exact: Vec<(f32, usize)> = space
            .chunks_exact(dim)
            .enumerate()
            .map(|(r, v)| (exact_key(metric, &qs, v), r))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let truth: Vec<usize> = exact[..k].iter().map(|(_, r)| *r).collect();
        let got = index.search(&space, q, k, nprobe);
        assert_eq!(got.len(), k);
        hits += got
            .iter()
            .filter(|(pos, _)| truth.contains(&(index.order[*pos as usize] as usize)))
            .count();
    }
    (
        hits as f32 / (k * 100) as f32,
        nprobe,
        index.head.clusters(),
    )
}

#[test]
fn recall_at_the_default_target_on_gaussian_mixtures_for_every_metric() {
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        let (r, nprobe, clusters) = recall(metric, 64, 30_000, 0.95);
        eprintln!("{metric}: recall@10 {r:.3} at nprobe {nprobe} of {clusters}");
        assert!(
            r >= 0.95,
            "{metric}: recall@10 {r} at nprobe {nprobe} of {clusters}"
        );
        assert!(
            nprobe < clusters,
            "{metric}: calibration probes every cluster"
        );
    }
}

#[test]
fn higher_targets_probe_more_and_reach_them() {
    let (r80, n80, _) = recall(Metric::L2, 32, 20_000, 0.8);
    let (r99, n99, _) = recall(Metric::L2, 32, 20_000, 0.99);
    eprintln!("0.8: {r80} at {n80}; 0.99: {r99} at {n99}");
    assert!(n99 > n80);
    assert!(r99 >= 0.98, "recall {r99} at the 0.99 target");
    assert!(r80 >= 0.75, "recall {r80} at the 0.8 target");
}

#[test]
fn build_is_deterministic_for_a_seed() {
    let (data, _) = mixture(5000, 0, 16, 10, 3);
    let a = build(Metric::L2, 16, &data, &IndexParams::default()).expect("build");
    let b = build(Metric::L2, 16, &data, &IndexParams::default()).expect("build");
    assert_eq!(a.head, b.head);
    assert_eq!(a.order, b.order);
    assert_eq!(a.codes, b.codes);
}

#[test]
fn bad_shapes_are_rejected() {
    let e = build(Metric::L2, 3, &[1.0; 10], &IndexParams::default()).expect_err("ragged");
    assert_eq!(e.kind(), barq_core::ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("dimension 3"), "{e}");
}
