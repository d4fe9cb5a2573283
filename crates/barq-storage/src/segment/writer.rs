//! Writes one segment file from rows given in increasing id order.
//!
//! The vectors block is streamed to the file as rows arrive; payloads are spooled to a side file
//! so that memory stays proportional to the ids, not the data. `finish` writes the remaining
//! blocks, the footer and the trailer, then makes the file durable: fsync → rename from `*.tmp`
//! → fsync the directory. Dropping an unfinished writer removes its temporary files.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use barq_core::{Error, Metric, Result};

use super::SegmentError;
use super::format::{
    self, BlockKind, BlockRef, Entry, FLAG_PAYLOAD, FLAG_TOMBSTONE, Footer, HEADER_LEN, MAGIC,
    PAGE_TARGET_BYTES, PLAIN_VERSION, PageRef,
};
use crate::fsutil;

#[cfg(target_endian = "big")]
compile_error!("Barq DB segment files are little-endian and are memory-mapped as-is");

/// One row to write. `vector` is `None` for a tombstone.
#[derive(Debug, Clone, Copy)]
pub struct RowInput<'a> {
    /// The document id.
    pub id: &'a [u8],
    /// Sequence number of this version.
    pub seq: u64,
    /// The vector, or `None` for a tombstone.
    pub vector: Option<&'a [f32]>,
    /// The serialized JSON payload.
    pub payload: Option<&'a [u8]>,
    /// The vector's Euclidean norm if the caller already has it (computed otherwise).
    pub norm: Option<f32>,
}

/// What a finished segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// File size.
    pub size_bytes: u64,
    /// Rows, tombstones included.
    pub rows: u64,
    /// Tombstone rows.
    pub tombstones: u64,
    /// Smallest sequence number.
    pub min_seq: u64,
    /// Largest sequence number.
    pub max_seq: u64,
    /// Seal time.
    pub created_at_ms: u64,
    /// CRC32C of the whole file.
    pub crc: u32,
}

/// A buffered file writer that tracks its position and the CRC32C of everything written.
pub(super) struct CrcWriter {
    pub(super) out: BufWriter<File>,
    pub(super) pos: u64,
    pub(super) crc: u32,
}

impl CrcWriter {
    /// Create `path` (truncating it) and write the header of format `version`, padded.
    pub(super) fn create(path: &Path, version: u32) -> Result<CrcWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::from(SegmentError::io("create", path)(e)))?;
        let mut w = CrcWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            crc: 0,
        };
        let mut header = [0u8; HEADER_LEN as usize];
        header[0..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&version.to_le_bytes());
        w.write(&header).and_then(|()| w.pad()).map_err(io(path))?;
        Ok(w)
    }

    /// Write a whole block at the next aligned offset.
    pub(super) fn block(&mut self, kind: BlockKind, bytes: &[u8], path: &Path) -> Result<BlockRef> {
        self.pad().map_err(io(path))?;
        let offset = self.pos;
        self.write(bytes).map_err(io(path))?;
        Ok(BlockRef {
            kind,
            crc: crc32c::crc32c(bytes),
            offset,
            len: bytes.len() as u64,
        })
    }

    /// Write the footer and trailer, fsync, rename `tmp` to `final_path` and fsync its
    /// directory. A scratch file (`durable` false) is only renamed.
    pub(super) fn seal(
        &mut self,
        footer: &Footer,
        tmp: &Path,
        final_path: &Path,
        durable: bool,
    ) -> Result<(u64, u32)> {
        let body = footer.encode();
        self.write(&body).map_err(io(tmp))?;
        self.write(&format::encode_trailer(&body))
            .map_err(io(tmp))?;
        self.out.flush().map_err(io(tmp))?;
        if durable {
            self.out.get_ref().sync_all().map_err(io(tmp))?;
        }
        fs::rename(tmp, final_path).map_err(io(final_path))?;
        if durable {
            fsutil::fsync_dir(final_path.parent().unwrap_or(Path::new(".")))?;
        }
        Ok((self.pos, self.crc))
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.pos += bytes.len() as u64;
        Ok(())
    }

    pub(super) fn pad(&mut self) -> std::io::Result<()> {
        let zeros = [0u8; format::BLOCK_ALIGN as usize];
        let n = (format::align_up(self.pos) - self.pos) as usize;
        self.write(&zeros[..n])
    }
}

/// Builds the ID_PAGES block from entries given in id order.
#[derive(Debug, Default)]
pub(super) struct PageBuilder {
    pages: Vec<u8>,
    refs: Vec<PageRef>,
    entries: Vec<u8>,
    ends: Vec<u32>,
    first: u64,
    fence: Vec<u8>,
    count: u64,
}

