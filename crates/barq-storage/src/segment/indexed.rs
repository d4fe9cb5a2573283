//! Indexed segments (versions 2 and 3): rows in cluster order with an IVF index (see
//! `format.rs` for the layout), written (as version 3) by rewriting a version 1 segment.
//!
//! Indexing is a rewrite of one sealed segment into a new file: the live rows' vectors are
//! partitioned ([`barq_index::partition`]) and encoded, the rows are written in cluster order (so
//! each cluster's vectors, norms, seqs and codes are contiguous), tombstone rows after every
//! cluster, and the id pages keep their id order with each entry naming its new row. The
//! payload block is copied unchanged (entries keep their offsets). In version 3 each cluster's
//! extent also carries its rows' entries in row order, so that a search of a cold segment
//! learns its hits' ids and payload locations from the extents it has already fetched.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use barq_core::{Error, Result};
use barq_index::{IndexHead, IndexParams};

use super::format::{self, BlockKind, EXTENT_ENTRIES_VERSION, Entry, FORMAT_VERSION, Footer, Page};
use super::reader::{OwnedEntry, Segment};
use super::writer::{CrcWriter, PageBuilder, io_error};
use super::{SegmentError, SegmentInfo};
use crate::fsutil;

/// Where one cluster's extent lies and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentRef {
    /// Absolute file offset.
    pub offset: u64,
    /// Bytes: `rows × code_len` codes, then `rows × 3` f32 factors, then `rows` u32 CRC32Cs of
    /// the rows' f32 vectors (so that a re-rank can fetch and check single rows); in version 3
    /// then a page of the rows' entries in row order.
    pub len: u64,
    /// CRC32C of the extent.
    pub crc: u32,
}

/// A segment's index head, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentIndex {
    /// Parameters, centroids, cluster rows and calibrated probe counts.
    pub head: IndexHead,
    /// One extent per cluster.
    pub extents: Vec<ExtentRef>,
    /// The extents end with their rows' entries (version 3).
    pub extent_entries: bool,
}

impl SegmentIndex {
    /// Bytes of one row's code.
    pub fn code_len(&self) -> usize {
        barq_index::rabitq::padded_dim(self.head.dim) * usize::from(self.head.bits) / 8
    }

    /// Bytes per row of an extent: code, factors, vector CRC.
    fn extent_row_len(&self) -> usize {
        self.code_len() + barq_index::rabitq::FACTORS * 4 + 4
    }

    /// Rows `first..first + n` of the segment are cluster `c`.
    pub fn cluster_rows(&self, c: u32) -> std::ops::Range<u64> {
        let o = &self.head.offsets;
        u64::from(o[c as usize])..u64::from(o[c as usize + 1])
    }

    /// The cluster holding `row` (`None` for a tombstone row after the last cluster).
    pub fn cluster_of(&self, row: u64) -> Option<u32> {
        let o = &self.head.offsets;
        let i = o.partition_point(|&x| u64::from(x) <= row);
        (i > 0 && i < o.len()).then(|| (i - 1) as u32)
    }

    /// The file offset of the vector CRC32C of `row` inside cluster `c`'s extent.
    pub fn crc_offset(&self, c: u32, row: u64) -> u64 {
        let rows = self.cluster_rows(c);
        let n = rows.end - rows.start;
        self.extents[c as usize].offset
            + n * (self.code_len() + barq_index::rabitq::FACTORS * 4) as u64
            + (row - rows.start) * 4
    }

    /// The file range of the entry table (`n u32`, `n × entry-end u32`) of cluster `c`'s entry
    /// page inside its extent (format 3); the entries follow it.
    pub fn entry_table(&self, c: u32) -> Option<std::ops::Range<u64>> {
        if !self.extent_entries {
            return None;
        }
        let rows = self.cluster_rows(c);
        let n = rows.end - rows.start;
        let start = self.extents[c as usize].offset + n * self.extent_row_len() as u64;
        Some(start..start + 4 + 4 * n)
    }

