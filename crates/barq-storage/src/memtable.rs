//! The memtable: the newest writes of a collection, in memory, until a flush seals them.
//!
//! Everything lives in a few flat arrays: vectors row-major in one arena (so scanning a memtable
//! runs the same kernel over the same layout as scanning a segment), ids in one string arena,
//! payloads in one byte arena, and an open-addressing index (`hashbrown::HashTable` of row
//! numbers, foldhash) from id to the id's newest row. A write appends a row and marks the id's
//! previous row superseded; nothing is allocated per document. Rows are appended in
//! sequence-number order because inserts happen under the WAL lock.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

/// Per-row bookkeeping besides the vector.
#[derive(Debug, Clone, Copy)]
struct Meta {
    seq: u64,
    id_start: usize,
    id_len: u16,
    tombstone: bool,
    superseded: bool,
    /// `(offset, len)` in the payload arena.
    payload: Option<(usize, u32)>,
}

/// One row, borrowed from the memtable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowView<'a> {
    pub id: &'a str,
    pub seq: u64,
    pub tombstone: bool,
    pub payload: Option<&'a [u8]>,
}

/// Rough per-row overhead besides the vector, id and payload bytes.
const ROW_OVERHEAD: usize = 64;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Memtable {
    dim: usize,
    vectors: Vec<f32>,
    norms: Vec<f32>,
    ids: String,
    payloads: Vec<u8>,
    meta: Vec<Meta>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    bytes: usize,
}

impl Memtable {
    /// An empty memtable; `flush_bytes` (the flush threshold) sizes the arenas up front so that
    /// they do not reallocate and copy while filling. They are sized for twice that, the point
    /// where writers are held back while a flush catches up; only touched pages use memory.
    pub(crate) fn new(dim: usize, flush_bytes: usize) -> Memtable {
        let rows = (flush_bytes.saturating_mul(2) / (dim * 4 + ROW_OVERHEAD + 16)).min(1 << 22);
        Memtable {
            dim,
            vectors: Vec::with_capacity(rows * dim),
            norms: Vec::with_capacity(rows),
            ids: String::with_capacity(rows * 16),
            payloads: Vec::new(),
            meta: Vec::with_capacity(rows),
            index: HashTable::with_capacity(rows),
            hasher: DefaultHashBuilder::default(),
            bytes: 0,
        }
    }

    /// Empty the memtable but keep its arenas (and their already-touched pages) for reuse.
    pub(crate) fn clear(&mut self) {
        self.vectors.clear();
        self.norms.clear();
        self.ids.clear();
        self.payloads.clear();
        self.meta.clear();
        self.index.clear();
        self.bytes = 0;
    }

    /// Approximate memory held, the measure `memtable_max_bytes` is compared with.
    pub(crate) fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// Rows, superseded ones included.
    pub(crate) fn row_count(&self) -> usize {
        self.meta.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Largest sequence number held (0 when empty).
    pub(crate) fn max_seq(&self) -> u64 {
        self.meta.last().map_or(0, |m| m.seq)
    }

    fn id_of(&self, m: &Meta) -> &str {
        &self.ids[m.id_start..m.id_start + m.id_len as usize]
    }

    fn find(&self, hash: u64, id: &str) -> Option<u32> {
        self.index
            .find(hash, |&r| self.id_of(&self.meta[r as usize]) == id)
            .copied()
    }

    fn push(&mut self, id: &str, seq: u64, vector: Option<&[f32]>, payload: Option<&[u8]>) {
        let row = self.meta.len() as u32;
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
        let id_start = self.ids.len();
        self.ids.push_str(id);
        let payload = payload.map(|p| {
            let at = self.payloads.len();
            self.payloads.extend_from_slice(p);
            (at, p.len() as u32)
        });
        self.bytes += self.dim * 4 + id.len() + payload.map_or(0, |p| p.1 as usize) + ROW_OVERHEAD;
        let hash = self.hasher.hash_one(id);
        match self.find(hash, id) {
            Some(old) => {
                self.meta[old as usize].superseded = true;
                let (meta, ids) = (&self.meta, &self.ids);
                if let Some(slot) = self.index.find_mut(hash, |&r| {
                    &ids[meta[r as usize].id_start..][..meta[r as usize].id_len as usize] == id
                }) {
                    *slot = row;
                }
            }
            None => {
                let (meta, ids, hasher) = (&self.meta, &self.ids, &self.hasher);
                self.index.insert_unique(hash, row, |&r| {
                    let m = &meta[r as usize];
                    hasher.hash_one(&ids[m.id_start..m.id_start + m.id_len as usize])
                });
            }
        }
        self.meta.push(Meta {
            seq,
            id_start,
            id_len: id.len() as u16,
            tombstone: vector.is_none(),
            superseded: false,
            payload,
        });
    }

    /// Insert or replace `id`.
    pub(crate) fn upsert(&mut self, id: &str, seq: u64, vector: &[f32], payload: Option<&[u8]>) {
        self.push(id, seq, Some(vector), payload);
    }

    /// Record a deletion of `id`.
    pub(crate) fn delete(&mut self, id: &str, seq: u64) {
        self.push(id, seq, None, None);
    }

    /// Row `row`.
    pub(crate) fn row(&self, row: u32) -> RowView<'_> {
        let m = &self.meta[row as usize];
        RowView {
            id: self.id_of(m),
            seq: m.seq,
            tombstone: m.tombstone,
            payload: m
                .payload
                .map(|(at, len)| &self.payloads[at..at + len as usize]),
        }
    }

