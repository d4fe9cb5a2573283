//! The IVF index of one segment: clusters, codes, and the probe counts calibrated for it.

use std::borrow::Cow;

use barq_core::{Error, Metric, Result};
use rayon::prelude::*;

use crate::kmeans;
use crate::rabitq::{FACTORS, Quantizer};
use crate::rng::SplitMix64;

/// How an index is built.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexParams {
    /// Rows per cluster the partition aims at. Default 1,000.
    pub target_cluster_rows: usize,
    /// Bits per coordinate of the codes; `None`: 4 up to 512 dimensions, 2 above (the code
    /// stays under an eighth of the f32 bytes and the estimate ranks well at either width).
    pub bits: Option<u8>,
    /// Seed of the partition, the rotation and the calibration sample.
    pub seed: u64,
    /// Re-rank this many candidates per wanted result with their f32 vectors. Default 4.
    pub rerank_factor: usize,
    /// Sample queries (rows of the segment) the probe counts are calibrated on. Default 64.
    pub calibration_queries: usize,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            target_cluster_rows: 1000,
            bits: None,
            seed: 0x6261_7271_5f69_7666,
            rerank_factor: 4,
            calibration_queries: 64,
        }
    }
}

impl IndexParams {
    /// Check the parameters; the error names the wrong one.
    pub fn validate(&self) -> Result<()> {
        if let Some(b) = self.bits
            && !crate::rabitq::ALLOWED_BITS.contains(&b)
        {
            return Err(Error::invalid(format!(
                "index bits is {b}: allowed are 1, 2, 4 and 8 bits per coordinate"
            )));
        }
        if !(16..=1_000_000).contains(&self.target_cluster_rows) {
            return Err(Error::invalid(format!(
                "index target_cluster_rows is {}: it must be between 16 and 1,000,000",
                self.target_cluster_rows
            )));
        }
        if !(1..=100).contains(&self.rerank_factor) {
            return Err(Error::invalid(format!(
                "index rerank_factor is {}: it must be between 1 and 100",
                self.rerank_factor
            )));
        }
        if self.calibration_queries == 0 {
            return Err(Error::invalid(
                "index calibration_queries must be at least 1",
            ));
        }
        Ok(())
    }

    /// The code width for `dim`.
    pub fn bits_for(&self, dim: usize) -> u8 {
        self.bits.unwrap_or(if dim <= 512 { 4 } else { 2 })
    }
}

/// The recall targets a probe count is calibrated for, and the `k` they are measured at.
pub const CALIBRATED_RECALLS: [f32; 5] = [0.8, 0.9, 0.95, 0.98, 0.99];
/// `k` of the calibration (recall@10).
pub const CALIBRATION_K: usize = 10;
/// A target is calibrated at `target + (1 − target) × margin` (0.95 at 0.975): the sample is
/// small and synthetic, and a probe count that falls short on real queries costs correctness,
/// one that is a little high costs only time.
pub const CALIBRATION_MARGIN: f32 = 0.5;

/// The part of an index a query needs before it reads any cluster: the head.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexHead {
    /// Metric the rows are compared with.
    pub metric: Metric,
    /// Input dimension.
    pub dim: usize,
    /// Bits per coordinate.
    pub bits: u8,
    /// Seed of the rotation.
    pub seed: u64,
    /// Candidates re-ranked per wanted result.
    pub rerank_factor: usize,
    /// `clusters × dim` centroids, in the indexed space (unit vectors' space for cosine).
    pub centroids: Vec<f32>,
    /// Row `i` of the segment's cluster order lives in cluster `c` for
    /// `offsets[c] <= i < offsets[c + 1]`; `clusters + 1` entries.
    pub offsets: Vec<u32>,
    /// The probe count that reached each of [`CALIBRATED_RECALLS`] on the calibration sample
    /// (see [`calibrate`]).
    pub nprobe: [u32; CALIBRATED_RECALLS.len()],
}

/// A built index: the head, the row order, and every row's code and factors in that order.
#[derive(Debug, Clone)]
pub struct BuiltIndex {
    /// The head.
    pub head: IndexHead,
    /// `order[i]` is the input row stored at position `i` (cluster order).
    pub order: Vec<u32>,
    /// `code_len` bytes per row, in cluster order.
    pub codes: Vec<u8>,
    /// [`FACTORS`] floats per row, in cluster order.
    pub factors: Vec<f32>,
}

