//! Flush: a memtable becomes a sealed segment (docs/design.md §2).
//!
//! 0. Memtables left over by a failed flush are flushed first; while that fails, the active
//!    memtable is not swapped (it grows until writers are held back).
//! 1. Under the WAL lock, swap the active memtable for an empty one and rotate the WAL to a new
//!    generation — the only moment writers wait.
//! 2. Write the frozen memtable's newest rows, sorted by id, to `segments/{id}.seg.tmp`; fsync;
//!    rename; fsync the directory.
//! 3. Commit the manifest: the new segment, and `flushed_seq` = the memtable's last sequence
//!    number.
//! 4. Install: the segment replaces the frozen memtable in the collection state.
//! 5. Delete the WAL generations older than the rotation.
//!
//! A crash before 3 leaves a segment file no manifest entry references (swept at startup) and the
//! data still in the WAL; a crash after 3 leaves WAL records at or below `flushed_seq`, which
//! replay skips.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use barq_core::{Error, Result};
use parking_lot::RwLock;

use super::{Collection, SharedMemtable, hot_entry, open_segment};
use crate::manifest::SegmentEntry;
use crate::memtable::Memtable;
use crate::options::{FP_FLUSH_AFTER_MANIFEST_COMMIT, FP_FLUSH_AFTER_SEGMENT_WRITE};
use crate::segment::{RowInput, SegmentWriter};

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlushOutcome {
    /// Segments written.
    pub segments: Vec<SegmentEntry>,
}

impl Collection {
    /// Flush the active memtable (and any memtable left over by a failed flush).
    pub(crate) fn flush(&self) -> Result<FlushOutcome> {
        self.check_open()?;
        let _guard = self.flush_lock.lock();
        self.flush_requested.store(false, Ordering::Release);
        let mut outcome = FlushOutcome::default();
        // Memtables left over by a failed flush go first; while they cannot be flushed the
        // active memtable is not swapped, so it grows until writers feel back-pressure.
        self.flush_frozen(&mut outcome)?;
        if !self.state.read().active.read().is_empty() {
            let spare = self.spare.lock().take();
            let fresh = spare.unwrap_or_else(|| {
                Memtable::new(
                    self.config.dimension as usize,
                    self.options.memtable_max_bytes,
                )
            });
            self.wal.rotate(|| {
                let mut st = self.state.write();
                let old = std::mem::replace(&mut st.active, Arc::new(RwLock::new(fresh)));
                st.immutable.push(old);
                self.mark_flushed();
            })?;
            self.notify_swapped();
            self.flush_frozen(&mut outcome)?;
        }
        // Every memtable swapped out before the current generation is now in a segment.
        let current = self.wal.generation();
        self.wal.delete_before(current)?;
        *self.last_flush_error.lock() = None;
        Ok(outcome)
    }

    fn flush_frozen(&self, outcome: &mut FlushOutcome) -> Result<()> {
        loop {
            // (bound first: a guard in a `while let` scrutinee would live through the body)
            let next = self.state.read().immutable.first().cloned();
            let Some(frozen) = next else { return Ok(()) };
            outcome.segments.extend(self.flush_one(&frozen)?);
            // Once no reader holds it any more, keep the flushed memtable's arenas for the next
            // swap.
            if let Ok(lock) = Arc::try_unwrap(frozen) {
                let mut mem = lock.into_inner();
                mem.clear();
                *self.spare.lock() = Some(mem);
            }
        }
    }

    fn flush_one(&self, frozen: &SharedMemtable) -> Result<Option<SegmentEntry>> {
        let mem = frozen.read();
        if mem.is_empty() {
            drop(mem);
            self.state
                .write()
                .immutable
                .retain(|m| !Arc::ptr_eq(m, frozen));
            return Ok(None);
        }
        let id = self.alloc_segment_id();
        let path = self.segment_path(id);
        let mut writer = SegmentWriter::create(&path, self.config.dimension, self.config.metric)?;
        for row in mem.sorted_latest() {
            let r = mem.row(row);
            writer.push(RowInput {
                id: r.id.as_bytes(),
                seq: r.seq,
                vector: (!r.tombstone).then(|| mem.vector(row)),
                norm: Some(mem.norms()[row as usize]),
                payload: r.payload,
            })?;
        }
        let max_seq = mem.max_seq();
        drop(mem);
        let info = writer.finish(self.env.clock.now_ms())?;
        self.env.failpoints.check(FP_FLUSH_AFTER_SEGMENT_WRITE)?;
        let entry = hot_entry(id, &info);
        let handle = open_segment(
            &self.env,
            &self.dir,
            &self.config.name,
            &entry,
            Arc::default(),
        )?;
        // Dead bitmaps for the new list, computed before taking the state lock — only when every
        // older segment is local: a flush never waits for the cold store (the bitmaps are then
        // recomputed by the next search).
        let snap = self.snapshot();
        let all_local = snap
            .segments
            .iter()
            .all(|h| h.entry.tier != crate::manifest::StorageTier::Cold);
        let shadows = match &snap.shadows {
            Some(s) if all_local => {
                let older = snap
                    .segments
                    .iter()
                    .map(|h| h.segment().map(|s| &**s))
                    .collect::<Result<Vec<_>>>()?;
                Some(Arc::new(s.extend(&older, handle.segment()?)?))
            }
            _ => None,
        };
        let name = self.config.name.clone();
        let committed = entry.clone();
        let next_id = self.next_segment_id.load(Ordering::Acquire);
        self.manifest.commit(|m| {
            let c = m.collections.get_mut(&name).ok_or_else(|| {
                Error::not_found(format!("collection \"{name}\" was dropped during a flush"))
            })?;
            c.segments.push(committed);
            c.flushed_seq = c.flushed_seq.max(max_seq);
            c.next_segment_id = c.next_segment_id.max(next_id);
            Ok(())
        })?;
        self.env.failpoints.check(FP_FLUSH_AFTER_MANIFEST_COMMIT)?;
        let mut st = self.state.write();
        st.immutable.retain(|m| !Arc::ptr_eq(m, frozen));
        let unchanged = st.segments.len() == snap.segments.len();
        st.segments.push(Arc::clone(&handle));
        st.shadows = if unchanged { shadows } else { None };
        drop(st);
        tracing::debug!(collection = %self.config.name, segment = id, rows = info.rows, bytes = info.size_bytes, "memtable flushed");
        Ok(Some(entry))
    }
}
