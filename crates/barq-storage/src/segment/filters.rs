//! Payload indexes: for each indexed field of a segment, which rows hold which value
//! (docs/format.md §1.9).
//!
//! Two blocks, written by [`FilterBuilder`] after CLUSTERS:
//!
//! ```text
//! FILTER_DATA  parts, each 8-byte aligned: a serialized roaring bitmap of rows (portable
//!              format), or for a float field its values sorted, n × {value f64, row u32}
//! FILTER_HEAD  fields u32; per field: path len u16, path, type u8 (0 keyword, 1 integer,
//!              2 float, 3 bool), then the parts exists, null, other, then values u32 and per
//!              value its key (keyword: len u16 + bytes; integer: i64; bool: u8; float: none)
//!              and its part; part = {offset u64 (absolute), len u32, crc32c u32, rows u32}
//! ```
//!
//! For each row, the values at the field's path (arrays expanded, as every condition sees
//! them): `exists` holds the rows with any value, `null` those with a `null`, and each value of
//! the field's type goes to its key's bitmap (keyword, integer, bool) or the sorted values
//! (float). A value of another type (a number in a keyword field, a fraction or an integer
//! beyond ±2⁵³ in an integer or float field; an integral float such as `2020.0` counts as the
//! integer) puts its row in `other`: a condition on the field
//! evaluates those rows from their payloads, so that an index never changes an answer. Objects
//! match nothing but `exists`. Rows are the segment's rows, in cluster order: a cluster is a
//! contiguous run of rows, so the rows of a bitmap inside a cluster's run tell whether the
//! cluster can match without reading the cluster.

use std::collections::BTreeMap;

use barq_core::filter::{FieldType, IndexedField, values_at};
use barq_core::{Error, Payload, Result};
use bytes::Bytes;
use roaring::RoaringBitmap;
use serde_json::Value;

use super::SegmentError;
use super::format::{BlockKind, BlockRef, Cursor};
use super::writer::{CrcWriter, io_error};

/// One part of FILTER_DATA: where it lies, its checksum and how many rows it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartRef {
    /// Absolute file offset.
    pub offset: u64,
    /// Bytes.
    pub len: u32,
    /// CRC32C of the part.
    pub crc: u32,
    /// Rows in the bitmap (values, for a float field's sorted values).
    pub rows: u32,
}

impl PartRef {
    const EMPTY: PartRef = PartRef {
        offset: 0,
        len: 0,
        crc: 0,
        rows: 0,
    };
}

/// A field's value parts.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValues {
    /// Keyword: a bitmap per value, sorted by value.
    Keyword(Vec<(String, PartRef)>),
    /// Integer: a bitmap per value, sorted by value.
    Integer(Vec<(i64, PartRef)>),
    /// Float: the values with their rows, sorted by value.
    Float(PartRef),
    /// Bool: a bitmap per value.
    Bool(Vec<(bool, PartRef)>),
}

/// One indexed field of a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldIndex {
    /// The field.
    pub field: IndexedField,
    /// Its path's field names.
    pub key: Vec<String>,
    /// Rows with any value at the path.
    pub exists: PartRef,
    /// Rows with a `null` at the path.
    pub null: PartRef,
    /// Rows with a value the index does not hold (evaluated from payloads).
    pub other: PartRef,
    /// The values.
    pub values: FieldValues,
}

/// A segment's FILTER_HEAD, decoded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FilterIndex {
    /// The indexed fields.
    pub fields: Vec<FieldIndex>,
}

impl FilterIndex {
    /// The field indexed at `key`.
    pub fn field(&self, key: &[String]) -> Option<&FieldIndex> {
        self.fields.iter().find(|f| f.key == key)
    }

    /// Bytes of the payload index as the head names them (parts only).
    pub fn data_bytes(&self) -> u64 {
        self.fields
            .iter()
            .map(|f| {
                let parts: u64 = match &f.values {
                    FieldValues::Keyword(v) => v.iter().map(|(_, p)| u64::from(p.len)).sum(),
                    FieldValues::Integer(v) => v.iter().map(|(_, p)| u64::from(p.len)).sum(),
                    FieldValues::Bool(v) => v.iter().map(|(_, p)| u64::from(p.len)).sum(),
                    FieldValues::Float(p) => u64::from(p.len),
                };
                parts + u64::from(f.exists.len + f.null.len + f.other.len)
            })
            .sum()
    }

