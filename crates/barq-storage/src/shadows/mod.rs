//! Which segment rows are shadowed by a newer version of their id in a newer segment.
//!
//! Segments are ordered by sequence range and their rows are sorted by id. One k-way merge over
//! the segments' id pages (zero-copy, a heap keyed by id and then newest segment first) marks
//! every occurrence of an id but the newest as dead. The "dead" bitmaps are kept in memory per
//! list of segments: when a flush appends a segment they are extended by merge-joining its ids
//! against each older segment; after a compaction they are recomputed lazily.
//! Rows shadowed by a memtable are not in these bitmaps; search checks those per candidate.
//!
//! Only the id pages that can hold a shared id are read. A page's *span* is the id range the
//! footer gives it: from its fence (its first id) up to the next page's fence, and for the last
//! page up to the segment's last id (one read of that page; unbounded when it is not read). An
//! id that is in two segments lies in a span of each, so the two spans meet: a page whose span
//! meets no span of another segment (for `extend`: no span on the other side, older segments
//! against the newest) holds no id that shadows or is shadowed, and is skipped. The pages that
//! are left are found with one sweep over all spans sorted by start, and for a cold segment
//! each run of adjacent ones is one ranged read. The merge sees every occurrence of every
//! shared id, in the same order, so the bitmaps are those of a merge over every page.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use barq_core::{Error, Result};
use bytes::Bytes;
use parking_lot::Mutex;

use crate::segment::Segment;

/// A bitmap over rows: bit `r % 64` of word `r / 64`.
pub(crate) type Bitmap = Vec<u64>;

pub(crate) fn bit(words: &[u64], row: u64) -> bool {
    words
        .get((row / 64) as usize)
        .is_some_and(|w| w >> (row % 64) & 1 == 1)
}

fn set_bit(words: &mut [u64], row: u64) {
    words[(row / 64) as usize] |= 1 << (row % 64);
}

/// Dead bitmaps aligned with a list of segments (oldest first).
#[derive(Debug, Clone, Default)]
pub(crate) struct Shadows {
    pub dead: Vec<Arc<Bitmap>>,
}

/// Call `f(index_in_sorted, row, tombstone)` for every id of `seg` that is also in `sorted`.
pub(crate) fn match_sorted<S: AsRef<[u8]>>(
    seg: &Segment,
    sorted: &[S],
    mut f: impl FnMut(usize, u64, bool),
) -> Result<()> {
    if sorted.is_empty() {
        return Ok(());
    }
    let mut j = 0usize;
    seg.for_each_entry(|row, e| {
        while j < sorted.len() && sorted[j].as_ref() < e.id {
            j += 1;
        }
        if j < sorted.len() && sorted[j].as_ref() == e.id {
            f(j, row, e.is_tombstone());
        }
        Ok(())
    })
}

/// Walks the ids of some of a segment's pages in order without copying them; rows come from
/// the pages' `first_row`, so skipped pages do not shift them.
struct IdCursor<'a> {
    seg: &'a Segment,
    /// The pages to walk, ascending.
    pages: Vec<usize>,
    /// Position of the current page in `pages`.
    at: usize,
    bytes: Bytes,
    index: usize,
    len: usize,
    row: u64,
}

