//! The segment file format, versions 1 to 3 (also described in `docs/format.md`; keep both
//! true).
//!
//! ```text
//! offset 0
//! ┌──────────────────────────────────────────────────────────────────────────┐
//! │ header (16 B): magic "BARQSEG\0", format version u32, flags u32          │
//! ├─ pad to 64 ──────────────────────────────────────────────────────────────┤
//! │ VECTORS    rows × dim × f32 LE, row-major, rows sorted by id             │
//! │ NORMS      rows × f32 LE (Euclidean norm of each vector, for cosine)     │
//! │ ID_PAGES   pages of ~32 KiB; page = n u32, n × entry-end u32, entries    │
//! │            entry = flags u8 (1 tombstone, 2 payload), payload offset u64,│
//! │            payload len u32, vector crc32c u32, payload crc32c u32,       │
//! │            id len u16, id bytes                                          │
//! │ PAYLOADS   concatenated JSON payloads (offsets live in ID_PAGES)         │
//! │ SEQS       rows × u64 LE sequence numbers                                │
//! │ TOMBSTONES bitmap, rows bits, u64 LE words                               │
//! │ (every block starts 64-byte aligned; padding is zeros)                   │
//! ├──────────────────────────────────────────────────────────────────────────┤
//! │ footer: version u32, metric u8, pad 3, dim u32, rows u64, tombstones u64,│
//! │   min_seq u64, max_seq u64, created_at_ms u64,                           │
//! │   block count u32, blocks {kind u32, crc32c u32, offset u64, len u64},   │
//! │   page count u32, pages {first_row u64, offset u64, len u32, crc32c u32, │
//! │   fence len u16, fence = first id of the page}                           │
//! ├──────────────────────────────────────────────────────────────────────────┤
//! │ trailer (16 B): footer len u32, footer crc32c u32, magic "BARQSEG\0"     │
//! └──────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Format version 2 (an indexed segment, `segment::indexed`; docs/format.md §1.7) has the same
//! header, blocks, footer and trailer, with rows in cluster order, a `row u32` before each id
//! page entry's id length, and three more blocks after TOMBSTONES:
//!
//! ```text
//! │ ... VECTORS, NORMS, ID_PAGES, PAYLOADS, SEQS, TOMBSTONES as above, by row   │
//! │ ROW_ENTRIES rows × u32: the id-order entry of each row                      │
//! │ CLUSTERS   per cluster c (cluster order): codes n_c × code_len bytes,       │
//! │            factors n_c × 3 f32 (α, κ, ‖o‖²), vector crc32c n_c × u32         │
//! │ INDEX_HEAD clusters u32, bits u8, pad 3, seed u64, rerank_factor u32,       │
//! │            indexed_rows u64, calibrated u32 (5), 5 × {recall f32, nprobe u32}│
//! │            centroids clusters × dim f32,                                    │
//! │            directory clusters × {first_row u32, rows u32, extent offset u64,│
//! │            extent len u64, extent crc32c u32}                               │
//! ├──────────────────────────────────────────────────────────────────────────────┤
//! │ footer, trailer as above (version 2)                                        │
//! ```
//!
//! Format version 3 is version 2 with each cluster extent followed, inside the extent, by the
//! entries of its rows in row order, so that a search reads the hits' ids and payload
//! locations from the extents it scanned instead of a round trip to the id pages:
//!
//! ```text
//! │ CLUSTERS   per cluster c: codes, factors, vector crc32c as in version 2, then │
//! │            an entry page of its n_c rows in row order: n_c u32, n_c ×       │
//! │            entry-end u32, entries (the version 1 entry: no row field)      │
//! ```
//!
//! A version 3 segment of a collection with indexed payload fields also holds FILTER_DATA and
//! FILTER_HEAD (kinds 10 and 11) between CLUSTERS and INDEX_HEAD: per field, row bitmaps of its
//! values (see `segment::filters` and docs/format.md §1.9).
//!
//! Reading: one read of the file's tail gives trailer and footer (the footer holds the page
//! fences, so a point lookup then needs one page, one vector and one payload range, each
//! verified by its own checksum). Whole-block reads are verified by the block's checksum.
//! All integers are little-endian.

