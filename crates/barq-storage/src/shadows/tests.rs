use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use barq_core::{ErrorKind, Metric};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::segment::format::BlockKind;
use crate::segment::{MmapSource, RangeSource, RowInput, SegmentWriter};

fn segment(dir: &std::path::Path, name: &str, ids: &[&str]) -> Segment {
    let path = dir.join(name);
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let mut w = SegmentWriter::create(&path, 1, Metric::L2).expect("create");
    for (i, id) in sorted.iter().enumerate() {
        w.push(RowInput {
            id: id.as_bytes(),
            seq: i as u64 + 1,
            vector: Some(&[0.0]),
            payload: None,
            norm: None,
        })
        .expect("push");
    }
    w.finish(0).expect("finish");
    Segment::open(Arc::new(MmapSource::open(&path).expect("map"))).expect("open")
}

fn dead_ids(seg: &Segment, bits: &Bitmap) -> Vec<String> {
    (0..seg.rows())
        .filter(|r| bit(bits, *r))
        .map(|r| seg.id_of(r).expect("id"))
        .collect()
}

#[test]
fn every_occurrence_but_the_newest_is_dead() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s0 = segment(dir.path(), "0", &["a", "b", "c", "d"]);
    let s1 = segment(dir.path(), "1", &["b", "d", "e"]);
    let s2 = segment(dir.path(), "2", &["d", "f", "a"]);
    let all = Shadows::compute(&[&s0, &s1, &s2]).expect("compute");
    assert_eq!(dead_ids(&s0, &all.dead[0]), ["a", "b", "d"]);
    assert_eq!(dead_ids(&s1, &all.dead[1]), ["d"]);
    assert!(
        dead_ids(&s2, &all.dead[2]).is_empty(),
        "the newest segment is never shadowed by segments"
    );
    // Extending the bitmaps of [s0, s1] with s2 gives the same answer as computing from scratch.
    let two = Shadows::compute(&[&s0, &s1]).expect("compute");
    let extended = two.extend(&[&s0, &s1], &s2).expect("extend");
    for i in 0..3 {
        assert_eq!(
            extended.dead[i].as_slice(),
            all.dead[i].as_slice(),
            "segment {i}"
        );
    }
}

#[test]
fn match_sorted_reports_matches_with_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = segment(dir.path(), "0", &["a", "c", "e", "g"]);
    let mut hits = Vec::new();
    match_sorted(&s, &["b", "c", "g", "h"], |j, row, tomb| {
        hits.push((j, row, tomb))
    })
    .expect("match");
    assert_eq!(hits, [(1, 1, false), (2, 3, false)]);
}

/// A segment file in memory that records the ranges read from it. When not `stable` it
/// stands for a cold segment without a cache: every read goes to the "store".
#[derive(Debug)]
struct Recording {
    bytes: Bytes,
    stable: bool,
    reads: Mutex<Vec<Range<u64>>>,
}

impl RangeSource for Recording {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.reads.lock().push(range.clone());
        Ok(self.bytes.slice(range.start as usize..range.end as usize))
    }

    fn is_stable(&self) -> bool {
        self.stable
    }

    fn describe(&self) -> String {
        "a recording source".into()
    }
}

/// Rows of a test segment: ascending distinct keys, `true` for a tombstone.
type Rows = Vec<(u32, bool)>;

/// Long ids (fixed-width keys sort like numbers), about 270 to a page.
fn key_id(k: u32) -> String {
    format!("{k:07}-{}", "x".repeat(90))
}

fn key_of(fence: &[u8]) -> u32 {
    std::str::from_utf8(&fence[..7])
        .expect("utf8")
        .parse()
        .expect("key")
}

/// A segment of `rows`, opened on a [`Recording`] whose open reads are forgotten.
fn keyed(dir: &Path, name: &str, rows: &[(u32, bool)], stable: bool) -> (Segment, Arc<Recording>) {
    let path = dir.join(name);
    let one = [1.0f32];
    let mut w = SegmentWriter::create(&path, 1, Metric::L2).expect("create");
    for (i, &(k, tombstone)) in rows.iter().enumerate() {
        w.push(RowInput {
            id: key_id(k).as_bytes(),
            seq: i as u64 + 1,
            vector: (!tombstone).then_some(&one[..]),
            payload: None,
            norm: None,
        })
        .expect("push");
    }
    w.finish(0).expect("finish");
    recorded(std::fs::read(&path).expect("read"), stable)
}