impl<'a> IdCursor<'a> {
    fn new(seg: &'a Segment, pages: Vec<usize>) -> Result<IdCursor<'a>> {
        let mut c = IdCursor {
            seg,
            pages,
            at: 0,
            bytes: Bytes::new(),
            index: 0,
            len: 0,
            row: 0,
        };
        c.load(0)?;
        c.skip_empty()?;
        Ok(c)
    }

    fn load(&mut self, at: usize) -> Result<()> {
        self.at = at;
        self.index = 0;
        self.len = 0;
        if let Some(&page) = self.pages.get(at) {
            self.bytes = self.seg.page_bytes(page)?;
            self.len = self.seg.parse_page(&self.bytes)?.len();
            self.row = self.seg.footer().pages[page].first_row;
        }
        Ok(())
    }

    fn skip_empty(&mut self) -> Result<()> {
        while self.index >= self.len && self.at < self.pages.len() {
            self.load(self.at + 1)?;
        }
        Ok(())
    }

    /// The current id (a zero-copy slice) and row, or `None` at the end.
    fn current(&self) -> Result<Option<(Bytes, u64)>> {
        if self.index >= self.len {
            return Ok(None);
        }
        if self.row >= self.seg.rows() {
            return Err(Error::corruption(format!(
                "segment {}: id page {} holds row {}, past its {} rows",
                self.seg.source().describe(),
                self.pages[self.at],
                self.row,
                self.seg.rows()
            )));
        }
        let page = self.seg.parse_page(&self.bytes)?;
        let e = page.entry(self.index)?;
        // Version 2 stores each entry's row; in version 1 rows follow the entries.
        let row = e.row.map_or(self.row, u64::from);
        Ok(Some((self.bytes.slice_ref(e.id), row)))
    }

    fn advance(&mut self) -> Result<()> {
        self.index += 1;
        self.row += 1;
        self.skip_empty()
    }
}

/// The upper end of a page's span. The derived order is that of the sets of ids each admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Upper<'a> {
    /// Ids below `.0`, or (`.1 == true`) up to and including it.
    Id(&'a [u8], bool),
    /// No bound known.
    Unbounded,
}

impl Upper<'_> {
    fn admits(self, id: &[u8]) -> bool {
        match self {
            Upper::Id(end, inclusive) => id < end || (inclusive && id == end),
            Upper::Unbounded => true,
        }
    }
}

/// One page's span of ids: `start..end`, with the group of its segment.
struct Span<'a> {
    start: &'a [u8],
    end: Upper<'a>,
    group: usize,
    seg: usize,
    page: usize,
}