use barq_core::{Metric, Result};

use super::SegmentError;

/// First and last 8 bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"BARQSEG\0";
/// The newest format version this build reads and the one it writes for indexed segments:
/// version 1 (rows in id order, no index), version 2 (rows in cluster order with an IVF
/// index; see `segment::indexed`) and version 3 (version 2 with the rows' entries inside the
/// cluster extents).
pub const FORMAT_VERSION: u32 = 3;
/// The version of a segment without an index (flush outputs, small compaction outputs).
pub const PLAIN_VERSION: u32 = 1;
/// The first version with an IVF index.
pub const INDEXED_VERSION: u32 = 2;
/// The first version whose cluster extents carry their rows' entries.
pub const EXTENT_ENTRIES_VERSION: u32 = 3;
/// Bytes of the header.
pub const HEADER_LEN: u64 = 16;
/// Bytes of the trailer.
pub const TRAILER_LEN: u64 = 16;
/// Blocks start at multiples of this.
pub const BLOCK_ALIGN: u64 = 64;
/// An id page is sealed once it holds at least this many bytes.
pub const PAGE_TARGET_BYTES: usize = 32 * 1024;
/// Bytes of an id-page entry before the id (version 1).
pub const ENTRY_FIXED_LEN: usize = 1 + 8 + 4 + 4 + 4 + 2;
/// Bytes of an id-page entry before the id in version 2, which adds the entry's row (u32)
/// before the id length.
pub const ENTRY_FIXED_LEN_V2: usize = ENTRY_FIXED_LEN + 4;

/// Entry flag: the row is a tombstone.
pub const FLAG_TOMBSTONE: u8 = 1;
/// Entry flag: the row has a payload.
pub const FLAG_PAYLOAD: u8 = 2;

/// The kinds of block a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum BlockKind {
    /// Row-major f32 vectors.
    Vectors = 1,
    /// One f32 norm per row.
    Norms = 2,
    /// Id pages (the sorted id index, with per-row payload locations and checksums).
    IdPages = 3,
    /// Concatenated payloads.
    Payloads = 4,
    /// One u64 sequence number per row.
    Seqs = 5,
    /// Tombstone bitmap.
    Tombstones = 6,
    /// Version 2: one u32 per row, the row's entry (its rank in id order).
    RowEntries = 7,
    /// Version 2: the clusters' extents (each: its rows' codes, then their factors).
    Clusters = 8,
    /// Version 2: the index head (parameters, centroids, cluster directory); the last block
    /// before the footer, so that the tail read that opens a segment usually brings it too.
    IndexHead = 9,
    /// The payload indexes' bitmaps and sorted values (`segment::filters`).
    FilterData = 10,
    /// The payload indexes' directory: fields, values and where each part lies.
    FilterHead = 11,
    // Kinds 12 to 19 are reserved for further payload index blocks.
}

impl BlockKind {
    /// The kinds of a version 1 segment, in file order.
    pub const ALL: [BlockKind; 6] = [
        BlockKind::Vectors,
        BlockKind::Norms,
        BlockKind::IdPages,
        BlockKind::Payloads,
        BlockKind::Seqs,
        BlockKind::Tombstones,
    ];
    /// The kinds a version 2 segment adds, in file order (after [`BlockKind::ALL`]).
    pub const INDEX: [BlockKind; 3] = [
        BlockKind::RowEntries,
        BlockKind::Clusters,
        BlockKind::IndexHead,
    ];

    /// The optional blocks of a payload index, in file order (between CLUSTERS and
    /// INDEX_HEAD).
    pub const FILTER: [BlockKind; 2] = [BlockKind::FilterData, BlockKind::FilterHead];

