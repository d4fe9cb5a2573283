//! Which segment rows are shadowed by a newer version of their id in a newer segment.
//!
//! Segments are ordered by sequence range and their rows are sorted by id. One k-way merge over
//! every segment's id pages (zero-copy, a heap keyed by id and then newest segment first) marks
//! every occurrence of an id but the newest as dead. The "dead" bitmaps are kept in memory per
//! list of segments: when a flush appends a segment they are extended by merge-joining its ids
//! against each older segment; after a compaction they are recomputed lazily.
//! Rows shadowed by a memtable are not in these bitmaps; search checks those per candidate.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use barq_core::Result;
use bytes::Bytes;

use crate::segment::Segment;
use crate::segment::format::Page;

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

/// The ids of a segment, in order.
pub(crate) fn segment_ids(seg: &Segment) -> Result<Vec<Box<[u8]>>> {
    let mut out = Vec::with_capacity(seg.rows() as usize);
    seg.for_each_entry(|_, e| {
        out.push(e.id.into());
        Ok(())
    })?;
    Ok(out)
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

/// Walks a segment's ids in order without copying them.
struct IdCursor<'a> {
    seg: &'a Segment,
    page: usize,
    bytes: Bytes,
    index: usize,
    len: usize,
    row: u64,
}

impl<'a> IdCursor<'a> {
    fn new(seg: &'a Segment) -> Result<IdCursor<'a>> {
        seg.load_id_pages()?;
        let mut c = IdCursor {
            seg,
            page: 0,
            bytes: Bytes::new(),
            index: 0,
            len: 0,
            row: 0,
        };
        c.load_page(0)?;
        Ok(c)
    }

    fn load_page(&mut self, page: usize) -> Result<()> {
        self.page = page;
        self.index = 0;
        self.len = 0;
        if page < self.seg.footer().pages.len() {
            self.bytes = self.seg.page_bytes(page)?;
            self.len = Page::parse(&self.bytes)?.len();
        }
        Ok(())
    }

    /// The current id (a zero-copy slice) and row, or `None` at the end.
    fn current(&self) -> Result<Option<(Bytes, u64)>> {
        if self.index >= self.len {
            return Ok(None);
        }
        let page = Page::parse(&self.bytes)?;
        let id = page.entry(self.index)?.id;
        Ok(Some((self.bytes.slice_ref(id), self.row)))
    }

    fn advance(&mut self) -> Result<()> {
        self.index += 1;
        self.row += 1;
        while self.index >= self.len && self.page < self.seg.footer().pages.len() {
            self.load_page(self.page + 1)?;
        }
        Ok(())
    }
}

impl Shadows {
    /// Compute the dead bitmaps of `segments` from scratch: one k-way merge over every
    /// segment's ids (zero-copy), marking all but the newest occurrence of each id.
    pub(crate) fn compute(segments: &[&Segment]) -> Result<Shadows> {
        let mut bits: Vec<Bitmap> = segments
            .iter()
            .map(|s| vec![0u64; s.rows().div_ceil(64) as usize])
            .collect();
        let mut cursors = segments
            .iter()
            .map(|s| IdCursor::new(s))
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

    /// The bitmaps after appending `newest` to the segments these were computed for.
    pub(crate) fn extend(&self, older: &[&Segment], newest: &Segment) -> Result<Shadows> {
        let ids = segment_ids(newest)?;
        let mut dead = Vec::with_capacity(self.dead.len() + 1);
        for (bits, seg) in self.dead.iter().zip(older) {
            let mut changed: Option<Bitmap> = None;
            match_sorted(seg, &ids, |_, row, _| {
                set_bit(changed.get_or_insert_with(|| bits.as_ref().clone()), row)
            })?;
            dead.push(changed.map_or_else(|| Arc::clone(bits), Arc::new));
        }
        dead.push(Arc::new(vec![0u64; newest.rows().div_ceil(64) as usize]));
        Ok(Shadows { dead })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use barq_core::Metric;

    use super::*;
    use crate::segment::{MmapSource, RowInput, SegmentWriter};

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
}
