//! Reads a segment through any [`RangeSource`].
//!
//! Opening reads only the tail of the file (trailer + footer, which carries the id-page fences).
//! Everything else is fetched on demand: a point lookup reads one id page, one vector and one
//! payload range, each checked against its own CRC32C; search reads whole blocks, each checked
//! against the block CRC32C in the footer. Verified blocks of a stable source (a local file) are
//! kept as zero-copy slices of the mapping, so nothing is copied into the heap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use barq_core::{Error, Result};
use bytes::Bytes;

use super::SegmentError;
use super::format::{self, BlockKind, Entry, Footer, Page, TRAILER_LEN};
use super::source::RangeSource;

/// The key under which a remote source keeps a segment's footer and trailer.
const KEPT_TAIL: &str = "tail";
/// Blocks a remote source keeps beside the footer: what each query of an indexed segment needs
/// before its cluster extents.
const KEPT_BLOCKS: [BlockKind; 4] = [
    BlockKind::IndexHead,
    BlockKind::Tombstones,
    BlockKind::RowEntries,
    BlockKind::FilterHead,
];

/// Ranged reads one batch of re-rank rows is coalesced into, at most: each costs a request,
/// while the bytes between rows it reads with them are cheap next to a round trip.
const RERANK_RANGES: usize = 16;

/// Payload index parts that share a ranged read when at most this many bytes lie between them.
const PART_GAP_BYTES: u64 = 16 * 1024;

/// Rows of a spread read (exact distances over a filter's few matches) that share a range when
/// at most this many rows lie between them.
const SPREAD_GAP_ROWS: u64 = 4;

/// Row spans covering the ascending `rows` in at most `max` spans: adjacent rows share a span,
/// then the smallest gaps are closed until `max` remain.
pub(crate) fn coalesce(rows: &[u64], max: usize) -> Vec<std::ops::Range<u64>> {
    let mut spans: Vec<std::ops::Range<u64>> = Vec::new();
    for &r in rows {
        match spans.last_mut() {
            Some(s) if r <= s.end => s.end = s.end.max(r + 1),
            _ => spans.push(r..r + 1),
        }
    }
    if spans.len() > max.max(1) {
        let mut gaps: Vec<(u64, usize)> = spans
            .windows(2)
            .enumerate()
            .map(|(i, w)| (w[1].start - w[0].end, i))
            .collect();
        gaps.sort_unstable();
        // Close the smallest gaps: gap i joins span i with span i + 1.
        let mut joins = vec![false; spans.len()];
        for &(_, i) in &gaps[..spans.len() - max.max(1)] {
            joins[i] = true;
        }
        let mut merged: Vec<std::ops::Range<u64>> = Vec::with_capacity(max);
        let mut joined = false;
        for (i, s) in spans.into_iter().enumerate() {
            match merged.last_mut() {
                Some(m) if joined => m.end = s.end,
                _ => merged.push(s),
            }
            joined = joins[i];
        }
        spans = merged;
    }
    spans
}

/// Why a tail did not give a footer.
enum TailError {
    Crc,
    Decode(Error),
}

/// The first read of a segment's tail; footers larger than this take a second read.
const TAIL_READ_BYTES: u64 = 64 * 1024;

/// A block of f32 or u64 values, zero-copy when the bytes are aligned.
#[derive(Debug)]
enum Values<T> {
    Mapped(Bytes),
    Owned(Vec<T>),
}

impl<T: bytemuck::Pod> Values<T> {
    fn new(bytes: Bytes) -> Values<T> {
        if bytemuck::try_cast_slice::<u8, T>(&bytes).is_ok() {
            Values::Mapped(bytes)
        } else {
            let n = bytes.len() / std::mem::size_of::<T>();
            let mut v = vec![T::zeroed(); n];
            bytemuck::cast_slice_mut::<T, u8>(&mut v)
                .copy_from_slice(&bytes[..n * std::mem::size_of::<T>()]);
            Values::Owned(v)
        }
    }

    fn as_slice(&self) -> &[T] {
        match self {
            Values::Mapped(b) => bytemuck::try_cast_slice(b).unwrap_or(&[]),
            Values::Owned(v) => v,
        }
    }
}

/// A verified block of values, cheap to clone; derefs to a slice.
#[derive(Debug)]
pub struct Block<T>(Arc<Values<T>>);

impl<T> Clone for Block<T> {
    fn clone(&self) -> Self {
        Block(Arc::clone(&self.0))
    }
}

impl<T: bytemuck::Pod> std::ops::Deref for Block<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.0.as_slice()
    }
}

/// What a point lookup found in one segment.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The id is not in this segment.
    Absent,
    /// The id's row here is a tombstone.
    Deleted,
    /// The id's row: vector and serialized payload.
    Found {
        /// The vector.
        vector: Vec<f32>,
        /// The serialized JSON payload.
        payload: Option<Bytes>,
    },
}

/// An open segment.
#[derive(Debug)]
pub struct Segment {
    source: Arc<dyn RangeSource>,
    footer: Footer,
    vectors: OnceLock<Block<f32>>,
    norms: OnceLock<Block<f32>>,
    tombstones: OnceLock<Block<u64>>,
    row_entries: OnceLock<Block<u32>>,
    index: OnceLock<Arc<super::SegmentIndex>>,
    filter: OnceLock<Option<Arc<super::FilterIndex>>>,
    id_pages: OnceLock<Bytes>,
    payloads: OnceLock<Bytes>,
    page_verified: Box<[AtomicBool]>,
    /// For a stable source: which cluster extents were verified already.
    extent_verified: OnceLock<Box<[AtomicBool]>>,
}

