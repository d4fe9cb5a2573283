//! Which rows of a segment a [`Filter`] matches.
//!
//! When every condition's path is indexed by the segment (or the condition is `has_id`), the
//! answer is set algebra over the payload index's bitmaps (`segment::filters`): `must`
//! intersects, `should` unites, `must_not` subtracts, starting from every row. Only the parts
//! the conditions name are read — for a cold segment in one parallel batch of ranged reads —
//! and the few rows whose value the index does not hold (`other`) are evaluated from their
//! payloads. Otherwise every row's payload is read and the filter evaluated row by row
//! (correct, slower; `explain` reports `"payload scan"`).

use std::collections::HashMap;

use barq_core::filter::{Condition, FieldType, Filter, MatchValue};
use barq_core::{Payload, Result};
use roaring::{MultiOps, RoaringBitmap};

use super::decode_payload;
use crate::segment::Segment;
use crate::segment::filters::{
    FieldIndex, FieldValues, FilterIndex, MAX_KEYWORD_BYTES, PartRef, Parts, decode_bitmap,
    decode_sorted, exact_integer,
};

/// How a segment's matches were found (`explain`).
pub(crate) const BY_INDEX: &str = "payload index";
/// See [`BY_INDEX`].
pub(crate) const BY_SCAN: &str = "payload scan";

/// The rows of `seg` that `filter` matches (tombstones and shadowed rows not removed), and how
/// they were found.
pub(crate) fn segment_matches(
    seg: &Segment,
    filter: &Filter,
) -> Result<(RoaringBitmap, &'static str)> {
    let rows = seg.rows() as u32;
    if let Some(fi) = seg.filter_index()?
        && indexed(filter, &fi)
    {
        let mut want = Vec::new();
        parts_for(filter, &fi, &mut want);
        let parts = seg.filter_parts(&want)?;
        // Rows whose values the index does not hold, for the conditions that need them.
        let mut other = RoaringBitmap::new();
        others_for(filter, &fi, &parts, &mut other)?;
        let other_rows: Vec<u64> = other.iter().map(u64::from).collect();
        let payloads: HashMap<u32, (String, Option<Payload>)> = seg
            .payloads_of_rows(&other_rows)?
            .into_iter()
            .zip(&other_rows)
            .map(|((id, p), &r)| Ok((r as u32, (id, p.map(|b| decode_payload(&b)).transpose()?))))
            .collect::<Result<_>>()?;
        let e = Eval {
            seg,
            fi: &fi,
            parts: &parts,
            payloads: &payloads,
            rows,
        };
        return Ok((e.filter(filter)?, BY_INDEX));
    }
    let mut out = RoaringBitmap::new();
    seg.for_each_payload(|row, id, p| {
        let payload = p.map(decode_payload).transpose()?;
        if filter.matches(id, payload.as_ref()) {
            out.insert(row as u32);
        }
        Ok(())
    })?;
    Ok((out, BY_SCAN))
}

/// Per (segment, memtable): the segment rows whose id the memtable holds a newer version (or a
/// tombstone) of, kept between searches and brought up to date with the rows the memtable has
/// gained since (memtables only grow until they are flushed).
#[derive(Debug, Default)]
pub(crate) struct MemShadows(parking_lot::Mutex<HashMap<(u64, usize), MemShadow>>);

#[derive(Debug, Clone)]
struct MemShadow {
    /// Memtable rows looked up so far.
    rows: usize,
    /// The sequence number of the last of them (a memtable reusing the address of a flushed
    /// one does not match it).
    last_seq: u64,
    bits: RoaringBitmap,
}

impl MemShadows {
    /// The rows of segment `id` (`seg`) that a memtable of `memtables` holds a newer version of.
    pub(crate) fn of(
        &self,
        id: u64,
        seg: &Segment,
        memtables: &[super::SharedMemtable],
    ) -> Result<RoaringBitmap> {
        let mut out = RoaringBitmap::new();
        for m in memtables {
            let key = (id, std::sync::Arc::as_ptr(m) as usize);
            let cached = self.0.lock().get(&key).cloned();
            let m = m.read();
            let n = m.row_count();
            let mut entry = match cached {
                Some(c)
                    if c.rows <= n && c.rows > 0 && m.row(c.rows as u32 - 1).seq == c.last_seq =>
                {
                    c
                }
                _ => MemShadow {
                    rows: 0,
                    last_seq: 0,
                    bits: RoaringBitmap::new(),
                },
            };
            if entry.rows < n {
                for row in entry.rows..n {
                    if let Some((r, _)) = seg.find(m.row(row as u32).id.as_bytes())? {
                        entry.bits.insert(r as u32);
                    }
                }
                entry.rows = n;
                entry.last_seq = m.row(n as u32 - 1).seq;
            }
            out |= &entry.bits;
            if n > 0 {
                self.0.lock().insert(key, entry);
            }
        }
        Ok(out)
    }