impl IndexHead {
    /// Clusters.
    pub fn clusters(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Rows indexed.
    pub fn rows(&self) -> usize {
        self.offsets.last().map_or(0, |r| *r as usize)
    }

    /// The quantizer the codes were made with.
    pub fn quantizer(&self) -> Quantizer {
        Quantizer::new(self.dim, self.bits, self.seed)
    }

    /// The probe count for a recall target: the calibrated count of the smallest calibrated
    /// target at or above it (all clusters above the highest).
    pub fn nprobe_for(&self, recall: f32) -> usize {
        CALIBRATED_RECALLS
            .iter()
            .zip(&self.nprobe)
            .find(|(r, _)| **r >= recall - 1e-6)
            .map_or(self.clusters(), |(_, n)| *n as usize)
            .clamp(1, self.clusters().max(1))
    }

    /// The clusters a query probes, nearest first.
    pub fn route(&self, q: &[f32], nprobe: usize) -> Vec<(u32, f32)> {
        let dim = self.dim;
        let mut scored: Vec<(u32, f32)> = self
            .centroids
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, c)| {
                let key = match self.metric {
                    Metric::Dot => -barq_core::dot(q, c),
                    Metric::L2 | Metric::Cosine => barq_core::l2_squared(q, c),
                };
                (i as u32, key)
            })
            .collect();
        let n = nprobe.min(scored.len());
        if n < scored.len() {
            scored.select_nth_unstable_by(n, |a, b| a.1.total_cmp(&b.1));
            scored.truncate(n);
        }
        scored.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        scored
    }

    /// Centroid `c`.
    pub fn centroid(&self, c: u32) -> &[f32] {
        let s = c as usize * self.dim;
        &self.centroids[s..s + self.dim]
    }
}

/// A query prepared for one index.
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    metric: Metric,
    /// The query in the indexed space (normalized for cosine).
    pub vector: Vec<f32>,
    code: crate::rabitq::QueryCode,
    code_len: usize,
}

impl PreparedQuery {
    /// Prepare `query` for `head`.
    pub fn new(head: &IndexHead, quantizer: &Quantizer, query: &[f32]) -> PreparedQuery {
        let vector = indexed_space(head.metric, query);
        PreparedQuery {
            metric: head.metric,
            code: quantizer.prepare(&vector),
            vector,
            code_len: quantizer.code_len(),
        }
    }

    /// Estimated rank keys (higher is closer) of one cluster's rows: `codes` and `factors` are
    /// the cluster's extents, `centroid` its centroid; `emit(i, key)` is called for row `i` of
    /// the cluster.
    pub fn scan(
        &self,
        centroid: &[f32],
        codes: &[u8],
        factors: &[f32],
        mut emit: impl FnMut(usize, f32),
    ) {
        let c_dot_q = barq_core::dot(centroid, &self.vector);
        for (i, (code, f)) in codes
            .chunks_exact(self.code_len)
            .zip(factors.chunks_exact(FACTORS))
            .enumerate()
        {
            emit(i, self.key(code, f, c_dot_q));
        }
    }

    /// [`PreparedQuery::scan`] of only the rows `rows` of the cluster (ascending or not).
    pub fn scan_rows(
        &self,
        centroid: &[f32],
        codes: &[u8],
        factors: &[f32],
        rows: impl IntoIterator<Item = usize>,
        mut emit: impl FnMut(usize, f32),
    ) {
        let c_dot_q = barq_core::dot(centroid, &self.vector);
        for i in rows {
            let (Some(code), Some(f)) = (
                codes.get(i * self.code_len..(i + 1) * self.code_len),
                factors.get(i * FACTORS..(i + 1) * FACTORS),
            ) else {
                continue;
            };
            emit(i, self.key(code, f, c_dot_q));
        }
    }

    #[inline]
    fn key(&self, code: &[u8], f: &[f32], c_dot_q: f32) -> f32 {
        let ip = self.code.estimate_dot(code, f, c_dot_q);
        match self.metric {
            // ‖q‖² is the same for every row: leave it out.
            Metric::L2 => 2.0 * ip - f[2],
            Metric::Cosine | Metric::Dot => ip,
        }
    }
}

/// The space the index works in: unit vectors for cosine, the vectors themselves otherwise.
pub fn indexed_space(metric: Metric, v: &[f32]) -> Vec<f32> {
    match metric {
        Metric::Cosine => {
            let n = barq_core::norm(v);
            if n > 0.0 {
                v.iter().map(|x| x / n).collect()
            } else {
                v.to_vec()
            }
        }
        Metric::L2 | Metric::Dot => v.to_vec(),
    }
}