impl PageBuilder {
    /// Append the next entry (ids strictly increasing).
    pub(super) fn add(&mut self, e: &Entry<'_>) {
        if self.ends.is_empty() {
            self.first = self.count;
            self.fence = e.id.to_vec();
        }
        e.encode(&mut self.entries);
        self.ends.push(self.entries.len() as u32);
        self.count += 1;
        if self.entries.len() >= PAGE_TARGET_BYTES {
            self.seal();
        }
    }

    fn seal(&mut self) {
        if self.ends.is_empty() {
            return;
        }
        let start = self.pages.len();
        super::format::encode_page(&self.ends, &self.entries, &mut self.pages);
        let page = &self.pages[start..];
        self.refs.push(PageRef {
            first_row: self.first,
            offset: start as u64,
            len: page.len() as u32,
            crc: crc32c::crc32c(page),
            fence: std::mem::take(&mut self.fence),
        });
        self.entries.clear();
        self.ends.clear();
    }

    /// The block's bytes and the page directory.
    pub(super) fn finish(mut self) -> (Vec<u8>, Vec<PageRef>) {
        self.seal();
        (self.pages, self.refs)
    }
}

/// Builds one segment file.
pub struct SegmentWriter {
    final_path: PathBuf,
    tmp_path: PathBuf,
    spool_path: PathBuf,
    w: CrcWriter,
    spool: BufWriter<File>,
    spool_len: u64,
    spool_crc: u32,
    dim: usize,
    metric: Metric,
    vectors_start: u64,
    vectors_crc: u32,
    norms: Vec<f32>,
    seqs: Vec<u64>,
    tombstones: Vec<u64>,
    tombstone_count: u64,
    pages: PageBuilder,
    last_id: Option<Vec<u8>>,
    rows: u64,
    min_seq: u64,
    max_seq: u64,
    zeros: Vec<f32>,
    durable: bool,
    finished: bool,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("path", &self.final_path)
            .field("rows", &self.rows)
            .finish()
    }
}

pub(super) fn io_error(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    io(path)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| {
        SegmentError::Io {
            op: "write segment",
            path: path.to_owned(),
            source,
        }
        .into()
    }
}

