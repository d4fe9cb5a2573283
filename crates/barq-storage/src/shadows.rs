//! Which segment rows are shadowed by a newer version of their id in a newer segment.
//!
//! Segments are ordered by sequence range and their rows are sorted by id, so the rows of segment
//! `i` shadowed by segments `i+1..` are found by one merge-join of its ids against the sorted
//! union of the newer segments' ids. The result ("dead" bitmaps) is kept in memory per list of
//! segments: extended when a flush appends a segment, recomputed lazily after a compaction.
//! Rows shadowed by a memtable are not in these bitmaps; search checks those per candidate.

use std::sync::Arc;

use barq_core::Result;

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

fn merge_sorted(a: Vec<Box<[u8]>>, b: Vec<Box<[u8]>>) -> Vec<Box<[u8]>> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let ord = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        match ord {
            std::cmp::Ordering::Less => out.extend(a.next()),
            std::cmp::Ordering::Greater => out.extend(b.next()),
            std::cmp::Ordering::Equal => {
                b.next();
                out.extend(a.next());
            }
        }
    }
    out
}

impl Shadows {
    /// Compute the dead bitmaps of `segments` from scratch.
    pub(crate) fn compute(segments: &[&Segment]) -> Result<Shadows> {
        let mut dead: Vec<Arc<Bitmap>> = (0..segments.len()).map(|_| Arc::default()).collect();
        let mut newer: Vec<Box<[u8]>> = Vec::new();
        for i in (0..segments.len()).rev() {
            let seg = segments[i];
            let mut bits = vec![0u64; seg.rows().div_ceil(64) as usize];
            match_sorted(seg, &newer, |_, row, _| set_bit(&mut bits, row))?;
            dead[i] = Arc::new(bits);
            if i > 0 {
                newer = merge_sorted(newer, segment_ids(seg)?);
            }
        }
        Ok(Shadows { dead })
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