/// The exact rank key of `row` for `query`, both in the indexed space (higher is closer).
pub fn exact_key(metric: Metric, query: &[f32], row: &[f32]) -> f32 {
    match metric {
        Metric::L2 => -barq_core::l2_squared(query, row),
        Metric::Cosine | Metric::Dot => barq_core::dot(query, row),
    }
}

/// Build the index of `vectors` (`rows × dim`, row-major): [`partition`], then
/// [`Partitioned::encode`].
pub fn build(
    metric: Metric,
    dim: usize,
    vectors: &[f32],
    params: &IndexParams,
) -> Result<BuiltIndex> {
    Ok(partition(metric, dim, vectors, params)?.encode())
}

/// Rows partitioned into clusters, not yet encoded. The row order is known at this point, so a
/// caller can write the rows in cluster order while [`Partitioned::encode`] computes the codes.
#[derive(Debug)]
pub struct Partitioned<'a> {
    metric: Metric,
    dim: usize,
    bits: u8,
    seed: u64,
    rerank_factor: usize,
    calibration_queries: usize,
    /// The rows in the indexed space (borrowed where that space is the input's).
    space: Cow<'a, [f32]>,
    order: Vec<u32>,
    offsets: Vec<u32>,
    centroids: Vec<f32>,
}

/// Partition `vectors` (`rows × dim`, row-major) by balanced k-means: the first half of
/// [`build`].
pub fn partition<'a>(
    metric: Metric,
    dim: usize,
    vectors: &'a [f32],
    params: &IndexParams,
) -> Result<Partitioned<'a>> {
    if dim == 0 || !vectors.len().is_multiple_of(dim) {
        return Err(Error::invalid(format!(
            "index build: {} floats is not a whole number of rows of dimension {dim}",
            vectors.len()
        )));
    }
    let rows = vectors.len() / dim;
    if rows == 0 || rows > u32::MAX as usize {
        return Err(Error::invalid(format!("index build: {rows} rows")));
    }
    let bits = params.bits_for(dim);
    if !crate::rabitq::ALLOWED_BITS.contains(&bits) {
        return Err(Error::invalid(format!(
            "index build: {bits} bits per coordinate; allowed are 1, 2, 4 and 8"
        )));
    }
    let space: Cow<'a, [f32]> = match metric {
        Metric::Cosine => Cow::Owned(
            vectors
                .par_chunks_exact(dim)
                .flat_map_iter(|v| indexed_space(metric, v))
                .collect(),
        ),
        Metric::L2 | Metric::Dot => Cow::Borrowed(vectors),
    };
    let clusters = kmeans::partition(&space, dim, params.target_cluster_rows, params.seed);
    let mut order = Vec::with_capacity(rows);
    let mut offsets = Vec::with_capacity(clusters.len() + 1);
    let mut centroids = Vec::with_capacity(clusters.len() * dim);
    offsets.push(0u32);
    for c in &clusters {
        order.extend_from_slice(&c.rows);
        offsets.push(order.len() as u32);
        centroids.extend_from_slice(&c.centroid);
    }
    Ok(Partitioned {
        metric,
        dim,
        bits,
        seed: params.seed,
        rerank_factor: params.rerank_factor.max(1),
        calibration_queries: params.calibration_queries,
        space,
        order,
        offsets,
        centroids,
    })
}

impl Partitioned<'_> {
    /// `order()[i]` is the input row stored at position `i` (cluster order).
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// Cluster `c` holds positions `offsets()[c]..offsets()[c + 1]` of [`order`](Self::order).
    pub fn offsets(&self) -> &[u32] {
        &self.offsets
    }

    /// Encode every row's residual to its centroid and calibrate the probe counts: the second
    /// half of [`build`].
    pub fn encode(self) -> BuiltIndex {
        let Partitioned {
            metric,
            dim,
            bits,
            seed,
            rerank_factor,
            calibration_queries,
            space,
            order,
            offsets,
            centroids,
        } = self;
        let rows = order.len();
        let quantizer = Quantizer::new(dim, bits, seed);
        let code_len = quantizer.code_len();
        let rotated: Vec<Vec<f32>> = centroids
            .par_chunks_exact(dim)
            .map(|c| quantizer.rotate(c))
            .collect();
        let home: Vec<u32> = offsets
            .windows(2)
            .enumerate()
            .flat_map(|(c, w)| std::iter::repeat_n(c as u32, (w[1] - w[0]) as usize))
            .collect();
        let mut codes = vec![0u8; rows * code_len];
        let mut factors = vec![0.0f32; rows * FACTORS];
        codes
            .par_chunks_exact_mut(code_len)
            .zip(factors.par_chunks_exact_mut(FACTORS))
            .zip(order.par_iter().zip(&home))
            .with_min_len(256)
            .for_each(|((code, f), (&r, &c))| {
                let o = &space[r as usize * dim..(r as usize + 1) * dim];
                let cent = &centroids[c as usize * dim..(c as usize + 1) * dim];
                f.copy_from_slice(&quantizer.encode(o, cent, &rotated[c as usize], code));
            });
        let mut head = IndexHead {
            metric,
            dim,
            bits,
            seed,
            rerank_factor,
            centroids,
            offsets,
            nprobe: [0; CALIBRATED_RECALLS.len()],
        };
        let built = BuiltIndex {
            head: head.clone(),
            order,
            codes,
            factors,
        };
        head.nprobe = calibrate(&built, &space, calibration_queries, seed);
        BuiltIndex { head, ..built }
    }
}