    /// Forget the entries of segments and memtables no longer in use.
    pub(crate) fn retain(&self, segments: &[u64], memtables: &[super::SharedMemtable]) {
        let live: Vec<usize> = memtables
            .iter()
            .map(|m| std::sync::Arc::as_ptr(m) as usize)
            .collect();
        self.0
            .lock()
            .retain(|(s, m), _| segments.contains(s) && live.contains(m));
    }
}

/// The rows whose bits are set in a bitmap of u64 words (tombstones, dead rows).
pub(crate) fn set_bits(words: &[u64]) -> RoaringBitmap {
    let mut out = RoaringBitmap::new();
    for (i, &w) in words.iter().enumerate() {
        let mut w = w;
        while w != 0 {
            let b = w.trailing_zeros();
            // Rows past u32 do not occur: a segment's rows are counted in u32.
            out.insert((i as u64 * 64 + u64::from(b)) as u32);
            w &= w - 1;
        }
    }
    out
}

/// Whether a row with `id` and serialized `payload` matches.
pub(crate) fn row_matches(filter: &Filter, id: &str, payload: Option<&[u8]>) -> Result<bool> {
    let payload = payload.map(decode_payload).transpose()?;
    Ok(filter.matches(id, payload.as_ref()))
}

/// Whether every condition of `f` can be answered from `fi`.
fn indexed(f: &Filter, fi: &FilterIndex) -> bool {
    f.must
        .iter()
        .chain(&f.should)
        .chain(&f.must_not)
        .all(|c| match c {
            Condition::HasId(_) => true,
            Condition::Nested(n) => indexed(n, fi),
            c => c.key().is_some_and(|k| fi.field(k).is_some()),
        })
}

fn conditions(f: &Filter) -> impl Iterator<Item = &Condition> {
    f.must.iter().chain(&f.should).chain(&f.must_not)
}

/// The value parts a condition on field `fx` reads (beside `other`).
fn value_parts(c: &Condition, fx: &FieldIndex) -> Vec<PartRef> {
    let one = |v: &MatchValue| -> Vec<PartRef> {
        match (&fx.values, v) {
            (FieldValues::Keyword(vals), MatchValue::Keyword(s)) => vals
                .binary_search_by(|(k, _)| k.as_str().cmp(s))
                .map(|i| vec![vals[i].1])
                .unwrap_or_default(),
            (FieldValues::Integer(vals), MatchValue::Integer(i)) => vals
                .binary_search_by_key(i, |(k, _)| *k)
                .map(|j| vec![vals[j].1])
                .unwrap_or_default(),
            (FieldValues::Bool(vals), MatchValue::Bool(b)) => vals
                .iter()
                .filter(|(k, _)| k == b)
                .map(|(_, p)| *p)
                .collect(),
            (FieldValues::Float(p), MatchValue::Integer(_)) => vec![*p],
            _ => Vec::new(),
        }
    };
    match c {
        Condition::Match { value, .. } => one(value),
        Condition::MatchAny { any, .. } => any.iter().flat_map(one).collect(),
        Condition::Range { range, .. } => match &fx.values {
            FieldValues::Integer(vals) => vals
                .iter()
                .filter(|(k, _)| range.contains(*k as f64))
                .map(|(_, p)| *p)
                .collect(),
            FieldValues::Float(p) => vec![*p],
            _ => Vec::new(),
        },
        Condition::Exists { .. } => vec![fx.exists],
        Condition::IsNull { .. } => vec![fx.null],
        Condition::HasId(_) | Condition::Nested(_) => Vec::new(),
    }
}

/// Whether a condition on field `fx` must also look at the rows whose values the index does
/// not hold (`other`): a range always (fractions in an integer field, numbers in a keyword
/// field); a match when one of its values is of a kind the field's index does not hold all of.
fn needs_other(c: &Condition, fx: &FieldIndex) -> bool {
    let held = |v: &MatchValue| match (v, fx.field.field_type) {
        (MatchValue::Keyword(s), FieldType::Keyword) => s.len() <= MAX_KEYWORD_BYTES,
        (MatchValue::Integer(i), FieldType::Integer | FieldType::Float) => exact_integer(*i),
        (MatchValue::Bool(_), FieldType::Bool) => true,
        _ => false,
    };
    match c {
        Condition::Match { value, .. } => !held(value),
        Condition::MatchAny { any, .. } => !any.iter().all(held),
        Condition::Range { .. } => true,
        _ => false,
    }
}

fn parts_for(f: &Filter, fi: &FilterIndex, out: &mut Vec<PartRef>) {
    for c in conditions(f) {
        if let Condition::Nested(n) = c {
            parts_for(n, fi, out);
        } else if let Some(fx) = c.key().and_then(|k| fi.field(k)) {
            out.extend(value_parts(c, fx));
            if needs_other(c, fx) {
                out.push(fx.other);
            }
        }
    }
}

fn bitmap_of(parts: &Parts, p: PartRef) -> Result<RoaringBitmap> {
    match parts.get(&p.offset) {
        Some(b) if p.len > 0 => decode_bitmap(b),
        _ => Ok(RoaringBitmap::new()),
    }
}