    /// Split a verified extent of cluster `c` into its codes, factors and vector CRCs.
    pub fn split_extent<'a>(&self, c: u32, extent: &'a [u8]) -> Result<ClusterCodes<'a>> {
        let rows = (self.cluster_rows(c).end - self.cluster_rows(c).start) as usize;
        let wrong = || -> Error {
            SegmentError::decode(format!("cluster {c} extent has the wrong length")).into()
        };
        let fixed = rows * self.extent_row_len();
        if extent.len() < fixed || (!self.extent_entries && extent.len() != fixed) {
            return Err(wrong());
        }
        let (fixed, page) = extent.split_at(fixed);
        let entries = if self.extent_entries {
            let page = Page::parse(page, format::PLAIN_VERSION)?;
            if page.len() != rows {
                return Err(SegmentError::decode(format!(
                    "cluster {c} extent holds {} entries for {rows} rows",
                    page.len()
                ))
                .into());
            }
            Some(page)
        } else {
            None
        };
        let (codes, rest) = fixed.split_at(rows * self.code_len());
        let (factors, crcs) = rest.split_at(rows * barq_index::rabitq::FACTORS * 4);
        Ok(ClusterCodes {
            codes,
            factors: words(factors),
            crcs: words(crcs),
            entries,
        })
    }

    /// Encode the INDEX_HEAD block; extent offsets are stored relative to `clusters_offset`
    /// (the CLUSTERS block's start).
    pub(crate) fn encode(&self, clusters_offset: u64) -> Vec<u8> {
        let h = &self.head;
        let mut out = Vec::with_capacity(64 + h.centroids.len() * 4 + self.extents.len() * 24);
        out.extend_from_slice(&(h.clusters() as u32).to_le_bytes());
        out.push(h.bits);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&h.seed.to_le_bytes());
        out.extend_from_slice(&(h.rerank_factor as u32).to_le_bytes());
        out.extend_from_slice(&(h.rows() as u64).to_le_bytes());
        out.extend_from_slice(&(h.nprobe.len() as u32).to_le_bytes());
        for (r, n) in barq_index::CALIBRATED_RECALLS.iter().zip(&h.nprobe) {
            out.extend_from_slice(&r.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
        for c in &h.centroids {
            out.extend_from_slice(&c.to_le_bytes());
        }
        for (c, e) in self.extents.iter().enumerate() {
            out.extend_from_slice(&h.offsets[c].to_le_bytes());
            out.extend_from_slice(&(h.offsets[c + 1] - h.offsets[c]).to_le_bytes());
            out.extend_from_slice(&(e.offset - clusters_offset).to_le_bytes());
            out.extend_from_slice(&e.len.to_le_bytes());
            out.extend_from_slice(&e.crc.to_le_bytes());
        }
        out
    }

    /// Decode an INDEX_HEAD block of a segment whose footer is `footer`, checking every bound.
    pub(crate) fn decode(bytes: &[u8], footer: &Footer) -> Result<SegmentIndex> {
        let bad =
            |what: &str| -> Error { SegmentError::decode(format!("index head: {what}")).into() };
        let clusters_block = footer.block(BlockKind::Clusters)?;
        let mut r = format::Cursor::new(bytes);
        let clusters = r.u32()? as usize;
        let bits = r.take(4)?[0];
        if !barq_index::rabitq::ALLOWED_BITS.contains(&bits) {
            return Err(bad(&format!("{bits} bits per coordinate")));
        }
        let seed = r.u64()?;
        let rerank_factor = r.u32()? as usize;
        let indexed_rows = r.u64()?;
        let calibrated = r.u32()? as usize;
        if calibrated != barq_index::CALIBRATED_RECALLS.len() {
            return Err(bad(&format!("{calibrated} calibrated recall targets")));
        }
        let mut nprobe = [0u32; barq_index::CALIBRATED_RECALLS.len()];
        for n in &mut nprobe {
            let _recall = r.u32()?;
            *n = r.u32()?;
        }
        let dim = footer.dim as usize;
        if clusters == 0 || clusters as u64 > indexed_rows.max(1) || indexed_rows > footer.rows {
            return Err(bad(&format!(
                "{clusters} clusters for {indexed_rows} indexed rows of {}",
                footer.rows
            )));
        }
        let mut centroids = Vec::with_capacity(clusters * dim);
        for _ in 0..clusters * dim {
            centroids.push(f32::from_bits(r.u32()?));
        }
        let mut offsets = Vec::with_capacity(clusters + 1);
        let mut extents = Vec::with_capacity(clusters);
        let mut next_row = 0u32;
        for _ in 0..clusters {
            let (first, rows) = (r.u32()?, r.u32()?);
            let (offset, len, crc) = (r.u64()?, r.u64()?, r.u32()?);
            if first != next_row {
                return Err(bad("clusters do not tile the rows"));
            }
            if offset
                .checked_add(len)
                .is_none_or(|end| end > clusters_block.len)
            {
                return Err(bad("a cluster extent lies past the clusters block"));
            }
            offsets.push(first);
            next_row = first
                .checked_add(rows)
                .ok_or_else(|| bad("cluster rows overflow"))?;
            extents.push(ExtentRef {
                offset: clusters_block.offset + offset,
                len,
                crc,
            });
        }
        if u64::from(next_row) != indexed_rows {
            return Err(bad("clusters do not cover the indexed rows"));
        }
        offsets.push(next_row);
        if !r.is_at_end() {
            return Err(bad("trailing bytes"));
        }
        let index = SegmentIndex {
            head: IndexHead {
                metric: footer.metric,
                dim,
                bits,
                seed,
                rerank_factor: rerank_factor.max(1),
                centroids,
                offsets,
                nprobe,
            },
            extents,
            extent_entries: footer.version >= EXTENT_ENTRIES_VERSION,
        };
        let per_row = index.extent_row_len() as u64;
        for (c, e) in index.extents.iter().enumerate() {
            let rows = u64::from(index.head.offsets[c + 1] - index.head.offsets[c]);
            let fixed = rows * per_row;
            // A version 3 extent adds at least its entry page's header and end table.
            let ok = if index.extent_entries {
                e.len >= fixed + 4 + rows * 4
            } else {
                e.len == fixed
            };
            if !ok {
                return Err(bad(&format!("cluster {c} extent has the wrong length")));
            }
        }
        Ok(index)
    }
}