/// Which pages of `segs` have a span that meets a span of a segment in another group
/// (`groups[i]` is the group of `segs[i]`; `last[i]` the last id of `segs[i]` if known).
/// Spans are non-empty (fences strictly increase), so two meet iff one holds the other's start:
/// a sweep in order of start finds, for each span, (a) whether an earlier span of another group
/// reaches its start, and (b) whether the first later start of another group lies inside it.
fn needed_pages(segs: &[&Segment], groups: &[usize], last: &[Option<Bytes>]) -> Vec<Vec<bool>> {
    let mut spans = Vec::new();
    for (s, seg) in segs.iter().enumerate() {
        let pages = &seg.footer().pages;
        for (p, page) in pages.iter().enumerate() {
            let end = match (pages.get(p + 1), &last[s]) {
                (Some(next), _) => Upper::Id(next.fence.as_slice(), false),
                (None, Some(id)) => Upper::Id(&id[..], true),
                (None, None) => Upper::Unbounded,
            };
            spans.push(Span {
                start: page.fence.as_slice(),
                end,
                group: groups[s],
                seg: s,
                page: p,
            });
        }
    }
    spans.sort_unstable_by(|a, b| a.start.cmp(b.start));
    let mut needed: Vec<Vec<bool>> = segs
        .iter()
        .map(|s| vec![false; s.footer().pages.len()])
        .collect();
    // (a): the highest end so far and its group, and the highest end of the other groups.
    let mut best: Option<(Upper<'_>, usize)> = None;
    let mut second: Option<Upper<'_>> = None;
    for sp in &spans {
        let reach = match best {
            Some((end, g)) if g != sp.group => Some(end),
            _ => second,
        };
        if reach.is_some_and(|end| end.admits(sp.start)) {
            needed[sp.seg][sp.page] = true;
        }
        best = match best {
            None => Some((sp.end, sp.group)),
            Some((end, g)) if g == sp.group => Some((end.max(sp.end), g)),
            Some((end, _)) if sp.end > end => {
                second = Some(end);
                Some((sp.end, sp.group))
            }
            Some(b) => {
                second = second.max(Some(sp.end));
                Some(b)
            }
        };
    }
    // (b): `next_other[k]` is the first index at or after `k` of another group than span k's.
    // Spans that start together are caught here whatever their order in the sort.
    let n = spans.len();
    let mut next_other = vec![n; n];
    for k in (0..n.saturating_sub(1)).rev() {
        next_other[k] = if spans[k + 1].group != spans[k].group {
            k + 1
        } else {
            next_other[k + 1]
        };
    }
    for sp in &spans {
        let k = spans.partition_point(|o| o.start < sp.start);
        let first_other = match spans.get(k) {
            Some(o) if o.group != sp.group => k,
            Some(_) => next_other[k],
            None => n,
        };
        if spans
            .get(first_other)
            .is_some_and(|o| sp.end.admits(o.start))
        {
            needed[sp.seg][sp.page] = true;
        }
    }
    needed
}

/// The last id of `seg`: one read of its last page (`None` without pages or entries).
fn last_id(seg: &Segment) -> Result<Option<Bytes>> {
    let Some(p) = seg.footer().pages.len().checked_sub(1) else {
        return Ok(None);
    };
    let bytes = seg.page_bytes(p)?;
    let page = seg.parse_page(&bytes)?;
    let Some(i) = page.len().checked_sub(1) else {
        return Ok(None);
    };
    let id = page.entry(i)?.id;
    Ok(Some(bytes.slice_ref(id)))
}

/// Cold reads in flight at once while the pages to read are found and fetched.
const FETCHES_IN_FLIGHT: usize = 4;

/// `f(i)` for each `i` in `0..n`, results in order; the first error wins. With `remote` (a call
/// may wait on the cold store) the calls run on up to [`FETCHES_IN_FLIGHT`] threads of their
/// own, else in this thread.
fn each<R: Send>(n: usize, remote: bool, f: impl Fn(usize) -> Result<R> + Sync) -> Result<Vec<R>> {
    if !remote || n < 2 {
        return (0..n).map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let out: Vec<Mutex<Option<Result<R>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..FETCHES_IN_FLIGHT.min(n) {
            std::thread::Builder::new()
                .name("barq-shadows-io".into())
                .spawn_scoped(s, || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return;
                        }
                        let r = f(i);
                        let failed = r.is_err();
                        *out[i].lock() = Some(r);
                        if failed {
                            // Stop taking new items; those in flight finish.
                            next.store(n, Ordering::Relaxed);
                            return;
                        }
                    }
                })
                .expect("spawn a shadows I/O thread");
        }
    });
    // Items are taken in order, so one that never ran comes after one that failed.
    out.into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(|| Err(Error::internal("a shadows read did not run")))
        })
        .collect()
}

/// The pages of each of `segs` that a merge must read (ascending): those whose span meets a
/// span of a segment in another group (`groups[i]` is the group of `segs[i]`). They are fetched
/// ahead for cold segments. A footer whose fences do not increase, or a last id below its
/// page's fence, is not trusted: then every page is read, as a merge over every page would.
fn pages_to_read(segs: &[&Segment], groups: &[usize]) -> Result<Vec<Vec<usize>>> {
    let remote = segs.iter().any(|s| !s.source().is_stable());
    let all = || -> Vec<Vec<usize>> {
        segs.iter()
            .map(|s| (0..s.footer().pages.len()).collect())
            .collect()
    };
    let ordered = segs
        .iter()
        .all(|s| s.footer().pages.windows(2).all(|w| w[0].fence < w[1].fence));
    let mut last: Vec<Option<Bytes>> = vec![None; segs.len()];
    let pages: Vec<Vec<usize>> = if ordered {
        // From the footers alone (every last page unbounded), then with the last id of each
        // segment whose last page that leaves needed: its spans then end there.
        let rough = needed_pages(segs, groups, &last);
        last = each(segs.len(), remote, |i| {
            if rough[i].last() == Some(&true) {
                last_id(segs[i])
            } else {
                Ok(None)
            }
        })?;
        let sane = segs
            .iter()
            .zip(&last)
            .all(|(s, id)| match (s.footer().pages.last(), id) {
                (Some(p), Some(id)) => &id[..] >= p.fence.as_slice(),
                _ => true,
            });
        if sane {
            needed_pages(segs, groups, &last)
                .into_iter()
                .map(|n| (0..n.len()).filter(|&p| n[p]).collect())
                .collect()
        } else {
            all()
        }
    } else {
        all()
    };
    // A last page read above is in the source's cache already.
    each(segs.len(), remote, |i| {
        let n = segs[i].footer().pages.len();
        let ahead: Vec<usize> = pages[i]
            .iter()
            .copied()
            .filter(|&p| last[i].is_none() || p + 1 != n)
            .collect();
        segs[i].load_id_pages_of(&ahead)
    })?;
    Ok(pages)
}