    fn from_u32(v: u32) -> Option<BlockKind> {
        BlockKind::ALL
            .into_iter()
            .chain(BlockKind::INDEX)
            .chain(BlockKind::FILTER)
            .find(|k| *k as u32 == v)
    }

    /// Lowercase name for messages.
    pub fn name(self) -> &'static str {
        match self {
            BlockKind::Vectors => "vectors",
            BlockKind::Norms => "norms",
            BlockKind::IdPages => "id pages",
            BlockKind::Payloads => "payloads",
            BlockKind::Seqs => "seqs",
            BlockKind::Tombstones => "tombstones",
            BlockKind::RowEntries => "row entries",
            BlockKind::Clusters => "clusters",
            BlockKind::IndexHead => "index head",
            BlockKind::FilterData => "filter data",
            BlockKind::FilterHead => "filter head",
        }
    }
}

/// Where a block lives and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// What the block holds.
    pub kind: BlockKind,
    /// CRC32C of the block's bytes.
    pub crc: u32,
    /// Absolute file offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// One id page in the footer's page directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRef {
    /// Index of the page's first entry in id order (in version 1, where rows are in id order,
    /// also its row).
    pub first_row: u64,
    /// Offset inside the ID_PAGES block.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// CRC32C of the page.
    pub crc: u32,
    /// The page's first id.
    pub fence: Vec<u8>,
}

/// The decoded footer.
#[derive(Debug, Clone, PartialEq)]
pub struct Footer {
    /// Format version of the file.
    pub version: u32,
    /// Distance metric of the collection.
    pub metric: Metric,
    /// Vector dimension.
    pub dim: u32,
    /// Rows, tombstones included.
    pub rows: u64,
    /// Tombstone rows.
    pub tombstones: u64,
    /// Smallest sequence number.
    pub min_seq: u64,
    /// Largest sequence number.
    pub max_seq: u64,
    /// Seal time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Block directory.
    pub blocks: Vec<BlockRef>,
    /// Id page directory.
    pub pages: Vec<PageRef>,
}

impl Footer {
    /// The block of `kind`.
    pub fn block(&self, kind: BlockKind) -> Result<BlockRef> {
        self.blocks
            .iter()
            .copied()
            .find(|b| b.kind == kind)
            .ok_or_else(|| {
                SegmentError::decode(format!("segment has no {} block", kind.name())).into()
            })
    }