/// One cluster's extent, split.
#[derive(Debug)]
pub struct ClusterCodes<'a> {
    /// `rows × code_len` packed codes.
    pub codes: &'a [u8],
    /// `rows × 3` factors (borrowed from the extent when it is 4-byte aligned).
    pub factors: Cow<'a, [f32]>,
    /// CRC32C of each row's f32 vector bytes.
    pub crcs: Cow<'a, [u32]>,
    /// The rows' entries in row order (version 3).
    pub entries: Option<Page<'a>>,
}

/// Little-endian 4-byte values: borrowed when `b` is aligned (a mapped file), copied otherwise.
fn words<T: bytemuck::Pod>(b: &[u8]) -> Cow<'_, [T]> {
    match bytemuck::try_cast_slice(b) {
        Ok(v) => Cow::Borrowed(v),
        Err(_) => Cow::Owned(
            b.chunks_exact(4)
                .map(|w| bytemuck::pod_read_unaligned(w))
                .collect(),
        ),
    }
}

/// The entry of `e` and `id` at `row`.
fn entry_of<'a>(e: &OwnedEntry, row: Option<u32>, id: &'a [u8]) -> Entry<'a> {
    Entry {
        flags: (u8::from(e.tombstone) * format::FLAG_TOMBSTONE)
            | (u8::from(e.has_payload) * format::FLAG_PAYLOAD),
        payload_offset: e.payload_offset,
        payload_len: e.payload_len,
        vector_crc: e.vector_crc,
        payload_crc: e.payload_crc,
        row,
        id,
    }
}