fn others_for(f: &Filter, fi: &FilterIndex, parts: &Parts, out: &mut RoaringBitmap) -> Result<()> {
    for c in conditions(f) {
        if let Condition::Nested(n) = c {
            others_for(n, fi, parts, out)?;
        } else if let Some(fx) = c.key().and_then(|k| fi.field(k))
            && needs_other(c, fx)
        {
            *out |= bitmap_of(parts, fx.other)?;
        }
    }
    Ok(())
}

struct Eval<'a> {
    seg: &'a Segment,
    fi: &'a FilterIndex,
    parts: &'a Parts,
    payloads: &'a HashMap<u32, (String, Option<Payload>)>,
    rows: u32,
}

impl Eval<'_> {
    fn filter(&self, f: &Filter) -> Result<RoaringBitmap> {
        let mut out = RoaringBitmap::new();
        out.insert_range(0..self.rows);
        for c in &f.must {
            out &= self.condition(c)?;
        }
        if !f.should.is_empty() {
            let mut any = RoaringBitmap::new();
            for c in &f.should {
                any |= self.condition(c)?;
            }
            out &= any;
        }
        for c in &f.must_not {
            out -= self.condition(c)?;
        }
        Ok(out)
    }

    fn condition(&self, c: &Condition) -> Result<RoaringBitmap> {
        if let Condition::Nested(n) = c {
            return self.filter(n);
        }
        if let Condition::HasId(ids) = c {
            let ids: Vec<&[u8]> = ids.iter().map(|i| i.as_bytes()).collect();
            return Ok(self
                .seg
                .find_many(&ids)?
                .into_iter()
                .flatten()
                .map(|row| row as u32)
                .collect());
        }
        let fx = c
            .key()
            .and_then(|k| self.fi.field(k))
            .ok_or_else(|| barq_core::Error::internal("a filter condition on an unindexed path"))?;
        let mut out = match (&fx.values, c) {
            (FieldValues::Float(p), Condition::Range { range, .. }) => {
                self.sorted_rows(*p, |x| range.contains(x))?
            }
            (FieldValues::Float(p), Condition::Match { value, .. }) => {
                self.sorted_rows(*p, |x| value.equals_number(x))?
            }
            (FieldValues::Float(p), Condition::MatchAny { any, .. }) => {
                self.sorted_rows(*p, |x| any.iter().any(|v| v.equals_number(x)))?
            }
            // One multi-way union: much cheaper than one union per value.
            _ => value_parts(c, fx)
                .into_iter()
                .map(|p| bitmap_of(self.parts, p))
                .collect::<Result<Vec<_>>>()?
                .union(),
        };
        if needs_other(c, fx) {
            for row in &bitmap_of(self.parts, fx.other)? {
                if let Some((id, payload)) = self.payloads.get(&row)
                    && c.matches(id, payload.as_ref())
                {
                    out.insert(row);
                }
            }
        }
        Ok(out)
    }

    /// The rows of a float field's sorted values for which `keep` holds.
    fn sorted_rows(&self, p: PartRef, keep: impl Fn(f64) -> bool) -> Result<RoaringBitmap> {
        let Some(bytes) = self.parts.get(&p.offset) else {
            return Ok(RoaringBitmap::new());
        };
        Ok(decode_sorted(bytes)?
            .into_iter()
            .filter(|(x, _)| keep(*x))
            .map(|(_, r)| r)
            .collect())
    }
}

impl super::Collection {
    /// Live documents that `filter` matches (every live document without one): the newest
    /// version of each id, deleted ones left out.
    pub(crate) fn count_matching(&self, filter: Option<&Filter>) -> Result<u64> {
        self.check_open()?;
        let snap = self.snapshot();
        let memtables = snap.memtables_newest_first();
        let mut n = 0u64;
        for (mi, m) in memtables.iter().enumerate() {
            let m = m.read();
            for row in 0..m.row_count() {
                if !m.is_live(row) {
                    continue;
                }
                let r = m.row(row as u32);
                if Self::in_memtables(&memtables[..mi], r.id) {
                    continue;
                }
                if let Some(f) = filter
                    && !row_matches(f, r.id, r.payload)?
                {
                    continue;
                }
                n += 1;
            }
        }
        let any_memtable_rows = memtables.iter().any(|m| m.read().row_count() > 0);
        let shadows = self.shadows_for(&snap)?;
        for (si, h) in snap.segments.iter().enumerate() {
            let seg = h.segment()?;
            let tombs = seg.tombstones()?;
            let dead = &shadows.dead[si];
            let mut m = match filter {
                Some(f) => segment_matches(seg, f)?.0,
                None => {
                    let mut all = RoaringBitmap::new();
                    all.insert_range(0..seg.rows() as u32);
                    all
                }
            };
            m -= set_bits(&tombs);
            m -= set_bits(dead);
            if any_memtable_rows {
                m -= self.mem_shadows.of(h.entry.id, seg, &memtables)?;
            }
            n += m.len();
        }
        Ok(n)
    }
}