impl Segment {
    /// Open a segment: one read of the file's tail (two when the footer is unusually large).
    pub fn open(source: Arc<dyn RangeSource>) -> Result<Segment> {
        let len = source.len();
        let what = source.describe();
        let corrupt = |detail: String, cause: Option<SegmentError>| -> Error {
            SegmentError::Corrupt {
                segment: what.clone(),
                detail,
                cause: cause.map(Box::new),
            }
            .into()
        };
        let ctx = |e: Error| match e.find_source::<SegmentError>() {
            Some(SegmentError::UnsupportedVersion { found, supported }) => corrupt(
                e.message().to_owned(),
                Some(SegmentError::UnsupportedVersion {
                    found: *found,
                    supported: *supported,
                }),
            ),
            _ => corrupt(e.message().to_owned(), None),
        };
        if len < format::HEADER_LEN + TRAILER_LEN {
            return Err(corrupt(
                format!("{len} bytes, too short to be a segment"),
                None,
            ));
        }
        // A remote source may keep the footer of an earlier open (checked again here).
        if let Some(kept) = source.kept(KEPT_TAIL)
            && let Ok((footer, _)) = Self::footer_of_tail(&kept, len)
        {
            return Ok(Segment::with_footer(source, footer));
        }
        let tail_start = len.saturating_sub(TAIL_READ_BYTES);
        let mut tail = source.read(tail_start..len)?;
        let (footer_len, _) =
            format::decode_trailer(&tail[tail.len() - TRAILER_LEN as usize..]).map_err(ctx)?;
        let need = u64::from(footer_len) + TRAILER_LEN;
        if need > len {
            return Err(corrupt(
                format!("footer length {footer_len} exceeds the file"),
                None,
            ));
        }
        if len - need < tail_start {
            tail = source.read(len - need..len)?;
        }
        let (footer, off) = Self::footer_of_tail(&tail, len).map_err(|e| match e {
            TailError::Crc => corrupt("footer checksum mismatch".into(), None),
            TailError::Decode(e) => ctx(e),
        })?;
        source.keep(KEPT_TAIL, &tail[off..]);
        Ok(Segment::with_footer(source, footer))
    }

    /// The footer in `tail`, the last bytes of a file of `len` bytes (at least the footer and
    /// the trailer), checked against its checksum; and where in `tail` the footer starts.
    fn footer_of_tail(tail: &[u8], len: u64) -> std::result::Result<(Footer, usize), TailError> {
        let trailer = tail
            .len()
            .checked_sub(TRAILER_LEN as usize)
            .ok_or_else(|| TailError::Decode(Error::corruption("tail shorter than the trailer")))?;
        let (footer_len, footer_crc) =
            format::decode_trailer(&tail[trailer..]).map_err(TailError::Decode)?;
        let off = trailer
            .checked_sub(footer_len as usize)
            .ok_or_else(|| TailError::Decode(Error::corruption("tail shorter than the footer")))?;
        let body = &tail[off..trailer];
        if crc32c::crc32c(body) != footer_crc {
            return Err(TailError::Crc);
        }
        Ok((Footer::decode(body, len).map_err(TailError::Decode)?, off))
    }

    /// Keep this segment's metadata — its footer, and the blocks of [`KEPT_BLOCKS`] it has — in
    /// `to`'s local store (see [`RangeSource::keep`]): at offload, from the local file, so that
    /// the first query of the cold copy starts with its cluster extents.
    pub fn keep_metadata_in(&self, to: &dyn RangeSource) -> Result<()> {
        let len = self.source.len();
        let trailer = self.source.read(len - TRAILER_LEN..len)?;
        let (footer_len, _) = format::decode_trailer(&trailer)?;
        let tail = self
            .source
            .read(len - TRAILER_LEN - u64::from(footer_len)..len)?;
        Self::footer_of_tail(&tail, len)
            .map_err(|_| self.corrupt("footer does not match its checksum"))?;
        to.keep(KEPT_TAIL, &tail);
        for kind in KEPT_BLOCKS {
            if self.footer.blocks.iter().any(|b| b.kind == kind) {
                to.keep(kind.name(), &self.read_block(kind)?);
            }
        }
        Ok(())
    }

    /// A segment whose footer was already read and checked (e.g. the same bytes in another
    /// place): no read at all.
    pub fn with_footer(source: Arc<dyn RangeSource>, footer: Footer) -> Segment {
        let page_verified = (0..footer.pages.len())
            .map(|_| AtomicBool::new(false))
            .collect();
        Segment {
            source,
            footer,
            vectors: OnceLock::new(),
            norms: OnceLock::new(),
            tombstones: OnceLock::new(),
            row_entries: OnceLock::new(),
            index: OnceLock::new(),
            filter: OnceLock::new(),
            id_pages: OnceLock::new(),
            payloads: OnceLock::new(),
            page_verified,
            extent_verified: OnceLock::new(),
        }
    }

    /// The decoded footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Rows, tombstones included.
    pub fn rows(&self) -> u64 {
        self.footer.rows
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.footer.dim as usize
    }

    /// The source the bytes come from.
    pub fn source(&self) -> &Arc<dyn RangeSource> {
        &self.source
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        SegmentError::Corrupt {
            segment: self.source.describe(),
            detail: what.to_string(),
            cause: None,
        }
        .into()
    }

    /// Read a whole block and check its CRC32C. The blocks of [`KEPT_BLOCKS`] are kept by a
    /// remote source across restarts.
    pub fn read_block(&self, kind: BlockKind) -> Result<Bytes> {
        let b = self.footer.block(kind)?;
        let kept = KEPT_BLOCKS.contains(&kind);
        if kept
            && let Some(bytes) = self.source.kept(kind.name())
            && bytes.len() as u64 == b.len
        {
            return Ok(bytes);
        }
        let bytes = self
            .source
            .read_verified(b.offset..b.offset + b.len, b.crc)
            .map_err(|e| self.context(e, format_args!("{} block", kind.name())))?;
        if kept {
            self.source.keep(kind.name(), &bytes);
        }
        Ok(bytes)
    }