/// Removes a temporary file unless disarmed.
struct TmpGuard<'a>(&'a Path, bool);
impl Drop for TmpGuard<'_> {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_file(self.0);
        }
    }
}

/// Write `src` (a version 1 segment) as a version 3 segment with an IVF index at `final_path`
/// (through a temporary file, fsynced and renamed into place). The rows, ids, payloads and
/// sequence numbers are those of `src`; only their order changes. Once the rows are partitioned,
/// the blocks in row order are written and fsynced on a second thread while the codes are
/// computed; the cluster extents follow.
pub fn write_indexed(
    src: &Segment,
    final_path: &Path,
    params: &IndexParams,
    fields: &[barq_core::IndexedField],
    created_at_ms: u64,
) -> Result<SegmentInfo> {
    if src.is_indexed() {
        return Err(Error::invalid("the segment is already indexed"));
    }
    let footer = src.footer();
    let dim = src.dim();
    let rows = src.rows() as usize;
    let vectors = src.vectors()?;
    let norms = src.norms()?;
    let seqs = src.seqs()?;
    let tombs = src.tombstones()?;
    src.load_id_pages()?;
    let mut entries: Vec<(u64, OwnedEntry, Vec<u8>)> = Vec::with_capacity(rows);
    src.for_each_entry(|row, e| {
        entries.push((row, OwnedEntry::from(e), e.id.to_vec()));
        Ok(())
    })?;
    let live: Vec<usize> = (0..rows)
        .filter(|&r| !crate::shadows::bit(&tombs, r as u64))
        .collect();
    if live.is_empty() {
        return Err(Error::invalid(
            "a segment of tombstones only has nothing to index",
        ));
    }
    let live_vectors: Cow<[f32]> = if live.len() == rows {
        Cow::Borrowed(&vectors)
    } else {
        Cow::Owned(
            live.iter()
                .flat_map(|&r| vectors[r * dim..(r + 1) * dim].iter().copied())
                .collect(),
        )
    };
    let started = std::time::Instant::now();
    let part = barq_index::partition(footer.metric, dim, &live_vectors, params)?;
    let partitioned_in = started.elapsed();
    // New row p holds source row order[p]: the clusters in order, then the tombstones.
    let mut order: Vec<usize> = part.order().iter().map(|&i| live[i as usize]).collect();
    order.extend((0..rows).filter(|&r| crate::shadows::bit(&tombs, r as u64)));
    let mut new_row = vec![0u32; rows];
    for (p, &r) in order.iter().enumerate() {
        new_row[r] = p as u32;
    }
    let mut entry_of_src = vec![0u32; rows];
    for (i, (r, _, _)) in entries.iter().enumerate() {
        entry_of_src[*r as usize] = i as u32;
    }
    let offsets = part.offsets().to_vec();

    let tmp = fsutil::tmp_path(final_path);
    let mut guard = TmpGuard(&tmp, false);
    let mut w = CrcWriter::create(&tmp, FORMAT_VERSION)?;
    // Everything in row order is written — and made durable — on a second thread while the
    // codes are computed: the disk works while the CPU encodes.
    let rows_in = RowOrder {
        order: &order,
        new_row: &new_row,
        entry_of_src: &entry_of_src,
        offsets: &offsets,
        entries: &entries,
        vectors: &vectors,
        norms: &norms,
        seqs: &seqs,
        tombs: &tombs,
        dim,
    };
    let (built, written, filters) = std::thread::scope(|s| {
        let writer = s.spawn(|| rows_in.write(src, &mut w, &tmp));
        let filters = s.spawn(|| payload_index(src, fields, &order, &entry_of_src, &entries));
        let built = part.encode();
        (built, writer.join(), filters.join())
    });
    let filters = filters.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    let built_in = started.elapsed();
    let RowBlocks {
        mut blocks,
        row_crcs,
        entry_pages,
        page_refs,
    } = written.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    drop(live_vectors);
    // CLUSTERS: each cluster's codes, factors, vector checksums and entries.
    let code_len = built.codes.len() / built.order.len();
    w.pad().map_err(io_error(&tmp))?;
    let clusters_start = w.pos;
    let mut extents = Vec::with_capacity(built.head.clusters());
    let mut all_crc = 0u32;
    for (c, page) in entry_pages.iter().enumerate() {
        let (s, e) = (
            built.head.offsets[c] as usize,
            built.head.offsets[c + 1] as usize,
        );
        let codes = &built.codes[s * code_len..e * code_len];
        let factors: &[u8] = bytemuck::cast_slice(
            &built.factors[s * barq_index::rabitq::FACTORS..e * barq_index::rabitq::FACTORS],
        );
        let crcs: &[u8] = bytemuck::cast_slice(&row_crcs[s..e]);
        let offset = w.pos;
        let mut crc = 0;
        for part in [codes, factors, crcs, page] {
            crc = crc32c::crc32c_append(crc, part);
            all_crc = crc32c::crc32c_append(all_crc, part);
            w.write(part).map_err(io_error(&tmp))?;
        }
        extents.push(ExtentRef {
            offset,
            len: w.pos - offset,
            crc,
        });
    }
    blocks.push(format::BlockRef {
        kind: BlockKind::Clusters,
        crc: all_crc,
        offset: clusters_start,
        len: w.pos - clusters_start,
    });
    if !filters.is_empty() {
        blocks.extend(filters.write(&mut w, &tmp)?);
    }
    let index = SegmentIndex {
        head: built.head,
        extents,
        extent_entries: true,
    };
    blocks.push(w.block(BlockKind::IndexHead, &index.encode(clusters_start), &tmp)?);
    let out = Footer {
        version: FORMAT_VERSION,
        metric: footer.metric,
        dim: footer.dim,
        rows: footer.rows,
        tombstones: footer.tombstones,
        min_seq: footer.min_seq,
        max_seq: footer.max_seq,
        created_at_ms,
        blocks,
        pages: page_refs,
    };
    let (size_bytes, crc) = w.seal(&out, &tmp, final_path, true)?;
    tracing::debug!(rows, clusters = index.head.clusters(), partition = ?partitioned_in, build = ?built_in, total = ?started.elapsed(), "segment indexed");
    guard.1 = true;
    Ok(SegmentInfo {
        size_bytes,
        rows: out.rows,
        tombstones: out.tombstones,
        min_seq: out.min_seq,
        max_seq: out.max_seq,
        created_at_ms,
        crc,
    })
}

