//! k-nearest-neighbour search over memtables and segments: exact, or through the IVF index of
//! each indexed segment.
//!
//! An indexed segment (format version 2) is searched through its index unless the request asks
//! for `exact`: the query is routed to its nearest clusters (the probe count calibrated for the
//! requested recall, or given), their code extents are scanned with tombstones and dead rows
//! skipped, and the best `k × rerank_factor` estimates are re-ranked with their f32 vectors; the
//! re-ranked rows then compete with every other candidate exactly as below. For a Cold segment
//! the extents and the re-rank rows are fetched in two parallel batches on I/O threads.
//!
//! The work is split into tasks — one per memtable, and chunks of rows of each segment — that
//! run in parallel on the rayon pool, each keeping its own top-k heap. A row is a candidate when
//! it is the newest version of its id: memtable rows that were superseded, segment rows that are
//! tombstones or dead (shadowed by a newer segment) are skipped up front; whether a row is
//! shadowed by a newer memtable is checked only for rows good enough to enter a heap. The heaps
//! are merged and ties at the k-th score are broken by id: each heap also keeps up to k rows that
//! tie its current k-th best, so a row tied at the cut-off is not lost to scan order (with more
//! than k exact ties in one task, which of them are kept does depend on it).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Range;
use std::sync::Arc;

use barq_core::{Filter, Kernel, Metric, Result, SearchHit, validate_k, validate_query_vector};
use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::{Collection, SharedMemtable, decode_payload};
use crate::StorageTier;
use crate::segment::{Block, OwnedEntry, Tally};
use crate::shadows::{Shadows, bit};

/// Rows per segment task.
const CHUNK_ROWS: u64 = 32 * 1024;
/// Below this many rows in total, search runs on the calling thread.
const PARALLEL_MIN_ROWS: u64 = 64 * 1024;

/// A search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// The query vector; must have the collection's dimension.
    pub vector: Vec<f32>,
    /// Number of results, 1..=1000.
    pub k: usize,
    /// Return each hit's payload.
    pub with_payload: bool,
    /// Scan every row of every segment (brute force), ignoring the indexes.
    pub exact: bool,
    /// Clusters probed per indexed segment; `None`: the count calibrated for `recall`.
    pub nprobe: Option<usize>,
    /// Recall@10 to aim for when `nprobe` is not given (0 < recall ≤ 1); `None`: 0.95.
    pub recall: Option<f32>,
    /// Only documents this filter matches (evaluated inside the scan, never after it).
    pub filter: Option<Filter>,
}

/// The recall target of a search that names none.
pub const DEFAULT_RECALL: f32 = 0.95;

impl SearchRequest {
    /// A request for the `k` nearest neighbours of `vector`, without payloads.
    pub fn new(vector: Vec<f32>, k: usize) -> Self {
        SearchRequest {
            vector,
            k,
            with_payload: false,
            exact: false,
            nprobe: None,
            recall: None,
            filter: None,
        }
    }

    /// Only documents `filter` matches.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Search exactly (brute force), ignoring indexes.
    pub fn exact(mut self, yes: bool) -> Self {
        self.exact = yes;
        self
    }

    /// Probe this many clusters per indexed segment.
    pub fn nprobe(mut self, n: usize) -> Self {
        self.nprobe = Some(n);
        self
    }

    /// Aim for this recall@10 (the probe count calibrated for it).
    pub fn recall(mut self, r: f32) -> Self {
        self.recall = Some(r);
        self
    }

    /// Also return payloads.
    pub fn with_payload(mut self, yes: bool) -> Self {
        self.with_payload = yes;
        self
    }
}

/// What one search did: how each segment was searched and what it cost (`explain`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SearchStats {
    /// Memtable rows scanned exactly.
    pub memtable_rows: u64,
    /// Each segment searched, oldest first.
    pub segments: Vec<SegmentSearch>,
    /// Clusters probed, over all indexed segments.
    pub clusters_probed: u64,
    /// Rows whose distance was computed or estimated (exact rows and scanned codes).
    pub rows_scanned: u64,
    /// Rows re-ranked with their f32 vectors.
    pub rows_reranked: u64,
    /// Segment rows the filter matched (live rows; memtable rows are filtered as they are
    /// scanned); absent without a filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_matched: Option<u64>,
    /// Ranged reads sent to the cold store (cache misses; retries not counted).
    pub cold_requests: u64,
    /// Bytes those reads fetched.
    pub cold_bytes: u64,
    /// Wall time of the search in milliseconds.
    pub took_ms: f64,
}

/// How one segment was searched.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SegmentSearch {
    /// The segment's id.
    pub id: u64,
    /// Where it lives.
    pub tier: StorageTier,
    /// `"index"` (routed, codes scanned, re-ranked; with a filter, only matching rows, probing
    /// on until enough of them were scanned), `"exact"` (every row; with a filter, every
    /// matching row) or `"matches"` (exact distances over a filter's few matching rows only).
    pub plan: &'static str,
    /// Rows in the segment, tombstones included.
    pub rows: u64,
    /// Clusters of its index (0 without one).
    pub clusters: u32,
    /// Clusters probed.
    pub clusters_probed: u32,
    /// Rows whose distance was computed (exact) or estimated from codes (index).
    pub rows_scanned: u64,
    /// Rows re-ranked with their f32 vectors.
    pub rows_reranked: u64,
    /// Live rows the filter matched; absent without a filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_matched: Option<u64>,
    /// How the filter's matches were found: `"payload index"` (bitmaps of indexed fields) or
    /// `"payload scan"` (every row's payload read: a condition's field is not indexed here);
    /// absent without a filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Index into memtables, newest first.
    Mem(usize),
    /// Index into segments, oldest first.
    Seg(usize),
}

