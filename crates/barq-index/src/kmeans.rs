//! Balanced hierarchical k-means.
//!
//! A flat k-means into ~1,000 clusters of a million rows costs rows × clusters × dim per pass,
//! far too much for a segment build. Instead the rows are split recursively: a node of `n` rows
//! is clustered into `ceil(n / target)` children (at most [`MAX_FANOUT`]), trained by Lloyd's
//! algorithm on a sample, every row of the node is assigned to its nearest child, and a child
//! still larger than the target splits again. Each row is compared with a few dozen centroids
//! in all, and cluster sizes follow the target because each node's fan-out is chosen from its
//! own size. A child that comes out empty is reseeded from the largest one; a node whose rows
//! cannot be told apart (duplicates) is cut into equal parts.

use rayon::prelude::*;

use crate::rng::SplitMix64;

/// At most this many children per node.
pub const MAX_FANOUT: usize = 64;
/// Lloyd's algorithm trains on at most this many sample rows per child.
const SAMPLE_PER_CHILD: usize = 96;
/// Lloyd iterations per node.
const ITERATIONS: usize = 12;

/// One leaf of the partition.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The mean of its rows.
    pub centroid: Vec<f32>,
    /// Row numbers, ascending.
    pub rows: Vec<u32>,
}

/// Partition the `n = data.len() / dim` rows of `data` into clusters of about `target` rows.
/// Deterministic for a given `seed`.
pub fn partition(data: &[f32], dim: usize, target: usize, seed: u64) -> Vec<Cluster> {
    let n = data.len() / dim;
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    split(
        data,
        dim,
        (0..n as u32).collect(),
        target.max(1),
        &mut rng,
        0,
        &mut out,
    );
    out
}

fn row(data: &[f32], dim: usize, r: u32) -> &[f32] {
    let s = r as usize * dim;
    &data[s..s + dim]
}

fn split(
    data: &[f32],
    dim: usize,
    rows: Vec<u32>,
    target: usize,
    rng: &mut SplitMix64,
    depth: usize,
    out: &mut Vec<Cluster>,
) {
    // A node up to 1.5× the target is a leaf: splitting it would make two half-size clusters.
    if rows.len() * 2 <= target * 3 || depth >= 8 {
        if !rows.is_empty() {
            out.push(Cluster {
                centroid: mean(data, dim, &rows),
                rows,
            });
        }
        return;
    }
    let k = rows.len().div_ceil(target).clamp(2, MAX_FANOUT);
    let sample: Vec<u32> = rng
        .sample(rows.len(), k * SAMPLE_PER_CHILD)
        .into_iter()
        .map(|i| rows[i])
        .collect();
    let centroids = lloyd(data, dim, &sample, k, rng);
    let assign = assign(data, dim, &rows, &centroids);
    let mut children: Vec<Vec<u32>> = vec![Vec::new(); k];
    for (r, c) in rows.iter().zip(&assign) {
        children[*c as usize].push(*r);
    }
    if children.iter().filter(|c| !c.is_empty()).count() < 2 {
        // Indistinguishable rows: equal parts keep the clusters balanced.
        let per = rows.len().div_ceil(k);
        children = rows.chunks(per).map(<[u32]>::to_vec).collect();
    }
    for child in children {
        split(data, dim, child, target, rng, depth + 1, out);
    }
}

fn mean(data: &[f32], dim: usize, rows: &[u32]) -> Vec<f32> {
    let mut acc = vec![0.0f64; dim];
    for &r in rows {
        for (a, x) in acc.iter_mut().zip(row(data, dim, r)) {
            *a += f64::from(*x);
        }
    }
    let n = rows.len().max(1) as f64;
    acc.iter().map(|a| (a / n) as f32).collect()
}

/// Index of the centroid nearest to each row (L2), in parallel.
pub(crate) fn assign(data: &[f32], dim: usize, rows: &[u32], centroids: &[f32]) -> Vec<u32> {
    rows.par_iter()
        .with_min_len(256)
        .map(|&r| nearest(row(data, dim, r), centroids, dim).0)
        .collect()
}

/// The nearest centroid to `x` and its squared distance.
pub(crate) fn nearest(x: &[f32], centroids: &[f32], dim: usize) -> (u32, f32) {
    let mut best = (0u32, f32::INFINITY);
    for (i, c) in centroids.chunks_exact(dim).enumerate() {
        let d = barq_core::l2_squared(x, c);
        if d < best.1 {
            best = (i as u32, d);
        }
    }
    best
}