/// The payload index of `fields` over the rows of a segment being indexed: new row `p` holds
/// source row `order[p]`, whose entry is `entries[entry_of_src[order[p]]]`.
fn payload_index(
    src: &Segment,
    fields: &[barq_core::IndexedField],
    order: &[usize],
    entry_of_src: &[u32],
    entries: &[(u64, OwnedEntry, Vec<u8>)],
) -> Result<super::FilterBuilder> {
    let mut b = super::FilterBuilder::new(fields);
    if b.is_empty() {
        return Ok(b);
    }
    src.load_payloads()?;
    for (p, &r) in order.iter().enumerate() {
        let (_, entry, _) = &entries[entry_of_src[r] as usize];
        if entry.tombstone || !entry.has_payload {
            continue;
        }
        let Some(bytes) = src.payload_of(entry)? else {
            continue;
        };
        let payload = crate::collection::decode_payload(&bytes)?;
        b.add(p as u32, Some(&payload));
    }
    Ok(b)
}

/// What [`write_indexed`] writes in row order, before the codes exist.
struct RowOrder<'a> {
    /// New row p holds source row `order[p]`.
    order: &'a [usize],
    /// The inverse of `order`.
    new_row: &'a [u32],
    /// Index into `entries` of each source row.
    entry_of_src: &'a [u32],
    /// Cluster boundaries in new rows (tombstones follow the last cluster).
    offsets: &'a [u32],
    /// The source's entries in id order: (source row, entry, id).
    entries: &'a [(u64, OwnedEntry, Vec<u8>)],
    vectors: &'a [f32],
    norms: &'a [f32],
    seqs: &'a [u64],
    tombs: &'a [u64],
    dim: usize,
}