#[derive(Debug, Clone, Copy)]
struct Cand {
    rank: f32,
    src: Source,
    row: u64,
}

/// Orders candidates so that `BinaryHeap` keeps the *worst* on top.
struct Worst(Cand);

impl PartialEq for Worst {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Worst {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.rank.total_cmp(&self.0.rank)
    }
}

/// The best `k` candidates seen, plus every candidate that ties the k-th best (`ties`: not in
/// the heap, all of the heap's worst rank), so that ties at the cut-off can be broken by id.
struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
    ties: Vec<Cand>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            ties: Vec::new(),
        }
    }
    #[inline]
    fn accepts(&self, rank: f32) -> bool {
        self.heap.len() < self.k
            || self
                .heap
                .peek()
                .is_some_and(|w| rank > w.0.rank || (rank == w.0.rank && self.ties.len() < self.k))
    }
    /// Add a candidate that [`TopK::accepts`].
    fn push(&mut self, c: Cand) {
        let Some(worst) = self
            .heap
            .peek()
            .map(|w| w.0.rank)
            .filter(|_| self.heap.len() == self.k)
        else {
            self.heap.push(Worst(c));
            return;
        };
        if c.rank == worst {
            // At most k: enough to fill the results; beyond that (many identical vectors) which
            // tied rows are kept depends on scan order.
            if self.ties.len() < self.k {
                self.ties.push(c);
            }
            return;
        }
        let out = self.heap.pop().map(|w| w.0);
        self.heap.push(Worst(c));
        let new_worst = self.heap.peek().map(|w| w.0.rank);
        match out {
            Some(o) if Some(o.rank) == new_worst => {
                if self.ties.len() < self.k {
                    self.ties.push(o);
                }
            }
            _ => self.ties.clear(),
        }
    }
    fn into_vec(self) -> Vec<Cand> {
        let mut v: Vec<Cand> = self.heap.into_iter().map(|w| w.0).collect();
        v.extend(self.ties);
        v
    }
}

enum Task {
    Mem(usize),
    Seg(usize, Range<u64>),
}

struct Ctx<'a> {
    kernel: Kernel<'a>,
    dim: usize,
    k: usize,
    memtables: Vec<SharedMemtable>,
    any_memtable_rows: bool,
    segments: &'a [Arc<crate::collection::SegmentHandle>],
    /// The search's filter.
    filter: Option<&'a Filter>,
    /// `Options::filter_exact_max_rows`.
    filter_exact_max_rows: u64,
    /// With a filter: each segment's live matching rows and how they were found.
    matched: Vec<Option<(RoaringBitmap, &'static str)>>,
    /// Each segment's verified blocks, read once per query (for a cold segment: one fetch,
    /// shared by all of its chunk tasks).
    blocks: Vec<SegBlocks>,
    shadows: Arc<Shadows>,
}

struct SegBlocks {
    /// `None` for a Cold segment searched through its index: only the re-rank rows are read.
    vectors: Option<Block<f32>>,
    norms: Option<Block<f32>>,
    tombstones: Block<u64>,
}

impl Ctx<'_> {
    /// The candidates of `task`, and the rows it scanned.
    fn run(&self, task: &Task) -> Result<(Vec<Cand>, u64)> {
        let mut top = TopK::new(self.k);
        let mut scanned = 0u64;
        let dim = self.dim;
        match task {
            Task::Mem(mi) => {
                let m = self.memtables[*mi].read();
                let (vecs, norms) = (m.vectors(), m.norms());
                let newer = &self.memtables[..*mi];
                for row in 0..m.row_count() {
                    if !m.is_live(row) {
                        continue;
                    }
                    scanned += 1;
                    let rank = self
                        .kernel
                        .rank(&vecs[row * dim..(row + 1) * dim], norms[row]);
                    if top.accepts(rank) && !Collection::in_memtables(newer, m.row(row as u32).id) {
                        if let Some(f) = self.filter {
                            let r = m.row(row as u32);
                            if !super::filtered::row_matches(f, r.id, r.payload)? {
                                continue;
                            }
                        }
                        top.push(Cand {
                            rank,
                            src: Source::Mem(*mi),
                            row: row as u64,
                        });
                    }
                }
            }
            Task::Seg(si, range) => {
                let seg = self.segments[*si].segment()?;
                let b = &self.blocks[*si];
                let vecs = b
                    .vectors
                    .as_ref()
                    .ok_or_else(|| barq_core::Error::internal("exact scan without vectors"))?;
                let norms: &[f32] = b.norms.as_deref().unwrap_or(&[]);
                let tombs = &b.tombstones;
                let dead = &self.shadows.dead[*si];
                let matched = self.matched[*si].as_ref().map(|(m, _)| m);
                for row in range.clone() {
                    if bit(tombs, row)
                        || bit(dead, row)
                        || matched.is_some_and(|m| !m.contains(row as u32))
                    {
                        continue;
                    }
                    scanned += 1;
                    let r = row as usize;
                    let rank = self.kernel.rank(
                        &vecs[r * dim..(r + 1) * dim],
                        norms.get(r).copied().unwrap_or(0.0),
                    );
                    if top.accepts(rank) {
                        if self.any_memtable_rows {
                            let id = seg.id_of(row)?;
                            if Collection::in_memtables(&self.memtables, &id) {
                                continue;
                            }
                        }
                        top.push(Cand {
                            rank,
                            src: Source::Seg(*si),
                            row,
                        });
                    }
                }
            }
        }
        Ok((top.into_vec(), scanned))
    }
}