fn recorded(bytes: Vec<u8>, stable: bool) -> (Segment, Arc<Recording>) {
    let src = Arc::new(Recording {
        bytes: Bytes::from(bytes),
        stable,
        reads: Mutex::new(Vec::new()),
    });
    let source: Arc<dyn RangeSource> = src.clone();
    let seg = Segment::open(source).expect("open");
    src.reads.lock().clear();
    (seg, src)
}

fn open_all(dir: &Path, name: &str, rows: &[Rows], stable: bool) -> Vec<(Segment, Arc<Recording>)> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| keyed(dir, &format!("{name}-{i}"), r, stable))
        .collect()
}

/// The id pages of `seg` that reads of `src` touched since they were last cleared.
fn pages_read(seg: &Segment, src: &Recording) -> BTreeSet<usize> {
    let block = seg.footer().block(BlockKind::IdPages).expect("id block");
    let reads = src.reads.lock();
    (0..seg.footer().pages.len())
        .filter(|&i| {
            let p = &seg.footer().pages[i];
            let start = block.offset + p.offset;
            let end = start + u64::from(p.len);
            reads.iter().any(|r| r.start < end && start < r.end)
        })
        .collect()
}

/// The dead bitmaps by definition: a row is dead when a newer segment holds its key.
fn reference(rows: &[Rows]) -> Vec<Bitmap> {
    let mut newest = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        for &(k, _) in r {
            newest.insert(k, i);
        }
    }
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let mut bits = vec![0u64; r.len().div_ceil(64)];
            for (row, (k, _)) in r.iter().enumerate() {
                if newest[k] != i {
                    set_bit(&mut bits, row as u64);
                }
            }
            bits
        })
        .collect()
}

fn assert_same(got: &Shadows, want: &[Bitmap], what: &str) {
    assert_eq!(got.dead.len(), want.len(), "{what}");
    for (i, (g, w)) in got.dead.iter().zip(want).enumerate() {
        assert_eq!(g.as_slice(), w.as_slice(), "{what}: segment {i}");
    }
}

/// Compute, and a chain of extends from the oldest segment alone, against the model;
/// returns the id pages that the compute read of each segment.
fn check(opened: &[(Segment, Arc<Recording>)], rows: &[Rows], what: &str) -> Vec<BTreeSet<usize>> {
    let segs: Vec<&Segment> = opened.iter().map(|(s, _)| s).collect();
    for (_, src) in opened {
        src.reads.lock().clear();
    }
    let all = Shadows::compute(&segs).expect("compute");
    let read: Vec<BTreeSet<usize>> = opened.iter().map(|(s, src)| pages_read(s, src)).collect();
    assert_same(&all, &reference(rows), &format!("{what}: compute"));
    let mut chain = Shadows::compute(&segs[..1]).expect("compute one");
    for k in 1..segs.len() {
        chain = chain.extend(&segs[..k], segs[k]).expect("extend");
        assert_same(
            &chain,
            &reference(&rows[..=k]),
            &format!("{what}: extended with {k}"),
        );
    }
    read
}