    /// A corruption error from reading part of the segment, named after the segment and the
    /// part (the original stays in the source chain, see [`Error::find_source`]).
    fn context(&self, e: Error, what: std::fmt::Arguments<'_>) -> Error {
        if e.kind() == barq_core::ErrorKind::DataCorruption {
            let message = format!(
                "segment {}: {what}: {}",
                self.source.describe(),
                e.message()
            );
            Error::new(barq_core::ErrorKind::DataCorruption, message).with_source(e)
        } else {
            e
        }
    }

    /// A verified block: kept (zero-copy) for the segment's lifetime when the source is stable
    /// (a local file), read through the source (and its cache) each time otherwise, so that a
    /// cold segment never pins cache space beyond the query that uses it.
    fn block<T: bytemuck::Pod>(
        &self,
        cell: &OnceLock<Block<T>>,
        kind: BlockKind,
    ) -> Result<Block<T>> {
        if let Some(v) = cell.get() {
            return Ok(v.clone());
        }
        let block = Block(Arc::new(Values::new(self.read_block(kind)?)));
        if self.source.is_stable() {
            return Ok(cell.get_or_init(|| block).clone());
        }
        Ok(block)
    }

    /// All vectors, row-major (`rows × dim`), verified.
    pub fn vectors(&self) -> Result<Block<f32>> {
        let v = self.block(&self.vectors, BlockKind::Vectors)?;
        if v.len() as u64 != self.footer.rows * u64::from(self.footer.dim) {
            return Err(self.corrupt("vectors block has the wrong length"));
        }
        Ok(v)
    }

    /// One norm per row, verified.
    pub fn norms(&self) -> Result<Block<f32>> {
        let v = self.block(&self.norms, BlockKind::Norms)?;
        if v.len() as u64 != self.footer.rows {
            return Err(self.corrupt("norms block has the wrong length"));
        }
        Ok(v)
    }

    /// The tombstone bitmap (bit `r % 64` of word `r / 64`), verified.
    pub fn tombstones(&self) -> Result<Block<u64>> {
        let v = self.block(&self.tombstones, BlockKind::Tombstones)?;
        if (v.len() as u64) < self.footer.rows.div_ceil(64) {
            return Err(self.corrupt("tombstones block is too short"));
        }
        Ok(v)
    }

    /// One sequence number per row, verified.
    pub fn seqs(&self) -> Result<Vec<u64>> {
        let v: Values<u64> = Values::new(self.read_block(BlockKind::Seqs)?);
        if v.as_slice().len() as u64 != self.footer.rows {
            return Err(self.corrupt("seqs block has the wrong length"));
        }
        Ok(v.as_slice().to_vec())
    }

    /// Load and verify the whole id-page block (scans and merges read every page; for a remote
    /// source this is one request, and the pages are then served from its cache).
    pub fn load_id_pages(&self) -> Result<()> {
        self.load_bytes(&self.id_pages, BlockKind::IdPages)
    }

    /// Fetch and verify the id pages `pages` (distinct, ascending indices) ahead of their
    /// [`page_bytes`](Self::page_bytes) reads, for a merge that needs only some pages. For a
    /// source that is not stable (a cold segment) each run of adjacent pages is one ranged read,
    /// checked against the CRC32C of the run (combined from the pages' own checksums, so every
    /// byte of every page is checked) and kept by the source's cache, where the page reads then
    /// find it; asking for every page reads the whole block, as
    /// [`load_id_pages`](Self::load_id_pages) does. A stable source needs nothing ahead: each
    /// page is verified on its first read.
    pub fn load_id_pages_of(&self, pages: &[usize]) -> Result<()> {
        if pages.is_empty() || self.source.is_stable() || self.id_pages.get().is_some() {
            return Ok(());
        }
        if pages.len() == self.footer.pages.len() {
            return self.load_id_pages();
        }
        let block = self.footer.block(BlockKind::IdPages)?;
        // Runs of adjacent pages become one range each; the ranges are fetched together.
        let mut runs: Vec<(std::ops::Range<u64>, u32, usize, usize)> = Vec::new();
        let mut rest = pages;
        while let Some((&first, tail)) = rest.split_first() {
            rest = tail;
            let p = self
                .footer
                .pages
                .get(first)
                .ok_or_else(|| self.corrupt(format_args!("no id page {first}")))?;
            let (start, mut end, mut crc) =
                (p.offset, p.offset.saturating_add(u64::from(p.len)), p.crc);
            let mut last = first;
            while let Some((&next, tail)) = rest.split_first() {
                match self.footer.pages.get(next) {
                    Some(q) if next == last + 1 && q.offset == end => {
                        crc = crc32c::crc32c_combine(crc, q.crc, q.len as usize);
                        end = end.saturating_add(u64::from(q.len));
                        last = next;
                        rest = tail;
                    }
                    _ => break,
                }
            }
            if end > block.len {
                return Err(self.corrupt("id page lies past its block"));
            }
            runs.push((block.offset + start..block.offset + end, crc, first, last));
        }
        let ranges: Vec<_> = runs
            .iter()
            .map(|(r, crc, _, _)| (r.clone(), *crc))
            .collect();
        self.source.read_verified_many(&ranges).map_err(|e| {
            let (first, last) = (runs[0].2, runs[runs.len() - 1].3);
            self.context(e, format_args!("id pages {first}..={last}"))
        })?;
        Ok(())
    }

    /// Load and verify the whole payload block (used by merges).
    pub fn load_payloads(&self) -> Result<()> {
        self.load_bytes(&self.payloads, BlockKind::Payloads)
    }

    fn load_bytes(&self, cell: &OnceLock<Bytes>, kind: BlockKind) -> Result<()> {
        if cell.get().is_none() {
            let bytes = self.read_block(kind)?;
            if self.source.is_stable() {
                let _ = cell.set(bytes);
            }
        }
        Ok(())
    }