impl Ctx<'_> {
    /// The candidates of indexed segment `si` for `req` (routed, scanned by code, re-ranked),
    /// how it was searched, and the candidates' ids and entries where the extents carry them
    /// (format 3).
    fn ann(&self, si: usize, req: &SearchRequest) -> Result<Ann> {
        let matched = self.matched[si].as_ref();
        if let Some((m, how)) = matched
            && m.len() <= self.filter_exact_max_rows
        {
            return self.exact_matches(si, m, how);
        }
        let seg = self.segments[si].segment()?;
        let index = seg
            .index()?
            .ok_or_else(|| barq_core::Error::internal("index search of a segment without one"))?;
        let head = &index.head;
        let quantizer = head.quantizer();
        let pq = barq_index::PreparedQuery::new(head, &quantizer, &req.vector);
        let nprobe = req
            .nprobe
            .unwrap_or_else(|| head.nprobe_for(req.recall.unwrap_or(DEFAULT_RECALL)))
            .clamp(1, head.clusters().max(1));
        let mut want = self.k * head.rerank_factor;
        let clusters: Vec<u32> = match matched {
            None => head
                .route(&pq.vector, nprobe)
                .into_iter()
                .map(|(c, _)| c)
                .collect(),
            Some((m, _)) => {
                // A filtered search re-ranks twice as many rows: its candidates come from
                // more clusters, farther from the query, whose code estimates are coarser.
                want *= 2;
                probe_matches(&index, &pq.vector, nprobe, m, want as u64)
            }
        };
        let extents = seg.cluster_extents(&clusters)?;
        let b = &self.blocks[si];
        let (tombs, dead) = (&b.tombstones, &self.shadows.dead[si]);
        // (estimate, row, vector crc, position in `clusters`)
        let mut est: Vec<(f32, u64, u32, u32)> = Vec::new();
        let mut scanned = 0u64;
        let mut split = Vec::with_capacity(clusters.len());
        for (p, (&c, bytes)) in clusters.iter().zip(&extents).enumerate() {
            let codes = index.split_extent(c, bytes)?;
            let rows = index.cluster_rows(c);
            if let Some((m, _)) = matched {
                // Only the matching rows (live ones: the bitmap has no tombstone or dead row).
                let picked = m
                    .range(rows.start as u32..rows.end as u32)
                    .map(|r| (u64::from(r) - rows.start) as usize);
                let before = est.len();
                pq.scan_rows(
                    head.centroid(c),
                    codes.codes,
                    &codes.factors,
                    picked,
                    |i, key| {
                        est.push((key, rows.start + i as u64, codes.crcs[i], p as u32));
                    },
                );
                scanned += (est.len() - before) as u64;
            } else {
                scanned += rows.end - rows.start;
                pq.scan(head.centroid(c), codes.codes, &codes.factors, |i, key| {
                    let row = rows.start + i as u64;
                    if !(bit(tombs, row) || bit(dead, row)) {
                        est.push((key, row, codes.crcs[i], p as u32));
                    }
                });
            }
            split.push((rows.start, codes.entries));
        }
        // The best `want` estimates are re-ranked; when rows a memtable holds a newer version
        // of leave fewer than k, the next best `want` follow, until k or none is left.
        let by_estimate = |a: &(f32, u64, u32, u32), b: &(f32, u64, u32, u32)| b.0.total_cmp(&a.0);
        let mut rest = Vec::new();
        if est.len() > want {
            est.select_nth_unstable_by(want, by_estimate);
            rest = est.split_off(want);
        }
        let mut batch = est;
        let norms = b.norms.as_deref();
        let mut top = TopK::new(self.k);
        let mut all_located = Vec::new();
        let mut reranked = 0u64;
        loop {
            let picks: Vec<(u64, u32)> = batch.iter().map(|&(_, r, crc, _)| (r, crc)).collect();
            // The picks' ids and entries, from the extents that carry them.
            let located = batch
                .iter()
                .map(|&(_, row, crc, p)| {
                    let (start, entries) = &split[p as usize];
                    let Some(page) = entries else {
                        return Ok(None);
                    };
                    let e = page.entry((row - start) as usize)?;
                    if e.vector_crc != crc {
                        return Err(barq_core::Error::corruption(format!(
                            "segment {}: row {row}'s entry in its cluster extent names another vector",
                            self.segments[si].entry.id
                        )));
                    }
                    let id = String::from_utf8(e.id.to_vec()).map_err(|_| {
                        barq_core::Error::corruption(format!(
                            "segment id of row {row} is not UTF-8"
                        ))
                    })?;
                    Ok(Some((id, OwnedEntry::from(&e))))
                })
                .collect::<Result<Vec<_>>>()?;
            let vectors = seg.vectors_of_rows(&picks)?;
            let mut skipped = 0usize;
            for (((row, _), v), loc) in picks.iter().zip(&vectors).zip(&located) {
                let norm = norms
                    .and_then(|n| n.get(*row as usize).copied())
                    .unwrap_or_else(|| barq_core::norm(v));
                let rank = self.kernel.rank(v, norm);
                if top.accepts(rank) {
                    if self.any_memtable_rows {
                        let id = match loc {
                            Some((id, _)) => std::borrow::Cow::Borrowed(id.as_str()),
                            None => std::borrow::Cow::Owned(seg.id_of(*row)?),
                        };
                        if Collection::in_memtables(&self.memtables, &id) {
                            skipped += 1;
                            continue;
                        }
                    }
                    top.push(Cand {
                        rank,
                        src: Source::Seg(si),
                        row: *row,
                    });
                }
            }
            reranked += picks.len() as u64;
            all_located.extend(picks.into_iter().map(|(r, _)| r).zip(located));
            if skipped == 0 || top.heap.len() >= self.k || rest.is_empty() {
                break;
            }
            if rest.len() > want {
                rest.select_nth_unstable_by(want, by_estimate);
                let tail = rest.split_off(want);
                batch = std::mem::replace(&mut rest, tail);
            } else {
                batch = std::mem::take(&mut rest);
            }
        }
        let top = top.into_vec();
        let mut known = std::collections::HashMap::new();
        for (row, loc) in all_located {
            if let Some(loc) = loc
                && top.iter().any(|c| c.row == row)
            {
                known.insert((si, row), loc);
            }
        }
        let h = &self.segments[si];
        let stats = SegmentSearch {
            id: h.entry.id,
            tier: h.entry.tier,
            plan: "index",
            rows: h.rows(),
            clusters: head.clusters() as u32,
            clusters_probed: clusters.len() as u32,
            rows_scanned: scanned,
            rows_reranked: reranked,
            rows_matched: matched.map(|(m, _)| m.len()),
            filter: matched.map(|(_, how)| *how),
        };
        Ok((top, stats, known))
    }

    /// The candidates of indexed segment `si` by exact distances over its live matching rows
    /// `m` only (plan `"matches"`).
    fn exact_matches(&self, si: usize, m: &RoaringBitmap, how: &'static str) -> Result<Ann> {
        let seg = self.segments[si].segment()?;
        let b = &self.blocks[si];
        let rows: Vec<u64> = m.iter().map(u64::from).collect();
        // A Cold segment searched through its index has no VECTORS block loaded: only the
        // matching rows are read.
        let fetched = match &b.vectors {
            Some(_) => None,
            None => Some(seg.vectors_of_spread_rows(&rows)?),
        };
        let dim = self.dim;
        let vector_of = |i: usize| -> &[f32] {
            match (&fetched, &b.vectors) {
                (Some(f), _) => &f.vectors[i],
                (None, Some(all)) => {
                    let r = rows[i] as usize;
                    &all[r * dim..(r + 1) * dim]
                }
                (None, None) => &[],
            }
        };
        let norms = b.norms.as_deref();
        let mut top = TopK::new(self.k);
        for (i, &row) in rows.iter().enumerate() {
            let v = vector_of(i);
            let norm = norms
                .and_then(|n| n.get(row as usize).copied())
                .unwrap_or_else(|| barq_core::norm(v));
            let rank = self.kernel.rank(v, norm);
            if top.accepts(rank) {
                if self.any_memtable_rows
                    && Collection::in_memtables(&self.memtables, &seg.id_of(row)?)
                {
                    continue;
                }
                top.push(Cand {
                    rank,
                    src: Source::Seg(si),
                    row,
                });
            }
        }
        let top = top.into_vec();
        // A cold segment's hits: their entries from the extents the spread read located.
        let mut known = Known::new();
        if let Some(spread) = &fetched {
            let hit_rows: Vec<u64> = top.iter().map(|c| c.row).collect();
            if let Some(entries) = seg.spread_entries(spread, &hit_rows)? {
                for (row, loc) in hit_rows.into_iter().zip(entries) {
                    known.insert((si, row), loc);
                }
            }
        }
        let h = &self.segments[si];
        let stats = SegmentSearch {
            id: h.entry.id,
            tier: h.entry.tier,
            plan: "matches",
            rows: h.rows(),
            clusters: seg.index()?.map_or(0, |i| i.head.clusters() as u32),
            clusters_probed: 0,
            rows_scanned: rows.len() as u64,
            rows_reranked: 0,
            rows_matched: Some(m.len()),
            filter: Some(how),
        };
        Ok((top, stats, known))
    }
}

