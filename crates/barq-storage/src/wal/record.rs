//! WAL record encoding.
//!
//! ```text
//! frame  = len u32 | crc32c(body) u32 | body
//! body   = kind u8 (1 = batch) | first_seq u64 | count u32 | op × count
//! op     = tag u8 (1 upsert, 2 delete) | id len u16 | id
//!          upsert: | vector dim × f32 | payload len u32 (u32::MAX = none) | payload
//! ```
//! Operation `i` of a batch has sequence number `first_seq + i`.

use std::sync::Arc;

use super::WalError;

type Result<T, E = WalError> = std::result::Result<T, E>;

const KIND_BATCH: u8 = 1;
const TAG_UPSERT: u8 = 1;
const TAG_DELETE: u8 = 2;
const NO_PAYLOAD: u32 = u32::MAX;
/// Offset of `first_seq` inside a frame.
const SEQ_OFFSET: usize = 8 + 1;
/// Bytes of the frame header.
pub(crate) const FRAME_HEADER: usize = 8;

/// One decoded operation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WalOp {
    /// Insert or replace a document.
    Upsert {
        id: Arc<str>,
        vector: Vec<f32>,
        payload: Option<Arc<[u8]>>,
    },
    /// Delete a document.
    Delete { id: Arc<str> },
}

/// Builds one batch frame; the sequence number is patched in under the WAL lock.
#[derive(Debug)]
pub(crate) struct BatchEncoder {
    buf: Vec<u8>,
    count: u32,
}

impl BatchEncoder {
    pub(crate) fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 32);
        buf.extend_from_slice(&[0u8; FRAME_HEADER]);
        buf.push(KIND_BATCH);
        buf.extend_from_slice(&0u64.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        BatchEncoder { buf, count: 0 }
    }

    pub(crate) fn upsert(&mut self, id: &str, vector: &[f32], payload: Option<&[u8]>) {
        self.buf.push(TAG_UPSERT);
        self.buf.extend_from_slice(&(id.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(id.as_bytes());
        self.buf.extend_from_slice(bytemuck::cast_slice(vector));
        match payload {
            Some(p) => {
                self.buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
                self.buf.extend_from_slice(p);
            }
            None => self.buf.extend_from_slice(&NO_PAYLOAD.to_le_bytes()),
        }
        self.count += 1;
    }

    pub(crate) fn delete(&mut self, id: &str) {
        self.buf.push(TAG_DELETE);
        self.buf.extend_from_slice(&(id.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(id.as_bytes());
        self.count += 1;
    }

    pub(crate) fn count(&self) -> u64 {
        u64::from(self.count)
    }

    /// Set the first sequence number and the frame header; returns the frame.
    pub(crate) fn seal(&mut self, first_seq: u64) -> &[u8] {
        self.buf[SEQ_OFFSET..SEQ_OFFSET + 8].copy_from_slice(&first_seq.to_le_bytes());
        self.buf[SEQ_OFFSET + 8..SEQ_OFFSET + 12].copy_from_slice(&self.count.to_le_bytes());
        let body_len = (self.buf.len() - FRAME_HEADER) as u32;
        let crc = crc32c::crc32c(&self.buf[FRAME_HEADER..]);
        self.buf[0..4].copy_from_slice(&body_len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        &self.buf
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let out = self
            .b
            .get(self.pos..self.pos + n)
            .ok_or_else(|| WalError::BadRecord("is truncated".into()))?;
        self.pos += n;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

/// Decode a verified record body into `(first_seq, ops)`.
pub(crate) fn decode_body(body: &[u8], dim: usize) -> Result<(u64, Vec<WalOp>)> {
    let mut r = Reader { b: body, pos: 0 };
    let kind = r.u8()?;
    if kind != KIND_BATCH {
        return Err(WalError::BadRecord(format!("has unknown kind {kind}")));
    }
    let first_seq = r.u64()?;
    let count = r.u32()? as usize;
    let mut ops = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let tag = r.u8()?;
        let id_len = r.u16()? as usize;
        let id: Arc<str> = std::str::from_utf8(r.take(id_len)?)
            .map_err(|_| WalError::BadRecord("id is not UTF-8".into()))?
            .into();
        match tag {
            TAG_UPSERT => {
                let raw = r.take(dim * 4)?;
                let mut vector = vec![0f32; dim];
                bytemuck::cast_slice_mut::<f32, u8>(&mut vector).copy_from_slice(raw);
                let plen = r.u32()?;
                let payload = if plen == NO_PAYLOAD {
                    None
                } else {
                    Some(Arc::from(r.take(plen as usize)?))
                };
                ops.push(WalOp::Upsert {
                    id,
                    vector,
                    payload,
                });
            }
            TAG_DELETE => ops.push(WalOp::Delete { id }),
            other => {
                return Err(WalError::BadRecord(format!("has unknown op tag {other}")));
            }
        }
    }
    if r.pos != body.len() {
        return Err(WalError::BadRecord("has trailing bytes".into()));
    }
    Ok((first_seq, ops))
}