    /// Verify every block against its checksum.
    pub fn verify_all(&self) -> Result<()> {
        for b in &self.footer.blocks {
            self.read_block(b.kind)?;
        }
        Ok(())
    }

    /// The bytes of id page `i`, verified.
    pub(crate) fn page_bytes(&self, i: usize) -> Result<Bytes> {
        let p = &self.footer.pages[i];
        let (start, end) = (p.offset, p.offset + u64::from(p.len));
        if let Some(all) = self.id_pages.get() {
            return all
                .get(start as usize..end as usize)
                .map(|_| all.slice(start as usize..end as usize))
                .ok_or_else(|| self.corrupt("id page lies past its block"));
        }
        let block = self.footer.block(BlockKind::IdPages)?;
        if end > block.len {
            return Err(self.corrupt("id page lies past its block"));
        }
        let range = block.offset + start..block.offset + end;
        let stable = self.source.is_stable();
        if stable && self.page_verified[i].load(Ordering::Acquire) {
            return self.source.read(range);
        }
        let bytes = self
            .source
            .read_verified(range, p.crc)
            .map_err(|e| self.context(e, format_args!("id page {i}")))?;
        if stable {
            self.page_verified[i].store(true, Ordering::Release);
        }
        Ok(bytes)
    }

    /// The page that would hold `id`, if any.
    fn page_for_id(&self, id: &[u8]) -> Option<usize> {
        self.footer
            .pages
            .partition_point(|p| p.fence.as_slice() <= id)
            .checked_sub(1)
    }

    /// The rows of `ids` (`None` for an id not here); a remote source fetches the id pages they
    /// need in one parallel batch first.
    pub fn find_many(&self, ids: &[&[u8]]) -> Result<Vec<Option<u64>>> {
        let mut pages: Vec<usize> = ids.iter().filter_map(|id| self.page_for_id(id)).collect();
        pages.sort_unstable();
        pages.dedup();
        self.load_id_pages_of(&pages)?;
        ids.iter()
            .map(|id| Ok(self.find(id)?.map(|(row, _)| row)))
            .collect()
    }