    /// Decode a FILTER_HEAD block, checking every part against FILTER_DATA's bounds.
    pub(crate) fn decode(bytes: &[u8], data: &BlockRef) -> Result<FilterIndex> {
        let bad =
            |what: String| -> Error { SegmentError::decode(format!("filter head: {what}")).into() };
        let mut r = Cursor::new(bytes);
        let n = r.u32()? as usize;
        let mut fields = Vec::with_capacity(n.min(64));
        let part = |r: &mut Cursor<'_>| -> Result<PartRef> {
            let p = PartRef {
                offset: r.u64()?,
                len: r.u32()?,
                crc: r.u32()?,
                rows: r.u32()?,
            };
            if p.len > 0
                && (p.offset < data.offset
                    || p.offset
                        .checked_add(u64::from(p.len))
                        .is_none_or(|end| end > data.offset + data.len))
            {
                return Err(bad(format!(
                    "a part at {} lies outside the filter data",
                    p.offset
                )));
            }
            Ok(p)
        };
        for _ in 0..n {
            let len = r.u16()? as usize;
            let path = std::str::from_utf8(r.take(len)?)
                .map_err(|_| bad("a path is not UTF-8".into()))?
                .to_owned();
            let field_type = match r.take(1)?[0] {
                0 => FieldType::Keyword,
                1 => FieldType::Integer,
                2 => FieldType::Float,
                3 => FieldType::Bool,
                t => return Err(bad(format!("unknown field type {t}"))),
            };
            let (exists, null, other) = (part(&mut r)?, part(&mut r)?, part(&mut r)?);
            let count = r.u32()? as usize;
            let values = match field_type {
                FieldType::Keyword => {
                    let mut v = Vec::with_capacity(count.min(1 << 16));
                    for _ in 0..count {
                        let len = r.u16()? as usize;
                        let s = std::str::from_utf8(r.take(len)?)
                            .map_err(|_| bad("a keyword is not UTF-8".into()))?
                            .to_owned();
                        v.push((s, part(&mut r)?));
                    }
                    FieldValues::Keyword(v)
                }
                FieldType::Integer => {
                    let mut v = Vec::with_capacity(count.min(1 << 16));
                    for _ in 0..count {
                        v.push((r.u64()? as i64, part(&mut r)?));
                    }
                    FieldValues::Integer(v)
                }
                FieldType::Bool => {
                    let mut v = Vec::with_capacity(2);
                    for _ in 0..count {
                        v.push((r.take(1)?[0] != 0, part(&mut r)?));
                    }
                    FieldValues::Bool(v)
                }
                FieldType::Float => {
                    if count != 1 {
                        return Err(bad(format!("float field {path} has {count} parts")));
                    }
                    FieldValues::Float(part(&mut r)?)
                }
            };
            let key = barq_core::filter::parse_path(&path)
                .ok_or_else(|| bad(format!("\"{path}\" is not a path")))?;
            fields.push(FieldIndex {
                field: IndexedField { path, field_type },
                key,
                exists,
                null,
                other,
                values,
            });
        }
        if !r.is_at_end() {
            return Err(bad("trailing bytes".into()));
        }
        Ok(FilterIndex { fields })
    }
}

/// Decode a bitmap part.
pub fn decode_bitmap(bytes: &[u8]) -> Result<RoaringBitmap> {
    if bytes.is_empty() {
        return Ok(RoaringBitmap::new());
    }
    RoaringBitmap::deserialize_from(bytes)
        .map_err(|e| SegmentError::decode(format!("filter bitmap: {e}")).into())
}

/// Decode a float field's sorted values.
pub fn decode_sorted(bytes: &[u8]) -> Result<Vec<(f64, u32)>> {
    if !bytes.len().is_multiple_of(12) {
        return Err(SegmentError::decode("filter sorted values have a partial entry").into());
    }
    Ok(bytes
        .chunks_exact(12)
        .map(|c| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&c[..8]);
            (
                f64::from_le_bytes(v),
                u32::from_le_bytes([c[8], c[9], c[10], c[11]]),
            )
        })
        .collect())
}