    /// Encode the footer body (without trailer).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.pages.len() * 48);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.push(self.metric.code());
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&self.dim.to_le_bytes());
        for v in [
            self.rows,
            self.tombstones,
            self.min_seq,
            self.max_seq,
            self.created_at_ms,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        for b in &self.blocks {
            out.extend_from_slice(&(b.kind as u32).to_le_bytes());
            out.extend_from_slice(&b.crc.to_le_bytes());
            out.extend_from_slice(&b.offset.to_le_bytes());
            out.extend_from_slice(&b.len.to_le_bytes());
        }
        out.extend_from_slice(&(self.pages.len() as u32).to_le_bytes());
        for p in &self.pages {
            out.extend_from_slice(&p.first_row.to_le_bytes());
            out.extend_from_slice(&p.offset.to_le_bytes());
            out.extend_from_slice(&p.len.to_le_bytes());
            out.extend_from_slice(&p.crc.to_le_bytes());
            out.extend_from_slice(&(p.fence.len() as u16).to_le_bytes());
            out.extend_from_slice(&p.fence);
        }
        out
    }

    /// Decode a footer body, checking every bound against `file_len`.
    pub fn decode(body: &[u8], file_len: u64) -> Result<Footer> {
        let mut r = Cursor { buf: body, pos: 0 };
        let version = r.u32()?;
        if version == 0 || version > FORMAT_VERSION {
            return Err(SegmentError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            }
            .into());
        }
        let metric_code = r.take(4)?[0];
        let metric = Metric::from_code(metric_code).ok_or_else(|| {
            SegmentError::decode(format!("segment has unknown metric code {metric_code}"))
        })?;
        let dim = r.u32()?;
        let (rows, tombstones, min_seq, max_seq, created_at_ms) =
            (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let block_count = r.u32()? as usize;
        let mut blocks = Vec::with_capacity(block_count.min(16));
        for _ in 0..block_count {
            let kind_raw = r.u32()?;
            let kind = BlockKind::from_u32(kind_raw).ok_or_else(|| {
                SegmentError::decode(format!("segment has unknown block kind {kind_raw}"))
            })?;
            let (crc, offset, len) = (r.u32()?, r.u64()?, r.u64()?);
            if offset.checked_add(len).is_none_or(|end| end > file_len) {
                return Err(SegmentError::decode(format!(
                    "segment {} block lies past the end of the file",
                    kind.name()
                ))
                .into());
            }
            blocks.push(BlockRef {
                kind,
                crc,
                offset,
                len,
            });
        }
        let page_count = r.u32()? as usize;
        let mut pages = Vec::with_capacity(page_count.min(1 << 16));
        for _ in 0..page_count {
            let (first_row, offset, len, crc) = (r.u64()?, r.u64()?, r.u32()?, r.u32()?);
            let fence_len = r.u16()? as usize;
            let fence = r.take(fence_len)?.to_vec();
            pages.push(PageRef {
                first_row,
                offset,
                len,
                crc,
                fence,
            });
        }
        if r.pos != body.len() {
            return Err(SegmentError::decode("segment footer has trailing bytes").into());
        }
        let required: &[BlockKind] = if version >= INDEXED_VERSION {
            &[
                BlockKind::RowEntries,
                BlockKind::Clusters,
                BlockKind::IndexHead,
            ]
        } else {
            &[]
        };
        for kind in BlockKind::ALL.iter().chain(required) {
            if !blocks.iter().any(|b| b.kind == *kind) {
                return Err(SegmentError::decode(format!(
                    "segment of format {version} has no {} block",
                    kind.name()
                ))
                .into());
            }
        }
        Ok(Footer {
            version,
            metric,
            dim,
            rows,
            tombstones,
            min_seq,
            max_seq,
            created_at_ms,
            blocks,
            pages,
        })
    }
}

/// Encode the trailer for a footer body.
pub fn encode_trailer(footer_body: &[u8]) -> [u8; TRAILER_LEN as usize] {
    let mut t = [0u8; TRAILER_LEN as usize];
    t[0..4].copy_from_slice(&(footer_body.len() as u32).to_le_bytes());
    t[4..8].copy_from_slice(&crc32c::crc32c(footer_body).to_le_bytes());
    t[8..16].copy_from_slice(&MAGIC);
    t
}

/// Decode a trailer: (footer length, footer crc).
pub fn decode_trailer(t: &[u8]) -> Result<(u32, u32)> {
    if t.len() != TRAILER_LEN as usize || t[8..16] != MAGIC {
        return Err(SegmentError::decode(
            "segment trailer is missing its magic: not a segment file or truncated",
        )
        .into());
    }
    Ok((le_u32(&t[0..4]), le_u32(&t[4..8])))
}

/// One decoded id-page entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// [`FLAG_TOMBSTONE`] | [`FLAG_PAYLOAD`].
    pub flags: u8,
    /// Offset inside the PAYLOADS block.
    pub payload_offset: u64,
    /// Payload length.
    pub payload_len: u32,
    /// CRC32C of the row's vector bytes.
    pub vector_crc: u32,
    /// CRC32C of the payload bytes.
    pub payload_crc: u32,
    /// The entry's row (version 2; in version 1 the row is the entry's rank).
    pub row: Option<u32>,
    /// The id.
    pub id: &'a [u8],
}