impl Shadows {
    /// Compute the dead bitmaps of `segments` from scratch: one k-way merge over the segments'
    /// ids (zero-copy) in the pages whose span meets another segment's, marking all but the
    /// newest occurrence of each id.
    pub(crate) fn compute(segments: &[&Segment]) -> Result<Shadows> {
        let groups: Vec<usize> = (0..segments.len()).collect();
        let pages = pages_to_read(segments, &groups)?;
        let mut bits: Vec<Bitmap> = segments
            .iter()
            .map(|s| vec![0u64; s.rows().div_ceil(64) as usize])
            .collect();
        let mut cursors = segments
            .iter()
            .zip(pages)
            .map(|(s, p)| IdCursor::new(s, p))
            .collect::<Result<Vec<_>>>()?;
        // Min-heap on (id, newest segment first).
        let mut heap = BinaryHeap::new();
        for (i, c) in cursors.iter().enumerate() {
            if let Some((id, row)) = c.current()? {
                heap.push(Reverse((id, Reverse(i), row)));
            }
        }
        let mut last: Option<Bytes> = None;
        while let Some(Reverse((id, Reverse(i), row))) = heap.pop() {
            if last.as_ref() == Some(&id) {
                set_bit(&mut bits[i], row);
            } else {
                last = Some(id);
            }
            let c = &mut cursors[i];
            c.advance()?;
            if let Some((id, row)) = c.current()? {
                heap.push(Reverse((id, Reverse(i), row)));
            }
        }
        Ok(Shadows {
            dead: bits.into_iter().map(Arc::new).collect(),
        })
    }

    /// The bitmaps after appending `newest` to the segments these were computed for: the ids
    /// of `newest` merge-joined against each older segment, in the pages whose span meets a
    /// span on the other side (older segments against `newest`).
    pub(crate) fn extend(&self, older: &[&Segment], newest: &Segment) -> Result<Shadows> {
        let mut segs: Vec<&Segment> = older.to_vec();
        segs.push(newest);
        let groups: Vec<usize> = (0..segs.len())
            .map(|i| usize::from(i == older.len()))
            .collect();
        let mut pages = pages_to_read(&segs, &groups)?;
        let mut ids = Vec::new();
        let mut c = IdCursor::new(newest, pages.pop().unwrap_or_default())?;
        while let Some((id, _)) = c.current()? {
            ids.push(id);
            c.advance()?;
        }
        let mut dead = Vec::with_capacity(self.dead.len() + 1);
        for ((bits, seg), pages) in self.dead.iter().zip(older).zip(pages) {
            let mut changed: Option<Bitmap> = None;
            let mut c = IdCursor::new(seg, pages)?;
            let mut j = 0usize;
            while j < ids.len() {
                let Some((id, row)) = c.current()? else {
                    break;
                };
                while j < ids.len() && ids[j] < id {
                    j += 1;
                }
                if ids.get(j) == Some(&id) {
                    set_bit(changed.get_or_insert_with(|| bits.as_ref().clone()), row);
                }
                c.advance()?;
            }
            dead.push(changed.map_or_else(|| Arc::clone(bits), Arc::new));
        }
        dead.push(Arc::new(vec![0u64; newest.rows().div_ceil(64) as usize]));
        Ok(Shadows { dead })
    }
}

#[cfg(test)]
mod tests;