/// The clusters a filtered index search probes, nearest centroid first. Clusters without a
/// match are passed over without being read. The search probes every cluster holding matches
/// whose centroid lies within the unfiltered search's reach of the nearest such cluster — the
/// ratio of the `nprobe`-th centroid's distance to the nearest one's, applied to the nearest
/// matching centroid's distance (for dot, the difference of the two) — so that a filter whose matches lie far from the query is searched as
/// thoroughly around them as an unfiltered search is around the query; and at least `nprobe`
/// clusters holding matches, and on until `max(want, C·s^¼)` matching rows were scanned, where C
/// is the rows the `nprobe` nearest clusters hold (what an unfiltered search scans) and s the
/// share of the segment's rows that match. It stops early once it has seen every match.
fn probe_matches(
    index: &crate::segment::SegmentIndex,
    query: &[f32],
    nprobe: usize,
    m: &RoaringBitmap,
    want: u64,
) -> Vec<u32> {
    let head = &index.head;
    let order = head.route(query, head.clusters());
    // Route keys as distances: Euclidean for l2 and cosine (the keys are squared), the
    // negated dot product for dot.
    let dist = |key: f32| match head.metric {
        Metric::Dot => key,
        Metric::L2 | Metric::Cosine => key.max(0.0).sqrt(),
    };
    let rows_of = |c: u32| {
        let r = index.cluster_rows(c);
        r.end - r.start
    };
    let nprobe = nprobe.clamp(1, order.len().max(1));
    let unfiltered: u64 = order.iter().take(nprobe).map(|&(c, _)| rows_of(c)).sum();
    let (nearest, last) = match (order.first(), order.get(nprobe - 1)) {
        (Some(a), Some(b)) => (dist(a.1), dist(b.1)),
        _ => (0.0, 0.0),
    };
    // How far past the nearest centroid an unfiltered search reaches: a ratio of distances for
    // l2 and cosine (so that it scales to matches far from the query), a difference for dot.
    let reach = |from: f32| match head.metric {
        Metric::Dot => from + (last - nearest),
        Metric::L2 | Metric::Cosine if nearest > 0.0 => from * (last / nearest),
        Metric::L2 | Metric::Cosine => from + last,
    };
    let total = m.len();
    let share = total as f64 / (head.rows().max(1) as f64);
    let target = want
        .max((unfiltered as f64 * share.sqrt().sqrt()).ceil() as u64)
        .min(total);
    let mut seen = 0u64;
    let mut out = Vec::new();
    let mut limit = f32::INFINITY;
    for &(c, key) in &order {
        if seen >= total || (out.len() >= nprobe && seen >= target && dist(key) > limit) {
            break;
        }
        let r = index.cluster_rows(c);
        let n = m.range_cardinality(r.start as u32..r.end as u32);
        if n > 0 {
            if out.is_empty() {
                limit = reach(dist(key));
            }
            out.push(c);
            seen += n;
        }
    }
    out
}