    /// The newest row of `id`, if any.
    pub(crate) fn get(&self, id: &str) -> Option<(u32, RowView<'_>)> {
        self.find(self.hasher.hash_one(id), id)
            .map(|r| (r, self.row(r)))
    }

    /// `true` when this memtable holds any version (or a tombstone) of `id`.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.find(self.hasher.hash_one(id), id).is_some()
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

    /// A row that is the newest version of its id and not a tombstone.
    pub(crate) fn is_live(&self, row: usize) -> bool {
        let m = &self.meta[row];
        !m.superseded && !m.tombstone
    }

    /// The newest row of every id, sorted by id (what a flush writes). Sorts on an 8-byte
    /// big-endian prefix of the id first, so most comparisons are one integer compare.
    pub(crate) fn sorted_latest(&self) -> Vec<u32> {
        let mut keyed: Vec<(u64, u32)> = self
            .index
            .iter()
            .map(|&r| {
                let id = self.id_of(&self.meta[r as usize]).as_bytes();
                let mut prefix = [0u8; 8];
                let n = id.len().min(8);
                prefix[..n].copy_from_slice(&id[..n]);
                (u64::from_be_bytes(prefix), r)
            })
            .collect();
        keyed.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                self.id_of(&self.meta[a.1 as usize])
                    .cmp(self.id_of(&self.meta[b.1 as usize]))
            })
        });
        keyed.into_iter().map(|(_, r)| r).collect()
    }

    /// The newest row of every id, in no particular order.
    pub(crate) fn latest(&self) -> impl Iterator<Item = RowView<'_>> {
        self.index.iter().map(|&r| self.row(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_wins() {
        let mut m = Memtable::new(2, 1 << 16);
        m.upsert("a", 1, &[1.0, 0.0], None);
        m.upsert("b", 2, &[0.0, 1.0], Some(b"{}"));
        m.upsert("a", 3, &[2.0, 0.0], None);
        let (row, r) = m.get("a").expect("a");
        assert_eq!((r.seq, m.vector(row)), (3, &[2.0, 0.0][..]));
        assert!(!m.is_live(0) && m.is_live(1) && m.is_live(2));
        assert_eq!(m.get("b").expect("b").1.payload, Some(&b"{}"[..]));
        m.delete("b", 4);
        assert!(m.get("b").expect("b").1.tombstone);
        assert!(!m.is_live(1) && !m.is_live(3));
        m.delete("zzz", 5);
        assert!(m.contains("zzz") && !m.contains("zz"));
        assert_eq!(m.latest().count(), 3);
        assert_eq!(m.max_seq(), 5);
        assert!(m.approx_bytes() > 0);
    }

    #[test]
    fn sorted_latest_orders_by_full_id() {
        let mut m = Memtable::new(1, 0);
        let ids = [
            "prefix-9",
            "prefix-10",
            "prefix-1",
            "p",
            "prefix-100",
            "b",
            "a",
            "prefix-1x",
        ];
        for (i, id) in ids.iter().enumerate() {
            m.upsert(id, i as u64 + 1, &[0.0], None);
        }
        m.upsert("b", 99, &[1.0], None);
        let got: Vec<&str> = m.sorted_latest().into_iter().map(|r| m.row(r).id).collect();
        let mut want = ids.to_vec();
        want.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(m.get("b").expect("b").1.seq, 99);
    }
}