/// Lloyd's algorithm on `sample` from k-means++-style seeds.
fn lloyd(data: &[f32], dim: usize, sample: &[u32], k: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let mut centroids = seeds(data, dim, sample, k, rng);
    for _ in 0..ITERATIONS {
        let assign = assign(data, dim, sample, &centroids);
        let mut sums = vec![0.0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (r, c) in sample.iter().zip(&assign) {
            let c = *c as usize;
            counts[c] += 1;
            for (s, x) in sums[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(row(data, dim, *r))
            {
                *s += f64::from(*x);
            }
        }
        for c in 0..k {
            if counts[c] == 0 {
                // Reseed an empty child with a row of the largest one.
                let big = (0..k).max_by_key(|&j| counts[j]).unwrap_or(0);
                let members: Vec<u32> = sample
                    .iter()
                    .zip(&assign)
                    .filter(|(_, a)| **a as usize == big)
                    .map(|(r, _)| *r)
                    .collect();
                if let Some(&r) = members.get(rng.below(members.len().max(1))) {
                    centroids[c * dim..(c + 1) * dim].copy_from_slice(row(data, dim, r));
                }
                continue;
            }
            let n = counts[c] as f64;
            for (x, s) in centroids[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(&sums[c * dim..(c + 1) * dim])
            {
                *x = (s / n) as f32;
            }
        }
    }
    centroids
}

/// k-means++ seeding: each next seed drawn with probability proportional to its squared
/// distance from the seeds so far.
fn seeds(data: &[f32], dim: usize, sample: &[u32], k: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let mut centroids = Vec::with_capacity(k * dim);
    let first = sample[rng.below(sample.len())];
    centroids.extend_from_slice(row(data, dim, first));
    let mut dist: Vec<f32> = sample
        .iter()
        .map(|&r| barq_core::l2_squared(row(data, dim, r), &centroids[..dim]))
        .collect();
    while centroids.len() < k * dim {
        let total: f64 = dist.iter().map(|d| f64::from(*d)).sum();
        let pick = if total > 0.0 {
            let mut target = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
            let mut pick = dist.len() - 1;
            for (i, d) in dist.iter().enumerate() {
                target -= f64::from(*d);
                if target <= 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            rng.below(sample.len())
        };
        let start = centroids.len();
        centroids.extend_from_slice(row(data, dim, sample[pick]));
        let c = centroids[start..].to_vec();
        for (d, &r) in dist.iter_mut().zip(sample) {
            *d = d.min(barq_core::l2_squared(row(data, dim, r), &c));
        }
    }
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(n: usize, dim: usize, centers: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        let mut unit = || (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32 - 0.5;
        let cs: Vec<f32> = (0..centers * dim).map(|_| unit() * 20.0).collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = i % centers;
            for d in 0..dim {
                out.push(cs[c * dim + d] + unit());
            }
        }
        out
    }

    #[test]
    fn every_row_in_exactly_one_cluster_and_sizes_follow_the_target() {
        let dim = 8;
        let data = blobs(20_000, dim, 37, 1);
        let clusters = partition(&data, dim, 500, 3);
        let mut seen = vec![false; 20_000];
        for c in &clusters {
            for &r in &c.rows {
                assert!(!seen[r as usize], "row {r} twice");
                seen[r as usize] = true;
            }
        }
        assert!(seen.iter().all(|s| *s), "a row was lost");
        let max = clusters.iter().map(|c| c.rows.len()).max().unwrap_or(0);
        assert!(max <= 750, "largest cluster {max} rows for a target of 500");
        let n = clusters.len();
        assert!(
            (27..=120).contains(&n),
            "{n} clusters for 20,000 rows at 500"
        );
    }

    #[test]
    fn deterministic_for_a_seed() {
        let data = blobs(3000, 4, 5, 2);
        let a = partition(&data, 4, 200, 11);
        let b = partition(&data, 4, 200, 11);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.rows, y.rows);
            assert_eq!(x.centroid, y.centroid);
        }
    }

    #[test]
    fn duplicates_still_split() {
        let data = vec![1.0f32; 4 * 5000];
        let clusters = partition(&data, 4, 1000, 1);
        assert!(clusters.len() >= 4);
        assert!(clusters.iter().all(|c| c.rows.len() <= 1500));
        assert_eq!(clusters.iter().map(|c| c.rows.len()).sum::<usize>(), 5000);
    }
}