/// Which pages meet a page of another group, pair by pair (what the sweep must find).
fn needed_by_pairs(segs: &[&Segment], groups: &[usize], last: &[Option<Bytes>]) -> Vec<Vec<bool>> {
    let spans: Vec<Vec<(&[u8], Upper<'_>)>> = segs
        .iter()
        .enumerate()
        .map(|(s, seg)| {
            let pages = &seg.footer().pages;
            (0..pages.len())
                .map(|p| {
                    let end = match (pages.get(p + 1), &last[s]) {
                        (Some(next), _) => Upper::Id(next.fence.as_slice(), false),
                        (None, Some(id)) => Upper::Id(&id[..], true),
                        (None, None) => Upper::Unbounded,
                    };
                    (pages[p].fence.as_slice(), end)
                })
                .collect()
        })
        .collect();
    spans
        .iter()
        .enumerate()
        .map(|(s, mine)| {
            mine.iter()
                .map(|&(a, a_end)| {
                    spans.iter().enumerate().any(|(t, theirs)| {
                        groups[t] != groups[s]
                            && theirs.iter().any(|&(b, b_end)| {
                                let lo = a.max(b);
                                a_end.admits(lo) && b_end.admits(lo)
                            })
                    })
                })
                .collect()
        })
        .collect()
}

/// Random contents for a segment newer than `earlier`: dense runs, scattered keys, copies
/// of an earlier segment, a page or less, keys past all earlier ones, narrow windows, or
/// nothing; one row in ten is a tombstone.
fn random_rows(rng: &mut StdRng, earlier: &[Rows]) -> Rows {
    let top = earlier
        .iter()
        .filter_map(|r| r.last())
        .map(|&(k, _)| k)
        .max()
        .unwrap_or(0);
    let mut keys: Vec<u32> = match rng.random_range(0..7u32) {
        0 => Vec::new(),
        1 => {
            let lo = rng.random_range(0..20_000u32);
            let len = rng.random_range(1..1_500u32);
            (lo..lo + len).filter(|_| rng.random_bool(0.7)).collect()
        }
        2 => {
            let n = rng.random_range(1..300u32);
            (0..n).map(|_| rng.random_range(0..25_000u32)).collect()
        }
        3 if !earlier.is_empty() => {
            let i = rng.random_range(0..earlier.len());
            earlier[i].iter().map(|&(k, _)| k).collect()
        }
        4 => {
            let n = rng.random_range(1..40u32);
            (0..n).map(|_| rng.random_range(0..25_000u32)).collect()
        }
        5 => {
            let lo = top + rng.random_range(1..100u32);
            let len = rng.random_range(1..1_200u32);
            (lo..lo + len).collect()
        }
        _ => {
            let lo = rng.random_range(0..20_000u32);
            (lo..lo + 200).filter(|_| rng.random_bool(0.3)).collect()
        }
    };
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|k| (k, rng.random_bool(0.1)))
        .collect()
}

#[test]
fn pruned_merges_match_a_model_of_newest_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    for seed in 0..24u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.random_range(2..7usize);
        let mut rows: Vec<Rows> = Vec::new();
        for _ in 0..n {
            let r = random_rows(&mut rng, &rows);
            rows.push(r);
        }
        let stable = rng.random_bool(0.5);
        let opened = open_all(dir.path(), &format!("random-{seed}"), &rows, stable);
        check(&opened, &rows, &format!("seed {seed}"));
        // The sweep finds exactly the pages that meet a page of another segment (another
        // side, for extend), with the last ids known and without them.
        let segs: Vec<&Segment> = opened.iter().map(|(s, _)| s).collect();
        let known: Vec<Option<Bytes>> = segs.iter().map(|s| last_id(s).expect("last id")).collect();
        let unknown: Vec<Option<Bytes>> = vec![None; n];
        let each_alone: Vec<usize> = (0..n).collect();
        let newest_apart: Vec<usize> = (0..n).map(|i| usize::from(i + 1 == n)).collect();
        for groups in [&each_alone, &newest_apart] {
            for last in [&known, &unknown] {
                assert_eq!(
                    needed_pages(&segs, groups, last),
                    needed_by_pairs(&segs, groups, last),
                    "seed {seed}, groups {groups:?}"
                );
            }
        }
    }
}

#[test]
fn edge_cases_match_the_model_and_read_only_overlapping_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wide: Rows = (0..3_000).map(|k| (k * 10, k % 7 == 0)).collect();
    let (w, _) = keyed(dir.path(), "probe", &wide, true);
    let pages = w.footer().pages.len();
    assert!(pages > 5, "{pages} pages");
    // Keys strictly inside the span of page 2 of `wide`, some of them in `wide` too.
    let (lo, hi) = (
        key_of(&w.footer().pages[2].fence),
        key_of(&w.footer().pages[3].fence),
    );
    let inside: Rows = (lo + 1..hi)
        .filter(|k| k % 3 == 0)
        .map(|k| (k, k % 4 == 0))
        .collect();
    assert!(inside.iter().any(|(k, _)| k % 10 == 0));
    let one_page = |keys: &[u32]| -> Rows { keys.iter().map(|&k| (k, k == 20)).collect() };
    let cases: Vec<(&str, Vec<Rows>)> = vec![
        (
            "empty segments",
            vec![vec![], wide.clone(), vec![], inside.clone(), vec![]],
        ),
        (
            "one-page segments",
            vec![one_page(&[5, 20]), one_page(&[20]), one_page(&[1, 5, 30])],
        ),
        (
            "identical fences",
            vec![wide.clone(), wide.clone(), wide.clone()],
        ),
        (
            "inside one page span",
            vec![inside.clone(), wide.clone(), inside.clone()],
        ),
        ("only empty", vec![vec![], vec![]]),
    ];
    for stable in [true, false] {
        for (what, rows) in &cases {
            let name = format!("{what}-{stable}");
            let opened = open_all(dir.path(), &name, rows, stable);
            let read = check(&opened, rows, &name);
            if *what == "inside one page span" {
                // `wide` is read at the page that holds `inside`, and at its last page
                // (for its last id).
                assert_eq!(read[1], BTreeSet::from([2, pages - 1]), "{name}");
            }
            if *what == "identical fences" {
                assert!(read.iter().all(|r| r.len() == pages), "{name}: {read:?}");
            }
        }
    }
}

