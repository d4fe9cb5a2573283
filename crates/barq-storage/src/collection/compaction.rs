//! Size-tiered compaction: merge a run of adjacent segments into one.
//!
//! *Policy* ([`plan_size_tiered`]) is a pure function over segment sizes. *Execution* merges the
//! chosen run: it keeps, for each id, only the newest version (rows shadowed by a newer segment
//! are dropped) and drops tombstones when the run starts at the oldest segment (nothing older
//! can hold a version they need to hide). Then it writes the output segment, commits the
//! manifest (the output replaces the run, at the run's place in sequence order), installs it,
//! and only then deletes the inputs.
//!
//! Runs are always *adjacent* segments so that sequence ranges never overlap: a point lookup
//! can stop at the newest segment holding the id.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use barq_core::{Error, Result};

use super::{Collection, SegmentHandle, hot_entry, open_segment};
use crate::manifest::{SegmentEntry, StorageTier};
use crate::options::{
    FP_COMPACTION_AFTER_COMMIT, FP_COMPACTION_BEFORE_COMMIT, FP_INDEX_BEFORE_BUILD,
};
use crate::segment::{MmapSource, OwnedEntry, RowInput, Segment, SegmentWriter, write_indexed};
use crate::shadows::bit;

/// Knobs of the size-tiered policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeTieredPolicy {
    /// Merge at least this many segments.
    pub min_segments: usize,
    /// Merge at most this many.
    pub max_segments: usize,
    /// Largest / smallest size within a run.
    pub size_ratio: f64,
}