    /// Parse an id page of this segment.
    pub(crate) fn parse_page<'b>(&self, bytes: &'b [u8]) -> Result<Page<'b>> {
        Page::parse(bytes, self.footer.version)
    }

    /// `true` when the segment carries an IVF index (format version 2, rows in cluster order).
    pub fn is_indexed(&self) -> bool {
        self.footer.version >= format::INDEXED_VERSION
    }

    /// The index head of a version 2 segment (read and verified once, then kept: it is what
    /// every query of the segment needs first); `None` for a version 1 segment.
    pub fn index(&self) -> Result<Option<Arc<super::SegmentIndex>>> {
        if !self.is_indexed() {
            return Ok(None);
        }
        if let Some(i) = self.index.get() {
            return Ok(Some(Arc::clone(i)));
        }
        let bytes = self.read_block(BlockKind::IndexHead)?;
        let index = super::SegmentIndex::decode(&bytes, &self.footer)
            .map_err(|e| self.context_corrupt(e, "index head"))?;
        Ok(Some(Arc::clone(self.index.get_or_init(|| Arc::new(index)))))
    }

    /// The payload index's head (read and verified once, then kept); `None` when the segment
    /// indexes no payload field.
    pub fn filter_index(&self) -> Result<Option<Arc<super::FilterIndex>>> {
        if let Some(f) = self.filter.get() {
            return Ok(f.clone());
        }
        let Some(data) = self
            .footer
            .blocks
            .iter()
            .find(|b| b.kind == BlockKind::FilterData)
            .copied()
        else {
            return Ok(self.filter.get_or_init(|| None).clone());
        };
        let bytes = self.read_block(BlockKind::FilterHead)?;
        let index = super::FilterIndex::decode(&bytes, &data)
            .map_err(|e| self.context_corrupt(e, "filter head"))?;
        Ok(self.filter.get_or_init(|| Some(Arc::new(index))).clone())
    }

    /// The payload index parts `parts`, each verified against its own checksum, by offset; a
    /// remote source fetches them in one parallel batch, parts at most [`PART_GAP_BYTES`]
    /// apart sharing a ranged read.
    pub fn filter_parts(&self, parts: &[super::filters::PartRef]) -> Result<super::filters::Parts> {
        let mut want: Vec<super::filters::PartRef> =
            parts.iter().copied().filter(|p| p.len > 0).collect();
        want.sort_unstable_by_key(|p| p.offset);
        want.dedup_by_key(|p| p.offset);
        let end = |p: &super::filters::PartRef| p.offset + u64::from(p.len);
        let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
        for p in &want {
            match ranges.last_mut() {
                Some(r) if p.offset <= r.end + PART_GAP_BYTES => r.end = r.end.max(end(p)),
                _ => ranges.push(p.offset..end(p)),
            }
        }
        let fetched = self
            .source
            .read_many_rechecked(&ranges)
            .map_err(|e| self.context(e, format_args!("filter parts")))?;
        let mut out = super::filters::Parts::with_capacity(want.len());
        let mut i = 0;
        for p in &want {
            while ranges[i].end < end(p) {
                i += 1;
            }
            let at = (p.offset - ranges[i].start) as usize;
            let bytes = fetched[i].slice(at..at + p.len as usize);
            if crc32c::crc32c(&bytes) != p.crc {
                self.source.forget_rechecked();
                return Err(SegmentError::Checksum {
                    segment: self.source.describe(),
                    start: p.offset,
                    end: end(p),
                }
                .into());
            }
            out.insert(p.offset, bytes);
        }
        Ok(out)
    }

    /// Call `f(row, id, payload)` for every row that is not a tombstone, in id order, with the
    /// whole PAYLOADS block read (and verified) once.
    pub fn for_each_payload(
        &self,
        mut f: impl FnMut(u64, &str, Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let payloads = match self.payloads.get() {
            Some(p) => p.clone(),
            None => self.read_block(BlockKind::Payloads)?,
        };
        self.for_each_entry(|row, e| {
            if e.is_tombstone() {
                return Ok(());
            }
            let id = std::str::from_utf8(e.id)
                .map_err(|_| self.corrupt(format_args!("the id of row {row} is not UTF-8")))?;
            let payload = if e.has_payload() {
                let (a, b) = (
                    e.payload_offset as usize,
                    e.payload_offset as usize + e.payload_len as usize,
                );
                Some(
                    payloads
                        .get(a..b)
                        .ok_or_else(|| self.corrupt("payload past the payloads block"))?,
                )
            } else {
                None
            };
            f(row, id, payload)
        })
    }

    /// The ids and payloads of `rows` (payloads fetched in one parallel batch from a remote
    /// source).
    pub fn payloads_of_rows(&self, rows: &[u64]) -> Result<Vec<(String, Option<Bytes>)>> {
        let located = rows
            .iter()
            .map(|&r| {
                self.with_entry(r, |e| {
                    (String::from_utf8(e.id.to_vec()), OwnedEntry::from(e))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let entries: Vec<OwnedEntry> = located.iter().map(|(_, e)| e.clone()).collect();
        self.load_payloads_of(&entries)?;
        located
            .into_iter()
            .map(|(id, e)| {
                let id = id.map_err(|_| self.corrupt("a segment id is not UTF-8"))?;
                Ok((id, self.payload_of(&e)?))
            })
            .collect()
    }

    /// The index head if it was read already (no I/O).
    pub fn loaded_index(&self) -> Option<Arc<super::SegmentIndex>> {
        self.index.get().cloned()
    }

    /// Bytes of the index: its head, cluster extents and row map (0 without one).
    pub fn index_bytes(&self) -> u64 {
        self.footer
            .blocks
            .iter()
            .filter(|b| {
                matches!(
                    b.kind,
                    BlockKind::IndexHead | BlockKind::Clusters | BlockKind::RowEntries
                )
            })
            .map(|b| b.len)
            .sum()
    }

    /// The extents of `clusters`, each verified against its own checksum; a remote source
    /// fetches them in one parallel batch.
    pub fn cluster_extents(&self, clusters: &[u32]) -> Result<Vec<Bytes>> {
        let index = self
            .index()?
            .ok_or_else(|| Error::invalid("the segment has no index"))?;
        let ranges = clusters
            .iter()
            .map(|&c| {
                let e = index
                    .extents
                    .get(c as usize)
                    .ok_or_else(|| self.corrupt(format_args!("no cluster {c}")))?;
                Ok((e.offset..e.offset + e.len, e.crc))
            })
            .collect::<Result<Vec<_>>>()?;
        if self.source.is_stable() {
            // A local file's extents are checked once, at their first read, like its id pages.
            let verified = self.extent_verified.get_or_init(|| {
                (0..index.extents.len())
                    .map(|_| AtomicBool::new(false))
                    .collect()
            });
            return clusters
                .iter()
                .zip(ranges)
                .map(|(&c, (range, crc))| {
                    let flag = &verified[c as usize];
                    if flag.load(Ordering::Acquire) {
                        return self.source.read(range);
                    }
                    let bytes = self
                        .source
                        .read_verified(range, crc)
                        .map_err(|e| self.context(e, format_args!("cluster extents")))?;
                    flag.store(true, Ordering::Release);
                    Ok(bytes)
                })
                .collect();
        }
        self.source
            .read_verified_many(&ranges)
            .map_err(|e| self.context(e, format_args!("cluster extents")))
    }

    /// The f32 vectors of `rows`, each checked against its CRC32C (from the cluster extents of
    /// an indexed segment); a remote source fetches them in one parallel batch. From the kept
    /// VECTORS block when it is loaded.
    pub fn vectors_of_rows(&self, rows: &[(u64, u32)]) -> Result<Vec<Vec<f32>>> {
        let dim = u64::from(self.footer.dim);
        if let Some(all) = self.vectors.get() {
            return rows
                .iter()
                .map(|(r, _)| {
                    all.get((r * dim) as usize..((r + 1) * dim) as usize)
                        .map(<[f32]>::to_vec)
                        .ok_or_else(|| self.corrupt("row past the vectors block"))
                })
                .collect();
        }
        let block = self.footer.block(BlockKind::Vectors)?;
        let row_bytes = dim * 4;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_unstable_by_key(|&i| rows[i].0);
        if let Some(&last) = order.last()
            && (rows[last].0 + 1) * row_bytes > block.len
        {
            return Err(self.corrupt("row past the vectors block"));
        }
        let sorted: Vec<u64> = order.iter().map(|&i| rows[i].0).collect();
        let mut spans = coalesce(&sorted, RERANK_RANGES);
        // Rows spread over many clusters (a filtered search's candidates): rather than reading
        // the gaps between them, one range per run of close rows.
        let covered: u64 = spans.iter().map(|s| s.end - s.start).sum();
        if covered > 8 * rows.len() as u64 + 256 {
            spans = coalesce(&sorted, usize::MAX);
            let mut joined: Vec<std::ops::Range<u64>> = Vec::with_capacity(spans.len());
            for s in spans {
                match joined.last_mut() {
                    Some(j) if s.start <= j.end + SPREAD_GAP_ROWS => j.end = s.end,
                    _ => joined.push(s),
                }
            }
            spans = joined;
        }
        self.vectors_in_spans(rows, &order, &spans)
    }

    /// The f32 vectors of `rows` of an indexed segment, each checked against its CRC32C, for a
    /// search that computes exact distances over a few scattered rows, in one parallel batch of
    /// ranged reads: per cluster holding rows, one range from the CRC of its first row to the
    /// end of its extent's entry table (format 3), and the vectors, adjacent rows (at most
    /// [`SPREAD_GAP_ROWS`] apart) sharing a range. The entry tables let
    /// [`Segment::spread_entries`] read the entries of the few rows that become hits without
    /// the id pages. From the kept VECTORS block when it is loaded.
    pub fn vectors_of_spread_rows(&self, rows: &[u64]) -> Result<SpreadRows> {
        let index = self
            .index()?
            .ok_or_else(|| Error::invalid("the segment has no index"))?;
        let mut sorted = rows.to_vec();
        sorted.sort_unstable();
        // Per cluster holding rows: its first and last row among them.
        let mut groups: Vec<(u32, u64, u64)> = Vec::new();
        for &r in &sorted {
            let c = index
                .cluster_of(r)
                .ok_or_else(|| self.corrupt(format_args!("row {r} is in no cluster")))?;
            match groups.last_mut() {
                Some((gc, _, last)) if *gc == c => *last = r,
                _ => groups.push((c, r, r)),
            }
        }
        let mut ranges: Vec<std::ops::Range<u64>> = groups
            .iter()
            .map(|&(c, first, last)| {
                let at = index.crc_offset(c, first);
                let end = match index.entry_table(c) {
                    Some(table) => table.end,
                    None => at + (last - first + 1) * 4,
                };
                at..end
            })
            .collect();
        let block = self.footer.block(BlockKind::Vectors)?;
        let row_bytes = u64::from(self.footer.dim) * 4;
        let mut spans: Vec<std::ops::Range<u64>> = Vec::new();
        if self.vectors.get().is_none() {
            for &r in &sorted {
                match spans.last_mut() {
                    Some(s) if r <= s.end + SPREAD_GAP_ROWS => s.end = s.end.max(r + 1),
                    _ => spans.push(r..r + 1),
                }
            }
            if let Some(last) = spans.last()
                && last.end * row_bytes > block.len
            {
                return Err(self.corrupt("row past the vectors block"));
            }
        }
        ranges.extend(
            spans
                .iter()
                .map(|s| block.offset + s.start * row_bytes..block.offset + s.end * row_bytes),
        );
        let mut fetched = self
            .source
            .read_many_rechecked(&ranges)
            .map_err(|e| self.context(e, format_args!("matching rows")))?;
        let vector_bytes = fetched.split_off(groups.len());
        let mut crc_of: std::collections::HashMap<u64, u32> = Default::default();
        let mut tables = std::collections::HashMap::new();
        for (&(c, first, last), (b, range)) in groups.iter().zip(fetched.iter().zip(&ranges)) {
            for r in first..=last {
                let at = ((r - first) * 4) as usize;
                let w = b
                    .get(at..at + 4)
                    .ok_or_else(|| self.corrupt("vector checksums are truncated"))?;
                crc_of.insert(r, u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
            }
            if let Some(table) = index.entry_table(c) {
                let from = (table.start - range.start) as usize;
                tables.insert(c, b.slice(from..b.len()));
            }
        }
        let with_crc: Vec<(u64, u32)> = rows.iter().map(|r| (*r, crc_of[r])).collect();
        let vectors = if self.vectors.get().is_some() {
            self.vectors_of_rows(&with_crc)?
        } else {
            let mut order: Vec<usize> = (0..rows.len()).collect();
            order.sort_unstable_by_key(|&i| rows[i]);
            self.check_spans(
                &with_crc,
                &order,
                &spans,
                &vector_bytes,
                &ranges[groups.len()..],
            )?
        };
        Ok(SpreadRows {
            vectors,
            crcs: crc_of,
            tables,
        })
    }

    /// The ids and entries of `rows` (all among those of `spread`), read from their clusters'
    /// extents in one parallel batch, each entry checked to name its row's vector (its vector
    /// CRC32C is the row's) and its id to lie between the fences of the id page that holds the
    /// row's entry. `None` when the extents carry no entries (format 2).
    pub fn spread_entries(
        &self,
        spread: &SpreadRows,
        rows: &[u64],
    ) -> Result<Option<Vec<(String, OwnedEntry)>>> {
        let index = self
            .index()?
            .ok_or_else(|| Error::invalid("the segment has no index"))?;
        if !index.extent_entries || rows.is_empty() {
            return Ok(None);
        }
        let mut ranges = Vec::with_capacity(rows.len());
        for &r in rows {
            let c = index
                .cluster_of(r)
                .ok_or_else(|| self.corrupt(format_args!("row {r} is in no cluster")))?;
            let (table, bytes) = match (index.entry_table(c), spread.tables.get(&c)) {
                (Some(t), Some(b)) => (t, b),
                _ => {
                    return Err(Error::internal(
                        "an entry of a row the spread read did not cover",
                    ));
                }
            };
            let i = (r - index.cluster_rows(c).start) as usize;
            let end_at = |j: usize| -> Result<u64> {
                let w = bytes
                    .get(4 + j * 4..8 + j * 4)
                    .ok_or_else(|| self.corrupt("an entry table is truncated"))?;
                Ok(u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            };
            let start = if i == 0 { 0 } else { end_at(i - 1)? };
            let end = end_at(i)?;
            if end < start || end - start > 1 << 16 {
                return Err(self.corrupt(format_args!("the entry of row {r} has a bad length")));
            }
            ranges.push(table.end + start..table.end + end);
        }
        let fetched = self
            .source
            .read_many_rechecked(&ranges)
            .map_err(|e| self.context(e, format_args!("entries of matching rows")))?;
        let mut out = Vec::with_capacity(rows.len());
        for (&r, bytes) in rows.iter().zip(&fetched) {
            // A one-entry page around the bytes, parsed as a page of the extents' entries.
            let mut page = Vec::with_capacity(8 + bytes.len());
            format::encode_page(&[bytes.len() as u32], bytes, &mut page);
            let parsed = Page::parse(&page, format::PLAIN_VERSION)?;
            let e = parsed.entry(0)?;
            if Some(&e.vector_crc) != spread.crcs.get(&r) {
                self.source.forget_rechecked();
                return Err(self.corrupt(format_args!(
                    "the entry of row {r} in its cluster extent names another vector"
                )));
            }
            let id = String::from_utf8(e.id.to_vec())
                .map_err(|_| self.corrupt(format_args!("the id of row {r} is not UTF-8")))?;
            // The id must fall between the fences of the id page that holds the row's entry
            // (footer and ROW_ENTRIES, both verified).
            let page = self.page_for_row(r)?;
            let pages = &self.footer.pages;
            if e.id < pages[page].fence.as_slice()
                || pages
                    .get(page + 1)
                    .is_some_and(|next| e.id >= next.fence.as_slice())
            {
                self.source.forget_rechecked();
                return Err(self.corrupt(format_args!(
                    "the id of row {r} in its cluster extent lies outside its id page"
                )));
            }
            out.push((id, OwnedEntry::from(&e)));
        }
        Ok(Some(out))
    }

    /// The vectors of `rows` (`order`: their indexes by ascending row) read as the row `spans`
    /// covering them, each checked against its CRC32C.
    fn vectors_in_spans(
        &self,
        rows: &[(u64, u32)],
        order: &[usize],
        spans: &[std::ops::Range<u64>],
    ) -> Result<Vec<Vec<f32>>> {
        let block = self.footer.block(BlockKind::Vectors)?;
        let row_bytes = u64::from(self.footer.dim) * 4;
        let ranges: Vec<_> = spans
            .iter()
            .map(|s| block.offset + s.start * row_bytes..block.offset + s.end * row_bytes)
            .collect();
        let fetched = self
            .source
            .read_many_rechecked(&ranges)
            .map_err(|e| self.context(e, format_args!("re-rank vectors")))?;
        self.check_spans(rows, order, spans, &fetched, &ranges)
    }

    /// The vectors of `rows` out of the `fetched` bytes of row `spans` (at file `ranges`), each
    /// checked against its CRC32C.
    fn check_spans(
        &self,
        rows: &[(u64, u32)],
        order: &[usize],
        spans: &[std::ops::Range<u64>],
        fetched: &[Bytes],
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<Vec<f32>>> {
        let row_bytes = u64::from(self.footer.dim) * 4;
        let mut out = vec![Vec::new(); rows.len()];
        let mut span = 0;
        for &i in order {
            let (row, crc) = rows[i];
            while spans[span].end <= row {
                span += 1;
            }
            let at = ((row - spans[span].start) * row_bytes) as usize;
            let bytes = fetched[span].slice(at..at + row_bytes as usize);
            if crc32c::crc32c(&bytes) != crc {
                self.source.forget_rechecked();
                return Err(SegmentError::Checksum {
                    segment: self.source.describe(),
                    start: ranges[span].start + at as u64,
                    end: ranges[span].start + at as u64 + row_bytes,
                }
                .into());
            }
            out[i] = Values::<f32>::new(bytes).as_slice().to_vec();
        }
        Ok(out)
    }

    /// A decode error of part of the segment as a corruption error naming the segment.
    fn context_corrupt(&self, e: Error, what: &str) -> Error {
        SegmentError::Corrupt {
            segment: self.source.describe(),
            detail: format!("{what}: {}", e.message()),
            cause: None,
        }
        .into()
    }

    /// The entry (rank in id order) of `row`: the row itself in version 1, where rows are in id
    /// order; read from the ROW_ENTRIES block in version 2.
    pub(crate) fn entry_of_row(&self, row: u64) -> Result<u64> {
        if !self.is_indexed() {
            return Ok(row);
        }
        let map = self.block(&self.row_entries, BlockKind::RowEntries)?;
        if map.len() as u64 != self.footer.rows {
            return Err(self.corrupt("row entries block has the wrong length"));
        }
        map.get(row as usize)
            .map(|e| u64::from(*e))
            .ok_or_else(|| self.corrupt(format_args!("no entry for row {row}")))
    }

    /// The row of entry `i` of a page whose first entry is `first`.
    fn row_of(&self, first: u64, i: usize, e: &Entry<'_>) -> u64 {
        e.row.map_or(first + i as u64, u64::from)
    }

    /// The index of the id page that holds `row`.
    pub(crate) fn page_for_row(&self, row: u64) -> Result<usize> {
        self.page_for_entry(self.entry_of_row(row)?)
    }

    /// The index of the id page that holds entry `entry`.
    fn page_for_entry(&self, entry: u64) -> Result<usize> {
        self.footer
            .pages
            .partition_point(|p| p.first_row <= entry)
            .checked_sub(1)
            .ok_or_else(|| self.corrupt(format_args!("no id page holds entry {entry}")))
    }

    /// Call `f(row, entry)` for the entry of `row`.
    pub fn with_entry<T>(&self, row: u64, f: impl FnOnce(&Entry<'_>) -> T) -> Result<T> {
        let entry = self.entry_of_row(row)?;
        let pi = self.page_for_entry(entry)?;
        let bytes = self.page_bytes(pi)?;
        let page = self.parse_page(&bytes)?;
        let e = page.entry((entry - self.footer.pages[pi].first_row) as usize)?;
        if self.row_of(entry, 0, &e) != row {
            return Err(self.corrupt(format_args!(
                "row {row} maps to entry {entry}, which names another row"
            )));
        }
        Ok(f(&e))
    }

    /// The id of `row`.
    pub fn id_of(&self, row: u64) -> Result<String> {
        self.with_entry(row, |e| String::from_utf8(e.id.to_vec()))?
            .map_err(|_| self.corrupt(format_args!("id of row {row} is not UTF-8")))
    }

    /// Find `id`: its row and a copy of its entry's fields.
    pub fn find(&self, id: &[u8]) -> Result<Option<(u64, OwnedEntry)>> {
        let Some(pi) = self.page_for_id(id) else {
            return Ok(None);
        };
        let bytes = self.page_bytes(pi)?;
        let page = self.parse_page(&bytes)?;
        match page.find(id)? {
            None => Ok(None),
            Some(i) => {
                let e = page.entry(i)?;
                let row = self.row_of(self.footer.pages[pi].first_row, i, &e);
                if row >= self.footer.rows {
                    return Err(self.corrupt(format_args!("entry names row {row}, past the end")));
                }
                Ok(Some((row, OwnedEntry::from(&e))))
            }
        }
    }

    /// The vector of `row`, checked against the entry's CRC.
    pub fn vector_of(&self, row: u64, entry: &OwnedEntry) -> Result<Vec<f32>> {
        let dim = u64::from(self.footer.dim);
        if let Some(all) = self.vectors.get() {
            let s: &[f32] = all;
            let (a, b) = ((row * dim) as usize, ((row + 1) * dim) as usize);
            return s
                .get(a..b)
                .map(<[f32]>::to_vec)
                .ok_or_else(|| self.corrupt("row past the vectors block"));
        }
        let block = self.footer.block(BlockKind::Vectors)?;
        let (a, b) = (row * dim * 4, (row + 1) * dim * 4);
        if b > block.len {
            return Err(self.corrupt("row past the vectors block"));
        }
        let bytes = self
            .source
            .read_verified(block.offset + a..block.offset + b, entry.vector_crc)
            .map_err(|e| self.context(e, format_args!("vector of row {row}")))?;
        Ok(Values::<f32>::new(bytes).as_slice().to_vec())
    }

    /// The serialized payload of an entry, checked against the entry's CRC.
    pub fn payload_of(&self, entry: &OwnedEntry) -> Result<Option<Bytes>> {
        if !entry.has_payload {
            return Ok(None);
        }
        let (a, b) = (
            entry.payload_offset,
            entry.payload_offset + u64::from(entry.payload_len),
        );
        if let Some(all) = self.payloads.get() {
            return all
                .get(a as usize..b as usize)
                .map(|_| Some(all.slice(a as usize..b as usize)))
                .ok_or_else(|| self.corrupt("payload past the payloads block"));
        }
        let bytes = self
            .source
            .read_verified(self.payload_range(entry)?, entry.payload_crc)
            .map_err(|e| self.context(e, format_args!("payload")))?;
        Ok(Some(bytes))
    }

    /// The file range of an entry's payload.
    fn payload_range(&self, entry: &OwnedEntry) -> Result<std::ops::Range<u64>> {
        let block = self.footer.block(BlockKind::Payloads)?;
        let (a, b) = (
            entry.payload_offset,
            entry
                .payload_offset
                .saturating_add(u64::from(entry.payload_len)),
        );
        if b > block.len {
            return Err(self.corrupt("payload past the payloads block"));
        }
        Ok(block.offset + a..block.offset + b)
    }

    /// Fetch and verify the payloads of `entries` ahead of their
    /// [`payload_of`](Self::payload_of) reads, in one parallel batch that the source's cache
    /// keeps (nothing for a stable source, whose reads cost no round trip).
    pub fn load_payloads_of(&self, entries: &[OwnedEntry]) -> Result<()> {
        if self.source.is_stable() || self.payloads.get().is_some() {
            return Ok(());
        }
        let ranges = entries
            .iter()
            .filter(|e| e.has_payload)
            .map(|e| Ok((self.payload_range(e)?, e.payload_crc)))
            .collect::<Result<Vec<_>>>()?;
        self.source
            .read_verified_many(&ranges)
            .map_err(|e| self.context(e, format_args!("payloads")))?;
        Ok(())
    }

    /// Point lookup of `id`.
    pub fn lookup(&self, id: &str) -> Result<Lookup> {
        let Some((row, entry)) = self.find(id.as_bytes())? else {
            return Ok(Lookup::Absent);
        };
        if entry.tombstone {
            return Ok(Lookup::Deleted);
        }
        let vector = self.vector_of(row, &entry)?;
        let payload = self.payload_of(&entry)?;
        Ok(Lookup::Found { vector, payload })
    }

    /// Call `f(row, entry)` for every entry in id order (loads the id pages).
    pub fn for_each_entry(&self, mut f: impl FnMut(u64, &Entry<'_>) -> Result<()>) -> Result<()> {
        self.load_id_pages()?;
        for (pi, p) in self.footer.pages.iter().enumerate() {
            let bytes = self.page_bytes(pi)?;
            let page = self.parse_page(&bytes)?;
            for i in 0..page.len() {
                let e = page.entry(i)?;
                f(self.row_of(p.first_row, i, &e), &e)?;
            }
        }
        Ok(())
    }
}

/// What [`Segment::vectors_of_spread_rows`] read: the rows' vectors, and what locates their
/// entries.
#[derive(Debug)]
pub struct SpreadRows {
    /// The vectors, in the order of the rows asked for.
    pub vectors: Vec<Vec<f32>>,
    crcs: std::collections::HashMap<u64, u32>,
    tables: std::collections::HashMap<u32, Bytes>,
}

/// The fields of an id-page entry, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedEntry {
    /// The row is a tombstone.
    pub tombstone: bool,
    /// The row has a payload.
    pub has_payload: bool,
    /// Offset inside the PAYLOADS block.
    pub payload_offset: u64,
    /// Payload length.
    pub payload_len: u32,
    /// CRC32C of the row's vector bytes.
    pub vector_crc: u32,
    /// CRC32C of the payload.
    pub payload_crc: u32,
}

impl From<&Entry<'_>> for OwnedEntry {
    fn from(e: &Entry<'_>) -> Self {
        OwnedEntry {
            tombstone: e.is_tombstone(),
            has_payload: e.has_payload(),
            payload_offset: e.payload_offset,
            payload_len: e.payload_len,
            vector_crc: e.vector_crc,
            payload_crc: e.payload_crc,
        }
    }
}