#[test]
fn disjoint_segments_read_one_id_page_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows: Vec<Rows> = (0..4u32)
        .map(|s| (0..1_500).map(|k| (s * 10_000 + k, k % 9 == 0)).collect())
        .collect();
    for stable in [true, false] {
        let opened = open_all(dir.path(), &format!("disjoint-{stable}"), &rows, stable);
        let read = check(&opened, &rows, "disjoint");
        for ((seg, _), pages) in opened.iter().zip(&read) {
            let last = seg.footer().pages.len() - 1;
            assert!(last >= 4, "{} pages", last + 1);
            assert_eq!(
                *pages,
                BTreeSet::from([last]),
                "only the last page, for its last id"
            );
        }
        // Extending the bitmaps of the first three with the fourth reads as little.
        let segs: Vec<&Segment> = opened.iter().map(|(s, _)| s).collect();
        let three = Shadows::compute(&segs[..3]).expect("compute");
        for (_, src) in &opened {
            src.reads.lock().clear();
        }
        let four = three.extend(&segs[..3], segs[3]).expect("extend");
        assert_same(&four, &reference(&rows), "disjoint: extend");
        for (seg, src) in &opened {
            let last = seg.footer().pages.len() - 1;
            assert_eq!(pages_read(seg, src), BTreeSet::from([last]));
        }
    }
}

#[test]
fn partly_overlapping_segments_read_the_overlap_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows: Vec<Rows> = vec![
        (0..1_500).map(|k| (k, false)).collect(),
        (1_000..2_500).map(|k| (k, k % 5 == 0)).collect(),
    ];
    for stable in [true, false] {
        let opened = open_all(dir.path(), &format!("overlap-{stable}"), &rows, stable);
        let read = check(&opened, &rows, "overlap");
        // The older pages whose span reaches key 1000, the newer ones that start at or
        // below key 1499, and each last page.
        let old = &opened[0].0.footer().pages;
        let want_old: BTreeSet<usize> = (0..old.len())
            .filter(|&p| {
                old.get(p + 1)
                    .is_none_or(|next| key_of(&next.fence) > 1_000)
            })
            .collect();
        let new = &opened[1].0.footer().pages;
        let want_new: BTreeSet<usize> = (0..new.len())
            .filter(|&p| p + 1 == new.len() || key_of(&new[p].fence) <= 1_499)
            .collect();
        assert!(want_old.len() < old.len() && want_new.len() < new.len());
        assert_eq!(read, [want_old, want_new]);
    }
}

#[test]
fn a_corrupt_page_that_is_needed_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows: Rows = (0..1_000).map(|k| (k, false)).collect();
    for stable in [true, false] {
        let (clean, src) = keyed(dir.path(), &format!("clean-{stable}"), &rows, stable);
        assert!(clean.footer().pages.len() > 2);
        let block = clean.footer().block(BlockKind::IdPages).expect("id block");
        let mut bytes = src.bytes.to_vec();
        bytes[(block.offset + clean.footer().pages[1].offset) as usize + 100] ^= 0xFF;
        let (bad, _) = recorded(bytes, stable);
        let err = Shadows::compute(&[&bad, &clean]).expect_err("corrupt page");
        assert_eq!(err.kind(), ErrorKind::DataCorruption, "{err}");
        let err = Shadows::compute(&[&clean])
            .expect("compute one")
            .extend(&[&clean], &bad)
            .expect_err("corrupt page");
        assert_eq!(err.kind(), ErrorKind::DataCorruption, "{err}");
    }
}