impl SegmentWriter {
    /// Start a segment that will be renamed to `final_path` by [`SegmentWriter::finish`].
    pub fn create(final_path: &Path, dim: u32, metric: Metric) -> Result<SegmentWriter> {
        let tmp_path = fsutil::tmp_path(final_path);
        let mut spool_os = final_path.as_os_str().to_owned();
        spool_os.push(".payloads");
        let spool_path = fsutil::tmp_path(Path::new(&spool_os));
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)
                .map_err(|e| Error::from(SegmentError::io("create", p)(e)))
        };
        let spool = open(&spool_path)?;
        let w = CrcWriter::create(&tmp_path, PLAIN_VERSION)?;
        let vectors_start = w.pos;
        Ok(SegmentWriter {
            final_path: final_path.to_owned(),
            tmp_path,
            spool_path,
            w,
            spool: BufWriter::with_capacity(1 << 20, spool),
            spool_len: 0,
            spool_crc: 0,
            dim: dim as usize,
            metric,
            vectors_start,
            vectors_crc: 0,
            norms: Vec::new(),
            seqs: Vec::new(),
            tombstones: Vec::new(),
            tombstone_count: 0,
            pages: PageBuilder::default(),
            last_id: None,
            rows: 0,
            min_seq: u64::MAX,
            max_seq: 0,
            zeros: vec![0.0; dim as usize],
            durable: true,
            finished: false,
        })
    }

    /// Make this a scratch segment: `finish` renames it into place without fsyncing it. For a
    /// file that is read back once and deleted (compaction's staging copy of an output it then
    /// indexes), which a crash leaves as a `*.tmp` name swept at open.
    pub fn scratch(mut self) -> SegmentWriter {
        self.durable = false;
        self
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Append a row; ids must strictly increase.
    pub fn push(&mut self, row: RowInput<'_>) -> Result<()> {
        if self.last_id.as_deref().is_some_and(|last| last >= row.id) {
            return Err(SegmentError::BadRow(
                "segment rows must be pushed in strictly increasing id order".into(),
            )
            .into());
        }
        let vector = match row.vector {
            Some(v) if v.len() != self.dim => {
                return Err(SegmentError::BadRow(format!(
                    "segment row has {} dims, expected {}",
                    v.len(),
                    self.dim
                ))
                .into());
            }
            Some(v) => v,
            None => &self.zeros[..],
        };
        let vbytes: &[u8] = bytemuck::cast_slice(vector);
        let vector_crc = crc32c::crc32c(vbytes);
        self.vectors_crc = crc32c::crc32c_append(self.vectors_crc, vbytes);
        self.w.write(vbytes).map_err(io(&self.tmp_path))?;
        self.norms.push(
            row.norm
                .filter(|_| row.vector.is_some())
                .unwrap_or_else(|| barq_core::norm(vector)),
        );

        let row_idx = self.rows;
        if row_idx.is_multiple_of(64) {
            self.tombstones.push(0);
        }
        let mut flags = 0u8;
        if row.vector.is_none() {
            flags |= FLAG_TOMBSTONE;
            self.tombstone_count += 1;
            if let Some(word) = self.tombstones.last_mut() {
                *word |= 1 << (row_idx % 64);
            }
        }
        let (payload_offset, payload_len, payload_crc) = match row.payload {
            Some(p) if row.vector.is_some() => {
                flags |= FLAG_PAYLOAD;
                let off = self.spool_len;
                self.spool.write_all(p).map_err(io(&self.spool_path))?;
                self.spool_crc = crc32c::crc32c_append(self.spool_crc, p);
                self.spool_len += p.len() as u64;
                (off, p.len() as u32, crc32c::crc32c(p))
            }
            _ => (0, 0, 0),
        };
        self.pages.add(&Entry {
            flags,
            payload_offset,
            payload_len,
            vector_crc,
            payload_crc,
            row: None,
            id: row.id,
        });
        self.seqs.push(row.seq);
        self.min_seq = self.min_seq.min(row.seq);
        self.max_seq = self.max_seq.max(row.seq);
        self.rows += 1;
        self.last_id = Some(row.id.to_vec());
        Ok(())
    }

    fn write_block(&mut self, kind: BlockKind, bytes: &[u8]) -> Result<BlockRef> {
        self.w.block(kind, bytes, &self.tmp_path)
    }

    /// Write the remaining blocks and the footer, make the file durable and rename it into
    /// place. Returns what the segment holds.
    pub fn finish(mut self, created_at_ms: u64) -> Result<SegmentInfo> {
        let (pages, page_refs) = std::mem::take(&mut self.pages).finish();
        let mut blocks = vec![BlockRef {
            kind: BlockKind::Vectors,
            crc: self.vectors_crc,
            offset: self.vectors_start,
            len: self.w.pos - self.vectors_start,
        }];
        let norms = std::mem::take(&mut self.norms);
        blocks.push(self.write_block(BlockKind::Norms, bytemuck::cast_slice(&norms))?);
        blocks.push(self.write_block(BlockKind::IdPages, &pages)?);
        drop(pages);

        // Payloads: copy the spool into the file.
        self.w.pad().map_err(io(&self.tmp_path))?;
        let payload_offset = self.w.pos;
        self.spool.flush().map_err(io(&self.spool_path))?;
        let spool = self.spool.get_mut();
        spool
            .seek(SeekFrom::Start(0))
            .map_err(io(&self.spool_path))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &*spool);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut reader, &mut buf).map_err(io(&self.spool_path))?;
            if n == 0 {
                break;
            }
            self.w.write(&buf[..n]).map_err(io(&self.tmp_path))?;
        }
        if self.w.pos - payload_offset != self.spool_len {
            return Err(
                SegmentError::BadRow("payload spool length changed while copying".into()).into(),
            );
        }
        blocks.push(BlockRef {
            kind: BlockKind::Payloads,
            crc: self.spool_crc,
            offset: payload_offset,
            len: self.spool_len,
        });
        let seqs = std::mem::take(&mut self.seqs);
        blocks.push(self.write_block(BlockKind::Seqs, bytemuck::cast_slice(&seqs))?);
        let tombs = std::mem::take(&mut self.tombstones);
        blocks.push(self.write_block(BlockKind::Tombstones, bytemuck::cast_slice(&tombs))?);

        let footer = Footer {
            version: PLAIN_VERSION,
            metric: self.metric,
            dim: self.dim as u32,
            rows: self.rows,
            tombstones: self.tombstone_count,
            min_seq: if self.rows == 0 { 0 } else { self.min_seq },
            max_seq: self.max_seq,
            created_at_ms,
            blocks,
            pages: page_refs,
        };
        let (size_bytes, crc) =
            self.w
                .seal(&footer, &self.tmp_path, &self.final_path, self.durable)?;
        self.finished = true;
        let _ = fs::remove_file(&self.spool_path);
        Ok(SegmentInfo {
            size_bytes,
            rows: footer.rows,
            tombstones: footer.tombstones,
            min_seq: footer.min_seq,
            max_seq: footer.max_seq,
            created_at_ms,
            crc,
        })
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.spool_path);
        if !self.finished {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}