/// The row-ordered blocks written, each row's vector checksum and each cluster's entry page.
struct RowBlocks {
    blocks: Vec<format::BlockRef>,
    row_crcs: Vec<u32>,
    entry_pages: Vec<Vec<u8>>,
    page_refs: Vec<format::PageRef>,
}

impl RowOrder<'_> {
    /// Write VECTORS, NORMS, ID_PAGES, PAYLOADS, SEQS, TOMBSTONES and ROW_ENTRIES, then fsync
    /// them; encode the clusters' entry pages.
    fn write(&self, src: &Segment, w: &mut CrcWriter, tmp: &Path) -> Result<RowBlocks> {
        let (order, dim) = (self.order, self.dim);
        let mut blocks = Vec::new();
        w.pad().map_err(io_error(tmp))?;
        let (start, mut crc) = (w.pos, 0u32);
        let mut row_crcs = Vec::with_capacity(order.len());
        for &r in order {
            let b: &[u8] = bytemuck::cast_slice(&self.vectors[r * dim..(r + 1) * dim]);
            row_crcs.push(crc32c::crc32c(b));
            crc = crc32c::crc32c_append(crc, b);
            w.write(b).map_err(io_error(tmp))?;
        }
        blocks.push(format::BlockRef {
            kind: BlockKind::Vectors,
            crc,
            offset: start,
            len: w.pos - start,
        });
        let gathered: Vec<f32> = order.iter().map(|&r| self.norms[r]).collect();
        blocks.push(w.block(BlockKind::Norms, bytemuck::cast_slice(&gathered), tmp)?);
        let mut pages = PageBuilder::default();
        for (r, e, id) in self.entries {
            pages.add(&entry_of(e, Some(self.new_row[*r as usize]), id));
        }
        let (page_bytes, page_refs) = pages.finish();
        blocks.push(w.block(BlockKind::IdPages, &page_bytes, tmp)?);
        drop(page_bytes);
        let payloads = src.read_block(BlockKind::Payloads)?;
        blocks.push(w.block(BlockKind::Payloads, &payloads, tmp)?);
        drop(payloads);
        let gathered: Vec<u64> = order.iter().map(|&r| self.seqs[r]).collect();
        blocks.push(w.block(BlockKind::Seqs, bytemuck::cast_slice(&gathered), tmp)?);
        let mut words = vec![0u64; order.len().div_ceil(64)];
        for (p, &r) in order.iter().enumerate() {
            if crate::shadows::bit(self.tombs, r as u64) {
                words[p / 64] |= 1 << (p % 64);
            }
        }
        blocks.push(w.block(BlockKind::Tombstones, bytemuck::cast_slice(&words), tmp)?);
        let gathered: Vec<u32> = order.iter().map(|&r| self.entry_of_src[r]).collect();
        blocks.push(w.block(BlockKind::RowEntries, bytemuck::cast_slice(&gathered), tmp)?);
        drop(gathered);
        w.out.flush().map_err(io_error(tmp))?;
        w.out.get_ref().sync_data().map_err(io_error(tmp))?;
        let entry_pages = self
            .offsets
            .windows(2)
            .map(|c| {
                let rows = &order[c[0] as usize..c[1] as usize];
                let (mut encoded, mut ends) = (Vec::new(), Vec::with_capacity(rows.len()));
                for &r in rows {
                    let (_, entry, id) = &self.entries[self.entry_of_src[r] as usize];
                    entry_of(entry, None, id).encode(&mut encoded);
                    ends.push(encoded.len() as u32);
                }
                let mut page = Vec::with_capacity(4 + ends.len() * 4 + encoded.len());
                format::encode_page(&ends, &encoded, &mut page);
                page
            })
            .collect();
        Ok(RowBlocks {
            blocks,
            row_crcs,
            entry_pages,
            page_refs,
        })
    }
}
