//! The memtable: the newest writes of a collection, in memory, until a flush seals them.
//!
//! Vectors live in one contiguous arena (row-major), so scanning a memtable runs the same kernel
//! over the same layout as scanning a segment. Each write appends a row; the id index points at
//! an id's newest row and the older row is marked superseded. Rows are appended in sequence-number
//! order because inserts happen under the WAL lock.

use std::collections::HashMap;
use std::sync::Arc;

/// One row of the memtable.
#[derive(Debug, Clone)]
pub(crate) struct MemRow {
    pub id: Arc<str>,
    pub seq: u64,
    pub tombstone: bool,
    pub payload: Option<Arc<[u8]>>,
}

/// Rough per-row overhead besides the vector, id and payload bytes.
const ROW_OVERHEAD: usize = 96;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Memtable {
    dim: usize,
    vectors: Vec<f32>,
    norms: Vec<f32>,
    rows: Vec<MemRow>,
    superseded: Vec<bool>,
    index: HashMap<Arc<str>, u32>,
    bytes: usize,
    live: usize,
}

impl Memtable {
    pub(crate) fn new(dim: usize) -> Memtable {
        Memtable {
            dim,
            vectors: Vec::new(),
            norms: Vec::new(),
            rows: Vec::new(),
            superseded: Vec::new(),
            index: HashMap::new(),
            bytes: 0,
            live: 0,
        }
    }

    /// Approximate memory held, the measure `memtable_max_bytes` is compared with.
    pub(crate) fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// Rows, superseded ones included.
    pub(crate) fn row_count(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Distinct ids whose newest version here is not a tombstone.
    #[cfg(test)]
    pub(crate) fn live_count(&self) -> usize {
        self.live
    }

    /// Largest sequence number held (0 when empty).
    pub(crate) fn max_seq(&self) -> u64 {
        self.rows.last().map_or(0, |r| r.seq)
    }

    fn push(&mut self, id: Arc<str>, seq: u64, vector: Option<&[f32]>, payload: Option<Arc<[u8]>>) {
        let row = self.rows.len() as u32;
        let tombstone = vector.is_none();
        match vector {
            Some(v) => {
                self.vectors.extend_from_slice(v);
                self.norms.push(barq_core::norm(v));
            }
            None => {
                self.vectors.resize(self.vectors.len() + self.dim, 0.0);
                self.norms.push(0.0);
            }
        }
        self.bytes +=
            self.dim * 4 + id.len() + payload.as_ref().map_or(0, |p| p.len()) + ROW_OVERHEAD;
        if !tombstone {
            self.live += 1;
        }
        match self.index.insert(Arc::clone(&id), row) {
            Some(old) => {
                self.superseded[old as usize] = true;
                if !self.rows[old as usize].tombstone {
                    self.live -= 1;
                }
            }
            None => self.bytes += id.len() + 48,
        }
        self.rows.push(MemRow {
            id,
            seq,
            tombstone,
            payload,
        });
        self.superseded.push(false);
    }

    /// Insert or replace `id`.
    pub(crate) fn upsert(
        &mut self,
        id: Arc<str>,
        seq: u64,
        vector: &[f32],
        payload: Option<Arc<[u8]>>,
    ) {
        self.push(id, seq, Some(vector), payload);
    }

    /// Record a deletion of `id`.
    pub(crate) fn delete(&mut self, id: Arc<str>, seq: u64) {
        self.push(id, seq, None, None);
    }

    /// The newest row of `id`, if any.
    pub(crate) fn get(&self, id: &str) -> Option<(u32, &MemRow)> {
        self.index.get(id).map(|&r| (r, &self.rows[r as usize]))
    }

    /// `true` when this memtable holds any version (or a tombstone) of `id`.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    pub(crate) fn vector(&self, row: u32) -> &[f32] {
        let r = row as usize;
        &self.vectors[r * self.dim..(r + 1) * self.dim]
    }

    pub(crate) fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    pub(crate) fn norms(&self) -> &[f32] {
        &self.norms
    }

    pub(crate) fn row(&self, row: u32) -> &MemRow {
        &self.rows[row as usize]
    }

    /// A row that is the newest version of its id and not a tombstone.
    pub(crate) fn is_live(&self, row: usize) -> bool {
        !self.superseded[row] && !self.rows[row].tombstone
    }

    /// The newest row of every id, sorted by id (what a flush writes).
    pub(crate) fn sorted_latest(&self) -> Vec<u32> {
        let mut rows: Vec<u32> = self.index.values().copied().collect();
        rows.sort_unstable_by(|a, b| self.rows[*a as usize].id.cmp(&self.rows[*b as usize].id));
        rows
    }

    /// Ids of every newest row with its tombstone flag.
    pub(crate) fn latest(&self) -> impl Iterator<Item = &MemRow> {
        self.index.values().map(|&r| &self.rows[r as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_wins_and_counts_track() {
        let mut m = Memtable::new(2);
        m.upsert("a".into(), 1, &[1.0, 0.0], None);
        m.upsert("b".into(), 2, &[0.0, 1.0], Some(Arc::from(&b"{}"[..])));
        m.upsert("a".into(), 3, &[2.0, 0.0], None);
        assert_eq!(m.live_count(), 2);
        let (row, r) = m.get("a").expect("a");
        assert_eq!((r.seq, m.vector(row)), (3, &[2.0, 0.0][..]));
        assert!(!m.is_live(0) && m.is_live(1) && m.is_live(2));
        m.delete("b".into(), 4);
        assert_eq!(m.live_count(), 1);
        assert!(m.get("b").expect("b").1.tombstone);
        m.delete("zzz".into(), 5);
        assert_eq!(m.live_count(), 1);
        let order: Vec<&str> = m.sorted_latest().iter().map(|r| &*m.row(*r).id).collect();
        assert_eq!(order, ["a", "b", "zzz"]);
        assert_eq!(m.max_seq(), 5);
        assert!(m.approx_bytes() > 0);
    }
}