impl BuiltIndex {
    /// Approximate top `k` of the whole index for `query`: rows in cluster order with their
    /// exact rank keys, best first. `vectors` are the rows in the indexed space, in input order.
    pub fn search(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        nprobe: usize,
    ) -> Vec<(u32, f32)> {
        let head = &self.head;
        let quantizer = head.quantizer();
        let pq = PreparedQuery::new(head, &quantizer, query);
        search_prepared(self, vectors, &pq, k, nprobe, None)
    }
}

fn search_prepared(
    index: &BuiltIndex,
    vectors: &[f32],
    pq: &PreparedQuery,
    k: usize,
    nprobe: usize,
    skip: Option<u32>,
) -> Vec<(u32, f32)> {
    let head = &index.head;
    let dim = head.dim;
    let code_len = index.codes.len() / head.rows().max(1);
    let want = k * head.rerank_factor;
    let mut cands: Vec<(f32, u32)> = Vec::new();
    for (c, _) in head.route(&pq.vector, nprobe) {
        let (s, e) = (
            head.offsets[c as usize] as usize,
            head.offsets[c as usize + 1] as usize,
        );
        pq.scan(
            head.centroid(c),
            &index.codes[s * code_len..e * code_len],
            &index.factors[s * FACTORS..e * FACTORS],
            |i, key| cands.push((key, (s + i) as u32)),
        );
    }
    if let Some(skip) = skip {
        cands.retain(|(_, pos)| index.order[*pos as usize] != skip);
    }
    if cands.len() > want {
        cands.select_nth_unstable_by(want, |a, b| b.0.total_cmp(&a.0));
        cands.truncate(want);
    }
    let mut exact: Vec<(u32, f32)> = cands
        .into_iter()
        .map(|(_, pos)| {
            let r = index.order[pos as usize] as usize;
            (
                pos,
                exact_key(head.metric, &pq.vector, &vectors[r * dim..(r + 1) * dim]),
            )
        })
        .collect();
    exact.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    exact.truncate(k);
    exact
}

/// Rows per block of [`exact_top`]: 1,024 rows of 128 dimensions are 512 KiB, which stay in
/// the cache while every sample query is compared with them.
const TRUTH_BLOCK_ROWS: usize = 1024;

/// The `k` rows with the best exact keys for each sample query (its own row excluded). The rows
/// are read block by block and each block is compared with every query while it is in the
/// cache, so the vectors are streamed from memory once rather than once per query.
fn exact_top(
    metric: Metric,
    vectors: &[f32],
    dim: usize,
    samples: &[(Vec<f32>, u32)],
    k: usize,
) -> Vec<Vec<u32>> {
    let empty = || vec![Vec::<(f32, u32)>::with_capacity(k + 1); samples.len()];
    vectors
        .par_chunks(TRUTH_BLOCK_ROWS * dim)
        .enumerate()
        .fold(empty, |mut tops, (b, block)| {
            for ((q, skip), top) in samples.iter().zip(tops.iter_mut()) {
                for (i, v) in block.chunks_exact(dim).enumerate() {
                    let r = (b * TRUTH_BLOCK_ROWS + i) as u32;
                    if r != *skip {
                        keep_best(top, k, exact_key(metric, q, v), r);
                    }
                }
            }
            tops
        })
        .reduce(empty, |mut a, b| {
            for (top, other) in a.iter_mut().zip(b) {
                for (key, r) in other {
                    keep_best(top, k, key, r);
                }
            }
            a
        })
        .into_iter()
        .map(|top| top.into_iter().map(|(_, r)| r).collect())
        .collect()
}

