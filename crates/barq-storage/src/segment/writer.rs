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
    self, BlockKind, BlockRef, Entry, FLAG_PAYLOAD, FLAG_TOMBSTONE, FORMAT_VERSION, Footer,
    HEADER_LEN, MAGIC, PAGE_TARGET_BYTES, PageRef,
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

struct CrcWriter {
    out: BufWriter<File>,
    pos: u64,
    crc: u32,
}

impl CrcWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> std::io::Result<()> {
        let zeros = [0u8; format::BLOCK_ALIGN as usize];
        let n = (format::align_up(self.pos) - self.pos) as usize;
        self.write(&zeros[..n])
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
    pages: Vec<u8>,
    page_refs: Vec<PageRef>,
    page_entries: Vec<u8>,
    page_ends: Vec<u32>,
    page_first_row: u64,
    page_fence: Vec<u8>,
    last_id: Option<Vec<u8>>,
    rows: u64,
    min_seq: u64,
    max_seq: u64,
    zeros: Vec<f32>,
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
        let file = open(&tmp_path)?;
        let spool = open(&spool_path)?;
        let mut w = CrcWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            crc: 0,
        };
        let mut header = [0u8; HEADER_LEN as usize];
        header[0..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        w.write(&header)
            .and_then(|()| w.pad())
            .map_err(io(&tmp_path))?;
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
            pages: Vec::new(),
            page_refs: Vec::new(),
            page_entries: Vec::new(),
            page_ends: Vec::new(),
            page_first_row: 0,
            page_fence: Vec::new(),
            last_id: None,
            rows: 0,
            min_seq: u64::MAX,
            max_seq: 0,
            zeros: vec![0.0; dim as usize],
            finished: false,
        })
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
        if self.page_ends.is_empty() {
            self.page_first_row = row_idx;
            self.page_fence = row.id.to_vec();
        }
        Entry {
            flags,
            payload_offset,
            payload_len,
            vector_crc,
            payload_crc,
            id: row.id,
        }
        .encode(&mut self.page_entries);
        self.page_ends.push(self.page_entries.len() as u32);
        if self.page_entries.len() >= PAGE_TARGET_BYTES {
            self.seal_page();
        }
        self.seqs.push(row.seq);
        self.min_seq = self.min_seq.min(row.seq);
        self.max_seq = self.max_seq.max(row.seq);
        self.rows += 1;
        self.last_id = Some(row.id.to_vec());
        Ok(())
    }

    fn seal_page(&mut self) {
        if self.page_ends.is_empty() {
            return;
        }
        let start = self.pages.len();
        self.pages
            .extend_from_slice(&(self.page_ends.len() as u32).to_le_bytes());
        for end in &self.page_ends {
            self.pages.extend_from_slice(&end.to_le_bytes());
        }
        self.pages.extend_from_slice(&self.page_entries);
        let page = &self.pages[start..];
        self.page_refs.push(PageRef {
            first_row: self.page_first_row,
            offset: start as u64,
            len: page.len() as u32,
            crc: crc32c::crc32c(page),
            fence: std::mem::take(&mut self.page_fence),
        });
        self.page_entries.clear();
        self.page_ends.clear();
    }

    fn write_block(&mut self, kind: BlockKind, bytes: &[u8]) -> Result<BlockRef> {
        self.w.pad().map_err(io(&self.tmp_path))?;
        let offset = self.w.pos;
        self.w.write(bytes).map_err(io(&self.tmp_path))?;
        Ok(BlockRef {
            kind,
            crc: crc32c::crc32c(bytes),
            offset,
            len: bytes.len() as u64,
        })
    }

    /// Write the remaining blocks and the footer, make the file durable and rename it into
    /// place. Returns what the segment holds.
    pub fn finish(mut self, created_at_ms: u64) -> Result<SegmentInfo> {
        self.seal_page();
        let mut blocks = vec![BlockRef {
            kind: BlockKind::Vectors,
            crc: self.vectors_crc,
            offset: self.vectors_start,
            len: self.w.pos - self.vectors_start,
        }];
        let norms = std::mem::take(&mut self.norms);
        blocks.push(self.write_block(BlockKind::Norms, bytemuck::cast_slice(&norms))?);
        let pages = std::mem::take(&mut self.pages);
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
            version: FORMAT_VERSION,
            metric: self.metric,
            dim: self.dim as u32,
            rows: self.rows,
            tombstones: self.tombstone_count,
            min_seq: if self.rows == 0 { 0 } else { self.min_seq },
            max_seq: self.max_seq,
            created_at_ms,
            blocks,
            pages: std::mem::take(&mut self.page_refs),
        };
        let body = footer.encode();
        self.w.write(&body).map_err(io(&self.tmp_path))?;
        self.w
            .write(&format::encode_trailer(&body))
            .map_err(io(&self.tmp_path))?;
        self.w.out.flush().map_err(io(&self.tmp_path))?;
        self.w
            .out
            .get_ref()
            .sync_all()
            .map_err(io(&self.tmp_path))?;
        fs::rename(&self.tmp_path, &self.final_path).map_err(io(&self.final_path))?;
        let dir = self.final_path.parent().unwrap_or(Path::new("."));
        fsutil::fsync_dir(dir)?;
        self.finished = true;
        let _ = fs::remove_file(&self.spool_path);
        Ok(SegmentInfo {
            size_bytes: self.w.pos,
            rows: footer.rows,
            tombstones: footer.tombstones,
            min_seq: footer.min_seq,
            max_seq: footer.max_seq,
            created_at_ms,
            crc: self.w.crc,
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