/// Longer strings in a keyword field go to `other`.
pub const MAX_KEYWORD_BYTES: usize = 1024;

/// Numbers of this magnitude or more may not be exact as f64 (2⁵³): such values go to `other`.
pub const EXACT_F64: f64 = 9_007_199_254_740_992.0;

/// Whether the integer `i` lies strictly within ±2⁵³, where f64 holds every integer exactly.
pub fn exact_integer(i: i64) -> bool {
    i.unsigned_abs() < 1 << 53
}

/// A payload number as f64 when that is exact: an integer strictly within ±2⁵³, or any other
/// number of magnitude below 2⁵³.
fn exact_number(n: &serde_json::Number) -> Option<f64> {
    if let Some(i) = n.as_i64() {
        return exact_integer(i).then_some(i as f64);
    }
    if n.as_u64().is_some() {
        return None;
    }
    n.as_f64().filter(|x| x.abs() < EXACT_F64)
}

/// A number that is an integer within ±2⁵³ (`2020` or `2020.0`), as every condition compares it.
fn integral(n: &serde_json::Number) -> Option<i64> {
    let x = exact_number(n)?;
    (x.fract() == 0.0).then_some(x as i64)
}

/// The values of one field, as rows are added.
#[derive(Debug, Default)]
struct FieldBuild {
    exists: RoaringBitmap,
    null: RoaringBitmap,
    other: RoaringBitmap,
    keyword: BTreeMap<String, RoaringBitmap>,
    integer: BTreeMap<i64, RoaringBitmap>,
    boolean: [RoaringBitmap; 2],
    float: Vec<(f64, u32)>,
}

/// Builds the payload index of a segment from its rows' payloads, given in row order.
#[derive(Debug)]
pub struct FilterBuilder {
    fields: Vec<(IndexedField, Vec<String>, FieldBuild)>,
}

impl FilterBuilder {
    /// A builder for `fields`.
    pub fn new(fields: &[IndexedField]) -> FilterBuilder {
        FilterBuilder {
            fields: fields
                .iter()
                .map(|f| (f.clone(), f.key(), FieldBuild::default()))
                .collect(),
        }
    }

    /// Add row `row`'s payload (`None` for a tombstone or a row without one).
    pub fn add(&mut self, row: u32, payload: Option<&Payload>) {
        for (field, key, b) in &mut self.fields {
            let values = values_at(payload, key);
            if values.is_empty() {
                continue;
            }
            b.exists.insert(row);
            for v in values {
                match (field.field_type, v) {
                    (_, Value::Null) => {
                        b.null.insert(row);
                    }
                    (_, Value::Object(_)) => {}
                    (FieldType::Keyword, Value::String(s)) if s.len() <= MAX_KEYWORD_BYTES => {
                        b.keyword.entry(s.clone()).or_default().insert(row);
                    }
                    (FieldType::Integer, Value::Number(n)) => match integral(n) {
                        Some(i) => {
                            b.integer.entry(i).or_default().insert(row);
                        }
                        None => {
                            b.other.insert(row);
                        }
                    },
                    (FieldType::Float, Value::Number(n)) if exact_number(n).is_some() => {
                        b.float.push((exact_number(n).unwrap_or_default(), row));
                    }
                    (FieldType::Bool, Value::Bool(x)) => {
                        b.boolean[usize::from(*x)].insert(row);
                    }
                    _ => {
                        b.other.insert(row);
                    }
                }
            }
        }
    }