/// Adds `(key, row)` to `top`, the best `k` so far sorted best (highest key) first, if it
/// belongs there.
fn keep_best(top: &mut Vec<(f32, u32)>, k: usize, key: f32, row: u32) {
    if top.len() == k && top[k - 1].0.total_cmp(&key).is_ge() {
        return;
    }
    let at = top.partition_point(|(other, _)| other.total_cmp(&key).is_ge());
    top.insert(at, (key, row));
    top.truncate(k);
}

/// Find, for each recall target, the smallest probe count whose mean recall@10 on sample
/// queries reaches it with a margin ([`CALIBRATION_MARGIN`]).
///
/// The sample queries are rows of the segment, each searched for without itself (its exact
/// neighbours computed over every other row, its results with it left out): on gaussian
/// mixtures this predicts the recall of fresh queries from the same distribution within a few
/// points, which the margin covers. (Synthetic points between rows of a cluster were tried and
/// over-estimate the probes needed several times over when a cluster holds several modes.)
pub fn calibrate(
    index: &BuiltIndex,
    vectors: &[f32],
    queries: usize,
    seed: u64,
) -> [u32; CALIBRATED_RECALLS.len()] {
    let head = &index.head;
    let dim = head.dim;
    let rows = head.rows();
    let clusters = head.clusters() as u32;
    let mut out = [clusters; CALIBRATED_RECALLS.len()];
    let k = CALIBRATION_K.min(rows);
    if k == 0 || clusters <= 1 {
        return out.map(|_| 1.max(clusters));
    }
    let mut rng = SplitMix64::new(seed ^ 0xca11_b8a7_e000_0000);
    let row = |pos: usize| {
        let r = index.order[pos] as usize;
        &vectors[r * dim..(r + 1) * dim]
    };
    // Sample rows, each searched for without itself.
    let picks: Vec<usize> = rng.sample(rows, queries.max(1));
    let samples: Vec<(Vec<f32>, u32)> = picks
        .iter()
        .map(|&p| (row(p).to_vec(), index.order[p]))
        .collect();
    let quantizer = head.quantizer();
    let truth = exact_top(head.metric, vectors, dim, &samples, k);
    let prepared: Vec<(PreparedQuery, u32)> = samples
        .iter()
        .map(|(q, skip)| (PreparedQuery::new(head, &quantizer, q), *skip))
        .collect();
    let recall_at = |nprobe: usize| -> f32 {
        let hits: usize = prepared
            .par_iter()
            .zip(&truth)
            .map(|((pq, skip), t)| {
                let got = search_prepared(index, vectors, pq, k, nprobe, Some(*skip));
                got.iter()
                    .filter(|(pos, _)| t.contains(&index.order[*pos as usize]))
                    .count()
            })
            .sum();
        hits as f32 / (k * prepared.len()) as f32
    };
    // Probe counts grow by ~1.25× so the answer is within a quarter of the least that works.
    let mut nprobe = 1usize;
    let mut next_target = 0;
    while next_target < CALIBRATED_RECALLS.len() {
        let r = recall_at(nprobe);
        while next_target < CALIBRATED_RECALLS.len() {
            let t = CALIBRATED_RECALLS[next_target];
            if r >= t + (1.0 - t) * CALIBRATION_MARGIN || nprobe >= clusters as usize {
                out[next_target] = nprobe as u32;
                next_target += 1;
            } else {
                break;
            }
        }
        if nprobe >= clusters as usize {
            break;
        }
        nprobe = (nprobe + 1).max(nprobe * 5 / 4).min(clusters as usize);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_exact_top_equals_a_full_sort() {
        let (dim, rows) = (5, 3 * TRUTH_BLOCK_ROWS + 17);
        let mut rng = SplitMix64::new(8);
        let vectors: Vec<f32> = (0..rows * dim)
            .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect();
        let samples: Vec<(Vec<f32>, u32)> = [0usize, 1500, rows - 1]
            .iter()
            .map(|&r| (vectors[r * dim..(r + 1) * dim].to_vec(), r as u32))
            .collect();
        for metric in [Metric::L2, Metric::Dot] {
            let got = exact_top(metric, &vectors, dim, &samples, 10);
            for ((q, skip), got) in samples.iter().zip(got) {
                let mut all: Vec<(f32, u32)> = vectors
                    .chunks_exact(dim)
                    .enumerate()
                    .filter(|(r, _)| *r as u32 != *skip)
                    .map(|(r, v)| (exact_key(metric, q, v), r as u32))
                    .collect();
                all.sort_by(|a, b| b.0.total_cmp(&a.0));
                let want: Vec<u32> = all[..10].iter().map(|(_, r)| *r).collect();
                assert_eq!(got, want, "{metric}");
            }
        }
    }
}