/// Pick a run of adjacent segments of similar size to merge: the longest qualifying run, the
/// oldest among equals. `sizes` are in segment order (oldest first).
pub fn plan_size_tiered(sizes: &[u64], policy: SizeTieredPolicy) -> Option<Range<usize>> {
    let min = policy.min_segments.max(2);
    let max = policy.max_segments.max(min);
    for width in (min..=max.min(sizes.len())).rev() {
        for start in 0..=sizes.len() - width {
            let run = &sizes[start..start + width];
            let lo = run.iter().copied().min().unwrap_or(0).max(1) as f64;
            let hi = run.iter().copied().max().unwrap_or(0) as f64;
            if hi / lo <= policy.size_ratio {
                return Some(start..start + width);
            }
        }
    }
    None
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompactionOutcome {
    /// Ids of the merged segments.
    pub inputs: Vec<u64>,
    /// The new segment, if any row survived.
    pub output: Option<SegmentEntry>,
    /// Rows dropped (shadowed versions and tombstones).
    pub dropped_rows: u64,
}

impl Collection {
    /// Delete the local copies of segments that left the manifest and forget their cached
    /// ranges. Their remote objects are left to orphan collection, which deletes them after the
    /// grace period — a query that still reads an old segment keeps working meanwhile. A local
    /// leftover (a failed delete) is swept at the next open.
    pub(crate) fn delete_segment_copies(&self, gone: &[Arc<SegmentHandle>]) {
        for h in gone {
            let e = &h.entry;
            if e.tier != StorageTier::Cold
                && let Ok(dir) = self.env.segments_dir(&self.dir, &self.config.name, e.tier)
                && let Err(err) = crate::fsutil::remove_durably(&dir.join(&e.file_name))
            {
                tracing::warn!(segment = e.id, error = %err, "could not remove a segment file; it is swept at next open");
            }
            self.env
                .cache
                .remove_namespace(&SegmentHandle::namespace(&self.config.name, e));
        }
    }

    fn policy(&self) -> SizeTieredPolicy {
        SizeTieredPolicy {
            min_segments: self.options.compaction_min_segments,
            max_segments: self.options.compaction_max_segments,
            size_ratio: self.options.compaction_size_ratio,
        }
    }

    /// Run one size-tiered compaction if the policy finds a run.
    pub(crate) fn compact_size_tiered(&self) -> Result<Option<CompactionOutcome>> {
        self.check_open()?;
        let _c = self.compaction_lock.lock();
        let snap = self.snapshot();
        let sizes: Vec<u64> = snap.segments.iter().map(|h| h.entry.size_bytes).collect();
        match plan_size_tiered(&sizes, self.policy()) {
            // Background compaction merges Hot segments only: it never pulls cold data back.
            Some(run)
                if snap.segments[run.clone()].iter().all(|h| {
                    h.entry.tier == StorageTier::Hot && !self.busy.contains(h.entry.id)
                }) =>
            {
                self.compact_run(run).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Index one sealed Hot segment of at least `index_min_rows` rows that has no index yet
    /// (the oldest first), by rewriting it alone; `None` when there is none. With `min_age`,
    /// only a segment sealed at least that long ago.
    ///
    /// With `refresh_filters`, also an indexed Hot segment whose payload index lacks a field
    /// the collection indexes now (rewritten with the whole index rebuilt).
    pub(crate) fn index_one(
        &self,
        min_age: Option<Duration>,
        refresh_filters: bool,
    ) -> Result<Option<CompactionOutcome>> {
        self.check_open()?;
        let _c = self.compaction_lock.lock();
        let snap = self.snapshot();
        let sealed_before = min_age.map(|age| {
            self.env
                .clock
                .now_ms()
                .saturating_sub(age.as_millis() as u64)
        });
        let mut pick = None;
        let fields = self.indexed_fields();
        for (i, h) in snap.segments.iter().enumerate() {
            // Only a segment that stays large enough for an index when rewritten.
            if refresh_filters
                && !fields.is_empty()
                && h.entry.tier == StorageTier::Hot
                && !self.busy.contains(h.entry.id)
                && h.segment()?.is_indexed()
                && h.segment()?.rows() - h.segment()?.footer().tombstones
                    >= self.options.index_min_rows
            {
                let has = h.segment()?.filter_index()?;
                let missing = fields.iter().any(|f| {
                    !has.as_ref()
                        .is_some_and(|x| x.fields.iter().any(|g| g.field == *f))
                });
                if missing {
                    pick = Some(i);
                    break;
                }
            }
            if h.entry.tier == StorageTier::Hot
                && sealed_before.is_none_or(|t| h.entry.created_at_ms <= t)
                && h.entry.rows >= self.options.index_min_rows
                && !self.busy.contains(h.entry.id)
                && !h.segment()?.is_indexed()
                && h.segment()?.rows() - h.segment()?.footer().tombstones
                    >= self.options.index_min_rows
            {
                pick = Some(i);
                break;
            }
        }
        match pick {
            Some(i) => self.compact_run(i..i + 1).map(Some),
            None => Ok(None),
        }
    }

    /// Merge every segment into one (drops all shadowed rows and tombstones).
    pub(crate) fn compact_all(&self) -> Result<CompactionOutcome> {
        self.check_open()?;
        let _c = self.compaction_lock.lock();
        let n = self.snapshot().segments.len();
        if n == 0 {
            return Ok(CompactionOutcome::default());
        }
        self.compact_run(0..n)
    }

    /// Merge the segments at `run`. Caller holds `compaction_lock`.
    fn compact_run(&self, run: Range<usize>) -> Result<CompactionOutcome> {
        let snap = self.snapshot();
        // Marking waits for an upload on seal of an input (see `Busy::mark`).
        let _busy = snap.segments[run.clone()]
            .iter()
            .map(|h| self.busy.mark(&self.config.name, h.entry.id, "compacting"))
            .collect::<Result<Vec<_>>>()?;
        // A move may have finished between the snapshot and the busy marks; an upload that
        // finished only recorded a remote copy of the same file.
        let now = self.snapshot();
        let same = |a: &SegmentHandle, b: &SegmentHandle| {
            a.entry.id == b.entry.id
                && a.entry.tier == b.entry.tier
                && a.entry.checksum == b.entry.checksum
        };
        if now.segments.len() != snap.segments.len()
            || !now.segments[run.clone()]
                .iter()
                .zip(&snap.segments[run.clone()])
                .all(|(a, b)| same(a, b))
        {
            return Err(Error::new(
                barq_core::ErrorKind::Conflict,
                format!(
                    "segments of \"{}\" changed while compaction started; try again",
                    self.config.name
                ),
            ));
        }
        let snap = now;
        let shadows = self.shadows_for(&snap)?;
        let inputs: Vec<Arc<SegmentHandle>> = snap.segments[run.clone()].to_vec();
        let drop_tombstones = run.start == 0;

        // The surviving rows of every input, sorted by id (ids are unique among them).
        let mut keep: Vec<(Box<[u8]>, usize, u64)> = Vec::new();
        let mut kept_tombstones = 0u64;
        let mut total_rows = 0u64;
        for (i, h) in inputs.iter().enumerate() {
            let dead = &shadows.dead[run.start + i];
            total_rows += h.segment()?.rows();
            h.segment()?.for_each_entry(|row, e| {
                if !(bit(dead, row) || drop_tombstones && e.is_tombstone()) {
                    kept_tombstones += u64::from(e.is_tombstone());
                    keep.push((e.id.into(), i, row));
                }
                Ok(())
            })?;
        }
        keep.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let dropped_rows = total_rows - keep.len() as u64;

        // Indexing one local plain segment that loses no row: rewrite it directly, without a
        // staging copy.
        let direct = inputs.len() == 1
            && keep.len() as u64 == total_rows
            && total_rows - kept_tombstones >= self.options.index_min_rows
            && inputs[0].segment()?.source().is_stable()
            && !inputs[0].segment()?.is_indexed();
        let output = if keep.is_empty() {
            None
        } else if direct {
            let id = self.alloc_segment_id();
            let path = self.segment_path(id);
            self.env.failpoints.check(FP_INDEX_BEFORE_BUILD)?;
            let info = write_indexed(
                inputs[0].segment()?,
                &path,
                &self.options.index,
                &self.indexed_fields(),
                self.env.clock.now_ms(),
            )?;
            Some(SegmentEntry {
                min_seq: inputs[0].entry.min_seq,
                max_seq: inputs[0].entry.max_seq,
                ..hot_entry(id, &info)
            })
        } else {
            let id = self.alloc_segment_id();
            let path = self.segment_path(id);
            // An output large enough for an index is first written plain to a staging file
            // (a `*.tmp` name, swept at open after a crash; not fsynced), then rewritten
            // indexed.
            let index = keep.len() as u64 - kept_tombstones >= self.options.index_min_rows;
            let staging = if index {
                crate::fsutil::tmp_path(&path.with_extension("plain"))
            } else {
                path.clone()
            };
            let _staging = StagingFile(index.then_some(&staging));
            let mut writer =
                SegmentWriter::create(&staging, self.config.dimension, self.config.metric)?;
            if index {
                // The staging copy is read back once and deleted: it is never fsynced, so that
                // the disk writes only the indexed output.
                writer = writer.scratch();
            }
            let seqs: Vec<Vec<u64>> = inputs
                .iter()
                .map(|h| h.segment()?.seqs())
                .collect::<Result<_>>()?;
            for h in &inputs {
                h.segment()?.load_payloads()?;
            }
            let dim = self.config.dimension as usize;
            let vectors = inputs
                .iter()
                .map(|h| h.segment()?.vectors())
                .collect::<Result<Vec<_>>>()?;
            let norms = inputs
                .iter()
                .map(|h| h.segment()?.norms())
                .collect::<Result<Vec<_>>>()?;
            for (key, i, row) in &keep {
                let seg = inputs[*i].segment()?;
                let entry = seg.with_entry(*row, |e| OwnedEntry::from(e))?;
                let r = *row as usize;
                let vector = (!entry.tombstone).then(|| &vectors[*i][r * dim..(r + 1) * dim]);
                let payload = seg.payload_of(&entry)?;
                writer.push(RowInput {
                    id: key,
                    seq: seqs[*i][r],
                    vector,
                    payload: payload.as_deref(),
                    norm: Some(norms[*i][r]),
                })?;
            }
            let mut info = writer.finish(self.env.clock.now_ms())?;
            if index {
                self.env.failpoints.check(FP_INDEX_BEFORE_BUILD)?;
                let plain = Segment::open(Arc::new(MmapSource::open(&staging)?))?;
                info = write_indexed(
                    &plain,
                    &path,
                    &self.options.index,
                    &self.indexed_fields(),
                    self.env.clock.now_ms(),
                )?;
            }
            Some(SegmentEntry {
                // The output stands for the whole run, so it takes the run's sequence range.
                min_seq: inputs.first().map_or(info.min_seq, |h| h.entry.min_seq),
                max_seq: inputs.last().map_or(info.max_seq, |h| h.entry.max_seq),
                ..hot_entry(id, &info)
            })
        };
        let handle = output
            .as_ref()
            .map(|e| open_segment(&self.env, &self.dir, &self.config.name, e, Arc::default()))
            .transpose()?;
        self.env.failpoints.check(FP_COMPACTION_BEFORE_COMMIT)?;
        let input_ids: Vec<u64> = inputs.iter().map(|h| h.entry.id).collect();

        {
            let _f = self.flush_lock.lock();
            let name = self.config.name.clone();
            let next_id = self
                .next_segment_id
                .load(std::sync::atomic::Ordering::Acquire);
            self.manifest.commit(|m| {
                let c = m.collections.get_mut(&name).ok_or_else(|| {
                    Error::not_found(format!("collection \"{name}\" was dropped"))
                })?;
                let pos = c
                    .segments
                    .iter()
                    .position(|s| s.id == input_ids[0])
                    .ok_or_else(|| {
                        Error::internal("compaction input vanished from the manifest")
                    })?;
                let ids_match = c
                    .segments
                    .get(pos..pos + input_ids.len())
                    .is_some_and(|s| s.iter().map(|e| e.id).eq(input_ids.iter().copied()));
                if !ids_match {
                    return Err(Error::internal(
                        "compaction inputs are no longer adjacent in the manifest",
                    ));
                }
                let mut output = output.clone();
                if let Some(o) = &mut output {
                    o.pinned = c.segments[pos..pos + input_ids.len()]
                        .iter()
                        .any(|s| s.pinned);
                }
                c.segments.splice(pos..pos + input_ids.len(), output);
                c.next_segment_id = c.next_segment_id.max(next_id);
                Ok(())
            })?;
            let mut st = self.state.write();
            let pos = st
                .segments
                .iter()
                .position(|h| h.entry.id == input_ids[0])
                .ok_or_else(|| Error::internal("compaction input vanished"))?;
            st.segments.splice(pos..pos + input_ids.len(), handle);
            st.shadows = None;
        }
        self.env.failpoints.check(FP_COMPACTION_AFTER_COMMIT)?;
        self.delete_segment_copies(&inputs);
        tracing::info!(collection = %self.config.name, inputs = ?input_ids, dropped_rows, "segments compacted");
        Ok(CompactionOutcome {
            inputs: input_ids,
            output,
            dropped_rows,
        })
    }
}

/// Removes a staging file when the compaction that wrote it ends, whatever happened.
struct StagingFile<'a>(Option<&'a std::path::Path>);

impl Drop for StagingFile<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: SizeTieredPolicy = SizeTieredPolicy {
        min_segments: 4,
        max_segments: 6,
        size_ratio: 2.0,
    };

    #[test]
    fn size_tiered_plans() {
        let cases: &[(&[u64], Option<Range<usize>>)] = &[
            (&[], None),
            (&[10, 10, 10], None),
            (&[10, 10, 10, 10], Some(0..4)),
            (&[100, 10, 10, 10, 10], Some(1..5)),
            (&[100, 10, 11, 12, 13, 14, 15, 16], Some(1..7)),
            (&[10, 100, 10, 100, 10], None),
            (&[1000, 100, 90, 80, 70, 10], Some(1..5)),
            (&[0, 0, 0, 0], Some(0..4)),
        ];
        for (sizes, want) in cases {
            assert_eq!(plan_size_tiered(sizes, P), *want, "{sizes:?}");
        }
    }
}