    /// Whether no field is indexed.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Write FILTER_DATA and FILTER_HEAD through `w`; their block references.
    pub(super) fn write(self, w: &mut CrcWriter, tmp: &std::path::Path) -> Result<[BlockRef; 2]> {
        w.pad().map_err(io_error(tmp))?;
        let start = w.pos;
        let mut data_crc = 0u32;
        let mut head = Vec::new();
        head.extend_from_slice(&(self.fields.len() as u32).to_le_bytes());
        let mut put = |w: &mut CrcWriter, bytes: &[u8], rows: u32| -> Result<PartRef> {
            if bytes.is_empty() {
                return Ok(PartRef::EMPTY);
            }
            let pad = (8 - (w.pos % 8)) % 8;
            let zeros = [0u8; 8];
            data_crc = crc32c::crc32c_append(data_crc, &zeros[..pad as usize]);
            w.write(&zeros[..pad as usize]).map_err(io_error(tmp))?;
            let offset = w.pos;
            data_crc = crc32c::crc32c_append(data_crc, bytes);
            w.write(bytes).map_err(io_error(tmp))?;
            Ok(PartRef {
                offset,
                len: bytes.len() as u32,
                crc: crc32c::crc32c(bytes),
                rows,
            })
        };
        let bitmap = |b: &RoaringBitmap| -> Vec<u8> {
            if b.is_empty() {
                return Vec::new();
            }
            let mut out = Vec::with_capacity(b.serialized_size());
            b.serialize_into(&mut out)
                .expect("serializing into a Vec does not fail");
            out
        };
        let encode_part = |head: &mut Vec<u8>, p: PartRef| {
            head.extend_from_slice(&p.offset.to_le_bytes());
            head.extend_from_slice(&p.len.to_le_bytes());
            head.extend_from_slice(&p.crc.to_le_bytes());
            head.extend_from_slice(&p.rows.to_le_bytes());
        };
        for (field, _, mut b) in self.fields {
            head.extend_from_slice(&(field.path.len() as u16).to_le_bytes());
            head.extend_from_slice(field.path.as_bytes());
            head.push(match field.field_type {
                FieldType::Keyword => 0,
                FieldType::Integer => 1,
                FieldType::Float => 2,
                FieldType::Bool => 3,
            });
            for set in [&b.exists, &b.null, &b.other] {
                let p = put(w, &bitmap(set), set.len() as u32)?;
                encode_part(&mut head, p);
            }
            match field.field_type {
                FieldType::Keyword => {
                    head.extend_from_slice(&(b.keyword.len() as u32).to_le_bytes());
                    for (k, set) in &b.keyword {
                        let p = put(w, &bitmap(set), set.len() as u32)?;
                        head.extend_from_slice(&(k.len() as u16).to_le_bytes());
                        head.extend_from_slice(k.as_bytes());
                        encode_part(&mut head, p);
                    }
                }
                FieldType::Integer => {
                    head.extend_from_slice(&(b.integer.len() as u32).to_le_bytes());
                    for (k, set) in &b.integer {
                        let p = put(w, &bitmap(set), set.len() as u32)?;
                        head.extend_from_slice(&k.to_le_bytes());
                        encode_part(&mut head, p);
                    }
                }
                FieldType::Bool => {
                    let present: Vec<usize> =
                        (0..2).filter(|&i| !b.boolean[i].is_empty()).collect();
                    head.extend_from_slice(&(present.len() as u32).to_le_bytes());
                    for i in present {
                        let set = &b.boolean[i];
                        let p = put(w, &bitmap(set), set.len() as u32)?;
                        head.push(i as u8);
                        encode_part(&mut head, p);
                    }
                }
                FieldType::Float => {
                    b.float
                        .sort_by(|a, c| a.0.total_cmp(&c.0).then(a.1.cmp(&c.1)));
                    let mut bytes = Vec::with_capacity(b.float.len() * 12);
                    for (v, row) in &b.float {
                        bytes.extend_from_slice(&v.to_le_bytes());
                        bytes.extend_from_slice(&row.to_le_bytes());
                    }
                    head.extend_from_slice(&1u32.to_le_bytes());
                    let p = put(w, &bytes, b.float.len() as u32)?;
                    encode_part(&mut head, p);
                }
            }
        }
        let data = BlockRef {
            kind: BlockKind::FilterData,
            crc: data_crc,
            offset: start,
            len: w.pos - start,
        };
        let head = w.block(BlockKind::FilterHead, &head, tmp)?;
        Ok([data, head])
    }
}

/// Bytes of verified parts, by offset.
pub type Parts = std::collections::HashMap<u64, Bytes>;