/// What [`Ctx::ann`] found in one segment: its candidates, how it searched, and the ids and
/// entries of the candidates that it read from the cluster extents, by (segment, row).
type Ann = (Vec<Cand>, SegmentSearch, Known);

/// Ids and entries of candidates, by (segment, row).
type Known = std::collections::HashMap<(usize, u64), (String, OwnedEntry)>;

/// Segments whose blocks one search fetches from the cold store at once (each of them with up
/// to `PARTS_IN_FLIGHT` ranged reads in flight).
const SEGMENTS_IN_FLIGHT: usize = 4;

/// A thread of a search's I/O, named `barq-search-io`.
fn io_thread<'scope, T: Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, T> {
    let tally = Tally::current();
    std::thread::Builder::new()
        .name("barq-search-io".into())
        .spawn_scoped(s, move || Tally::install(tally, f))
        .expect("spawn a search I/O thread")
}

/// Fetch the id pages that hold the hits of cold segments, each segment's as coalesced ranged
/// reads and the segments in parallel on I/O threads, so that resolving the hits' ids finds them
/// in the cache instead of fetching one page after another.
fn prefetch_hit_pages(ctx: &Ctx<'_>, hits: &[Cand], known: &Known) -> Result<()> {
    let mut rows: std::collections::BTreeMap<usize, Vec<u64>> = Default::default();
    for c in hits {
        if let Source::Seg(si) = c.src
            && !known.contains_key(&(si, c.row))
        {
            rows.entry(si).or_default().push(c.row);
        }
    }
    let mut work = Vec::new();
    for (si, rows) in rows {
        let seg = ctx.segments[si].segment()?;
        if seg.source().is_stable() {
            continue;
        }
        let mut pages = rows
            .iter()
            .map(|&r| seg.page_for_row(r))
            .collect::<Result<Vec<_>>>()?;
        pages.sort_unstable();
        pages.dedup();
        work.push((seg, pages));
    }
    on_io_threads(&work, |(seg, pages)| seg.load_id_pages_of(pages))?;
    Ok(())
}

/// Fetch the payloads of the hits of cold segments in one parallel batch per segment (the
/// segments in parallel on I/O threads), so that resolving the hits finds them in the cache
/// instead of fetching one payload after another.
fn prefetch_payloads(
    ctx: &Ctx<'_>,
    hits: &[Cand],
    located: &[Option<(String, OwnedEntry)>],
) -> Result<()> {
    let mut entries: std::collections::BTreeMap<usize, Vec<OwnedEntry>> = Default::default();
    for (c, loc) in hits.iter().zip(located) {
        if let (Source::Seg(si), Some((_, e))) = (c.src, loc)
            && e.has_payload
        {
            entries.entry(si).or_default().push(e.clone());
        }
    }
    let mut work = Vec::new();
    for (si, entries) in entries {
        let seg = ctx.segments[si].segment()?;
        if !seg.source().is_stable() {
            work.push((seg, entries));
        }
    }
    on_io_threads(&work, |(seg, entries)| seg.load_payloads_of(entries))?;
    Ok(())
}