impl Entry<'_> {
    /// The row is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.flags & FLAG_TOMBSTONE != 0
    }
    /// The row has a payload.
    pub fn has_payload(&self) -> bool {
        self.flags & FLAG_PAYLOAD != 0
    }

    /// Append the encoded entry to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.flags);
        out.extend_from_slice(&self.payload_offset.to_le_bytes());
        out.extend_from_slice(&self.payload_len.to_le_bytes());
        out.extend_from_slice(&self.vector_crc.to_le_bytes());
        out.extend_from_slice(&self.payload_crc.to_le_bytes());
        if let Some(row) = self.row {
            out.extend_from_slice(&row.to_le_bytes());
        }
        out.extend_from_slice(&(self.id.len() as u16).to_le_bytes());
        out.extend_from_slice(self.id);
    }
}

/// Append a page of the entries whose encodings are `entries` and whose end offsets in it are
/// `ends`: `n u32`, `n × entry-end u32`, the entries.
pub fn encode_page(ends: &[u32], entries: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(ends.len() as u32).to_le_bytes());
    for end in ends {
        out.extend_from_slice(&end.to_le_bytes());
    }
    out.extend_from_slice(entries);
}

/// A verified id page, parsed lazily.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    buf: &'a [u8],
    n: usize,
    with_rows: bool,
}

impl<'a> Page<'a> {
    /// Parse the page header of a segment of format `version`; entries are decoded on access.
    pub fn parse(buf: &'a [u8], version: u32) -> Result<Page<'a>> {
        if buf.len() < 4 {
            return Err(SegmentError::decode("id page is shorter than its header").into());
        }
        let n = le_u32(&buf[0..4]) as usize;
        if 4 + n * 4 > buf.len() {
            return Err(SegmentError::decode("id page entry table lies past the page").into());
        }
        Ok(Page {
            buf,
            n,
            with_rows: version >= INDEXED_VERSION,
        })
    }

    /// Entries in the page.
    pub fn len(&self) -> usize {
        self.n
    }

    /// `true` when the page has no entries.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Entry `i`.
    pub fn entry(&self, i: usize) -> Result<Entry<'a>> {
        if i >= self.n {
            return Err(SegmentError::decode(format!("id page has no entry {i}")).into());
        }
        let table = 4 + self.n * 4;
        let start = if i == 0 {
            table
        } else {
            table + le_u32(&self.buf[4 + (i - 1) * 4..]) as usize
        };
        let end = table + le_u32(&self.buf[4 + i * 4..]) as usize;
        let fixed = if self.with_rows {
            ENTRY_FIXED_LEN_V2
        } else {
            ENTRY_FIXED_LEN
        };
        let e = self
            .buf
            .get(start..end)
            .filter(|e| e.len() >= fixed)
            .ok_or_else(|| SegmentError::decode("id page entry lies past the page"))?;
        let id_len = u16::from_le_bytes([e[fixed - 2], e[fixed - 1]]) as usize;
        let id = e
            .get(fixed..fixed + id_len)
            .ok_or_else(|| SegmentError::decode("id page entry id lies past the entry"))?;
        Ok(Entry {
            flags: e[0],
            payload_offset: le_u64(&e[1..9]),
            payload_len: le_u32(&e[9..13]),
            vector_crc: le_u32(&e[13..17]),
            payload_crc: le_u32(&e[17..21]),
            row: self.with_rows.then(|| le_u32(&e[21..25])),
            id,
        })
    }

    /// Binary search for `id`: its index in the page.
    pub fn find(&self, id: &[u8]) -> Result<Option<usize>> {
        let (mut lo, mut hi) = (0usize, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.entry(mid)?.id.cmp(id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(mid)),
            }
        }
        Ok(None)
    }
}

/// Round `x` up to a multiple of [`BLOCK_ALIGN`].
pub fn align_up(x: u64) -> u64 {
    x.div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn is_at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let out = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or_else(|| SegmentError::decode("segment footer is truncated"))?;
        self.pos += n;
        Ok(out)
    }
    pub(crate) fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(le_u32(self.take(4)?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(le_u64(self.take(8)?))
    }
}