/// `f` over `items` on at most [`SEGMENTS_IN_FLIGHT`] threads of their own (network waits stay
/// off the rayon pool); results in order, the first error wins.
fn on_io_threads<T, R, F>(items: &[T], f: F) -> Result<Vec<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    if items.len() < 2 {
        return items.iter().map(&f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<R>>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..SEGMENTS_IN_FLIGHT.min(items.len()) {
            io_thread(s, || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { return };
                    let r = f(item);
                    let failed = r.is_err();
                    *results[i]
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
                    if failed {
                        // Stop taking new items; those in flight finish.
                        next.store(items.len(), std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    });
    // Items are taken in order, so one that never ran comes after one that failed, whose
    // error `collect` returns first.
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .unwrap_or_else(|| Err(barq_core::Error::internal("a segment load did not run")))
        })
        .collect()
}

impl Collection {
    /// k-NN search, and what it did; see the module docs.
    pub(crate) fn search(&self, req: &SearchRequest) -> Result<(Vec<SearchHit>, SearchStats)> {
        let started = std::time::Instant::now();
        let tally = Arc::new(Tally::default());
        let (hits, mut stats) =
            Tally::install(Some(Arc::clone(&tally)), || self.search_tallied(req))?;
        stats.cold_requests = tally.requests();
        stats.cold_bytes = tally.bytes();
        stats.took_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok((hits, stats))
    }

    fn search_tallied(&self, req: &SearchRequest) -> Result<(Vec<SearchHit>, SearchStats)> {
        self.check_open()?;
        validate_query_vector(&self.config, &req.vector)?;
        validate_k(req.k)?;
        if let Some(r) = req.recall
            && !(r > 0.0 && r <= 1.0)
        {
            return Err(barq_core::Error::invalid(format!(
                "recall must be in (0, 1], got {r}"
            )));
        }
        if req.nprobe == Some(0) {
            return Err(barq_core::Error::invalid("nprobe must be at least 1"));
        }
        let snap = self.snapshot();
        let memtables = snap.memtables_newest_first();
        let mem_rows: usize = memtables.iter().map(|m| m.read().row_count()).sum();
        // With two segments or more whose dead bitmaps are not cached, the bitmaps are computed
        // beside the block loads, from the id pages whose ranges overlap another segment's
        // (see `shadows`).
        let computing_shadows = snap.segments.len() > 1 && snap.shadows.is_none();
        // A cold segment's blocks come over the network: then the loads (and the shadows,
        // which read id blocks) wait on threads of their own, never on the rayon pool, whose
        // workers stay free for the CPU scans of every collection.
        let io = snap
            .segments
            .iter()
            .any(|h| h.entry.tier == crate::manifest::StorageTier::Cold);
        let both = |a: &(dyn Fn() -> Result<()> + Sync), b: &(dyn Fn() -> Result<()> + Sync)| {
            if io {
                std::thread::scope(|s| {
                    let other = io_thread(s, b);
                    let first = a();
                    let second = other
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    first.and(second)
                })
            } else {
                let (x, y) = rayon::join(a, b);
                x.and(y)
            }
        };
        let load = |h: &Arc<crate::collection::SegmentHandle>| -> Result<SegBlocks> {
            let seg = h.segment()?;
            let metric = self.config.metric;
            // A Cold segment searched through its index reads only its tombstones here; the
            // extents and re-rank rows come later.
            if !req.exact && seg.is_indexed() && !seg.source().is_stable() {
                return Ok(SegBlocks {
                    vectors: None,
                    norms: None,
                    tombstones: seg.tombstones()?,
                });
            }
            let vectors = std::sync::OnceLock::new();
            let rest = std::sync::OnceLock::new();
            // For a cold segment each block is a fetch: the small ones go while the vectors
            // arrive.
            both(
                &|| {
                    let _ = vectors.set(seg.vectors()?);
                    Ok(())
                },
                &|| {
                    // The hits' ids are read from the id pages after the scan. For a cold
                    // segment the whole id block (about 6 % of the vectors' bytes at 128
                    // dimensions) comes now, beside the vectors, at no cost in latency: reading
                    // only the hits' pages after the scan costs a dependent round trip per query.
                    // While the shadows are computed they read the overlapping pages themselves,
                    // and the hits' pages are fetched after the scan in one parallel batch.
                    if !(seg.source().is_stable() || computing_shadows) {
                        seg.load_id_pages()?;
                    }
                    let norms = if metric == Metric::Cosine {
                        Some(seg.norms()?)
                    } else {
                        None
                    };
                    let _ = rest.set((norms, seg.tombstones()?));
                    Ok(())
                },
            )?;
            let (norms, tombstones) = rest.into_inner().expect("set when both succeeded");
            Ok(SegBlocks {
                vectors: Some(vectors.into_inner().expect("set when both succeeded")),
                norms,
                tombstones,
            })
        };
        let (shadows, blocks) = if io {
            if computing_shadows {
                // Open them first, so that both sides do not each read a cold segment's footer.
                on_io_threads(&snap.segments, |h| h.segment().map(|_| ()))?;
            }
            std::thread::scope(|s| {
                let shadows = io_thread(s, || self.shadows_for(&snap));
                let blocks = on_io_threads(&snap.segments, load);
                let shadows = shadows
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (shadows, blocks)
            })
        } else {
            rayon::join(
                || self.shadows_for(&snap),
                || {
                    if snap.segments.len() > 1 {
                        let tally = Tally::current();
                        snap.segments
                            .par_iter()
                            .map(|h| Tally::install(tally.clone(), || load(h)))
                            .collect::<Result<Vec<_>>>()
                    } else {
                        snap.segments.iter().map(load).collect::<Result<Vec<_>>>()
                    }
                },
            )
        };
        let (shadows, blocks) = (shadows?, blocks?);
        let matched = match &req.filter {
            None => vec![None; snap.segments.len()],
            Some(f) => {
                let one = |si: &usize| -> Result<Option<(RoaringBitmap, &'static str)>> {
                    let (mut m, how) =
                        super::filtered::segment_matches(snap.segments[*si].segment()?, f)?;
                    m -= super::filtered::set_bits(&blocks[*si].tombstones);
                    m -= super::filtered::set_bits(&shadows.dead[*si]);
                    // Rows a memtable holds a newer version of are no matches here: counted
                    // as matches, they would stop the probing early.
                    if mem_rows > 0 {
                        let h = &snap.segments[*si];
                        m -= self.mem_shadows.of(h.entry.id, h.segment()?, &memtables)?;
                    }
                    Ok(Some((m, how)))
                };
                let all: Vec<usize> = (0..snap.segments.len()).collect();
                if io {
                    on_io_threads(&all, one)?
                } else {
                    let tally = Tally::current();
                    all.par_iter()
                        .map(|si| Tally::install(tally.clone(), || one(si)))
                        .collect::<Result<_>>()?
                }
            }
        };
        if req.filter.is_some() {
            let ids: Vec<u64> = snap.segments.iter().map(|h| h.entry.id).collect();
            self.mem_shadows.retain(&ids, &memtables);
        }
        let ctx = Ctx {
            filter: req.filter.as_ref(),
            filter_exact_max_rows: self.options.filter_exact_max_rows,
            matched,
            blocks,
            kernel: Kernel::new(self.config.metric, &req.vector),
            dim: self.config.dimension as usize,
            k: req.k,
            any_memtable_rows: mem_rows > 0,
            memtables,
            segments: &snap.segments,
            shadows,
        };
        let mut tasks: Vec<Task> = (0..ctx.memtables.len()).map(Task::Mem).collect();
        let mut total_rows = mem_rows as u64;
        let mut indexed = Vec::new();
        for (si, h) in snap.segments.iter().enumerate() {
            let rows = h.rows();
            h.access.touch(self.env.clock.now_ms());
            if !req.exact && h.segment()?.is_indexed() {
                indexed.push(si);
                continue;
            }
            if ctx.matched[si].as_ref().is_some_and(|(m, _)| m.is_empty()) {
                continue;
            }
            total_rows += rows;
            let mut start = 0;
            while start < rows {
                let end = (start + CHUNK_ROWS).min(rows);
                tasks.push(Task::Seg(si, start..end));
                start = end;
            }
        }
        let tally = Tally::current();
        let parts: Vec<(Vec<Cand>, u64)> = if total_rows < PARALLEL_MIN_ROWS {
            tasks.iter().map(|t| ctx.run(t)).collect::<Result<_>>()?
        } else {
            tasks
                .par_iter()
                .map(|t| Tally::install(tally.clone(), || ctx.run(t)))
                .collect::<Result<_>>()?
        };
        let mut stats = SearchStats::default();
        let mut exact_scanned = vec![0u64; snap.segments.len()];
        for (t, (_, n)) in tasks.iter().zip(&parts) {
            match t {
                Task::Mem(_) => stats.memtable_rows += n,
                Task::Seg(si, _) => exact_scanned[*si] += n,
            }
        }
        // Indexed segments: a Cold one waits on the network, so those run on I/O threads.
        let (cold, hot): (Vec<usize>, Vec<usize>) = indexed
            .into_iter()
            .partition(|&si| snap.segments[si].entry.tier == crate::manifest::StorageTier::Cold);
        let hot_parts: Vec<Ann> = if hot.len() > 1 {
            hot.par_iter()
                .map(|&si| Tally::install(tally.clone(), || ctx.ann(si, req)))
                .collect::<Result<_>>()?
        } else {
            hot.iter()
                .map(|&si| ctx.ann(si, req))
                .collect::<Result<_>>()?
        };
        let cold_parts = on_io_threads(&cold, |&si| ctx.ann(si, req))?;
        let mut searched: Vec<SegmentSearch> = snap
            .segments
            .iter()
            .zip(&exact_scanned)
            .zip(&ctx.matched)
            .filter(|((h, _), _)| req.exact || !h.segment().is_ok_and(|s| s.is_indexed()))
            .map(|((h, &n), matched)| SegmentSearch {
                id: h.entry.id,
                tier: h.entry.tier,
                plan: "exact",
                rows: h.rows(),
                clusters: 0,
                clusters_probed: 0,
                rows_scanned: n,
                rows_reranked: 0,
                rows_matched: matched.as_ref().map(|(m, _)| m.len()),
                filter: matched.as_ref().map(|(_, how)| *how),
            })
            .collect();
        let mut all: Vec<Cand> = Vec::new();
        for (c, _) in parts {
            all.extend(c);
        }
        let mut known = Known::new();
        for (c, st, kn) in hot_parts.into_iter().chain(cold_parts) {
            all.extend(c);
            searched.push(st);
            known.extend(kn);
        }
        searched.sort_by_key(|s| s.id);
        stats.clusters_probed = searched.iter().map(|s| u64::from(s.clusters_probed)).sum();
        stats.rows_scanned =
            stats.memtable_rows + searched.iter().map(|s| s.rows_scanned).sum::<u64>();
        stats.rows_reranked = searched.iter().map(|s| s.rows_reranked).sum();
        stats.rows_matched = req
            .filter
            .as_ref()
            .map(|_| searched.iter().filter_map(|s| s.rows_matched).sum());
        stats.segments = searched;
        all.sort_unstable_by(|a, b| b.rank.total_cmp(&a.rank));
        // Keep everything tied with the k-th rank so that ties are broken by id, not by layout.
        let cut = match all.get(req.k.saturating_sub(1)) {
            Some(kth) => all
                .iter()
                .position(|c| c.rank < kth.rank)
                .unwrap_or(all.len()),
            None => all.len(),
        };
        all.truncate(cut);
        if io {
            prefetch_hit_pages(&ctx, &all, &known)?;
        }
        let located = all
            .iter()
            .map(|c| Self::locate(&ctx, c, &mut known))
            .collect::<Result<Vec<_>>>()?;
        if io && req.with_payload {
            prefetch_payloads(&ctx, &all, &located)?;
        }
        let mut hits = Vec::with_capacity(all.len());
        for (c, loc) in all.iter().zip(located) {
            hits.push((c, self.resolve(&ctx, c, loc, req.with_payload)?));
        }
        hits.sort_by(|(a, ha), (b, hb)| b.rank.total_cmp(&a.rank).then_with(|| ha.id.cmp(&hb.id)));
        hits.truncate(req.k);
        Ok((hits.into_iter().map(|(_, h)| h).collect(), stats))
    }

    /// The id and entry of segment candidate `c` (`None` for a memtable's): from `known` (the
    /// cluster extents), else from its id page.
    fn locate(ctx: &Ctx<'_>, c: &Cand, known: &mut Known) -> Result<Option<(String, OwnedEntry)>> {
        let Source::Seg(si) = c.src else {
            return Ok(None);
        };
        if let Some(loc) = known.remove(&(si, c.row)) {
            return Ok(Some(loc));
        }
        let seg = ctx.segments[si].segment()?;
        let (id, entry) = seg.with_entry(c.row, |e| {
            (String::from_utf8(e.id.to_vec()), OwnedEntry::from(e))
        })?;
        let id = id.map_err(|_| barq_core::Error::corruption("segment id is not UTF-8"))?;
        Ok(Some((id, entry)))
    }

    fn resolve(
        &self,
        ctx: &Ctx<'_>,
        c: &Cand,
        loc: Option<(String, OwnedEntry)>,
        with_payload: bool,
    ) -> Result<SearchHit> {
        let score = ctx.kernel.score(c.rank);
        match c.src {
            Source::Mem(mi) => {
                let m = ctx.memtables[mi].read();
                let r = m.row(c.row as u32);
                let payload = match (r.payload, with_payload) {
                    (Some(p), true) => Some(decode_payload(p)?),
                    _ => None,
                };
                Ok(SearchHit {
                    id: r.id.to_string(),
                    score,
                    payload,
                })
            }
            Source::Seg(si) => {
                let seg = ctx.segments[si].segment()?;
                let (id, entry) =
                    loc.ok_or_else(|| barq_core::Error::internal("a segment hit not located"))?;
                let payload = if with_payload {
                    seg.payload_of(&entry)?
                        .map(|p| decode_payload(&p))
                        .transpose()?
                } else {
                    None
                };
                Ok(SearchHit { id, score, payload })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_best_k() {
        let mut top = TopK::new(3);
        for (i, rank) in [0.5f32, -1.0, 2.0, 0.1, 3.0, 0.2].into_iter().enumerate() {
            if top.accepts(rank) {
                top.push(Cand {
                    rank,
                    src: Source::Mem(0),
                    row: i as u64,
                });
            }
        }
        assert!(!top.accepts(0.4), "worse than the 3rd best");
        assert!(top.accepts(0.6));
        let mut rows: Vec<u64> = top.into_vec().into_iter().map(|c| c.row).collect();
        rows.sort_unstable();
        assert_eq!(rows, [0, 2, 4]);
    }

    #[test]
    fn top_k_keeps_every_tie_at_the_cut_off() {
        let mut top = TopK::new(2);
        let mut add = |rank: f32, row: u64| {
            if top.accepts(rank) {
                top.push(Cand {
                    rank,
                    src: Source::Mem(0),
                    row,
                });
            }
        };
        // 5.0 is best; 1.0 ties for second three times; a later 3.0 pushes them all out.
        for (rank, row) in [(1.0, 0), (5.0, 1), (1.0, 2), (1.0, 3), (0.5, 4)] {
            add(rank, row);
        }
        let rows = |t: &TopK| {
            let mut r: Vec<u64> = t
                .heap
                .iter()
                .map(|w| w.0.row)
                .chain(t.ties.iter().map(|c| c.row))
                .collect();
            r.sort_unstable();
            r
        };
        assert_eq!(rows(&top), [0, 1, 2, 3], "every 1.0 is kept");
        let mut add = |rank: f32, row: u64| {
            if top.accepts(rank) {
                top.push(Cand {
                    rank,
                    src: Source::Mem(0),
                    row,
                });
            }
        };
        add(3.0, 5);
        assert_eq!(
            rows(&top),
            [1, 5],
            "the ties are out once two rows beat them"
        );
    }
}
