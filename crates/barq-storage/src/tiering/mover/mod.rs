//! [`Mover`]: one move of one segment between tiers, in the order docs/design.md §6 requires:
//! copy → verify → commit the manifest → delete the source. Uploads are in `offload`,
//! downloads in `download`, local copies (Hot ↔ Warm) in `copy`. Downloads and local copies go
//! to a `*.tmp` file that is fsynced, verified and renamed (and the directory fsynced) before
//! the commit. Each step boundary has a failpoint; tests crash there and reopen.
//!
//! A move acts on its collection only through [`SegmentSlots`]: it finds the segment's handle,
//! marks it busy, commits the new location and puts the new handle in the segment's slot.

mod copy;
mod download;
mod error;
mod offload;

pub use error::{CopyKind, MoverError};

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use barq_core::Result;
use serde::{Deserialize, Serialize};

use super::TierEnv;
use crate::collection::{SegmentHandle, SegmentSlots};
use crate::fsutil;
use crate::manifest::{SegmentEntry, StorageTier};

/// What a move did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveOutcome {
    /// The segment's collection.
    pub collection: String,
    /// The segment.
    pub segment_id: u64,
    /// Where it was.
    pub from: StorageTier,
    /// Where it is now.
    pub to: StorageTier,
    /// Bytes transferred (0 when nothing had to be copied).
    pub bytes: u64,
}

/// Progress callback: bytes transferred so far by this move.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Moves segments of one collection (see the module docs).
pub(crate) struct Mover<'a> {
    slots: &'a dyn SegmentSlots,
    env: &'a TierEnv,
}

impl<'a> Mover<'a> {
    pub(crate) fn new(slots: &'a dyn SegmentSlots, env: &'a TierEnv) -> Mover<'a> {
        Mover { slots, env }
    }

    /// Move segment `id` to `to` (see the module docs). A failure leaves it where it was.
    pub(crate) fn move_segment(
        &self,
        id: u64,
        to: StorageTier,
        progress: Progress<'_>,
    ) -> Result<MoveOutcome> {
        self.slots.check_open()?;
        let _busy = self.slots.mark_busy(id, "moving")?;
        let h = self.slots.handle(id)?;
        let from = h.entry.tier;
        let mut outcome = MoveOutcome {
            collection: self.slots.name().to_owned(),
            segment_id: id,
            from,
            to,
            bytes: 0,
        };
        if from == to {
            return Ok(outcome);
        }
        let started = std::time::Instant::now();
        outcome.bytes = match (from, to) {
            (_, StorageTier::Cold) => self.offload(&h, progress)?,
            (StorageTier::Cold, _) => self.download(&h, to, progress)?,
            _ => self.copy_local(&h, to, progress)?,
        };
        self.env.counters.moves_done.fetch_add(1, Ordering::Relaxed);
        self.env.counters.move_millis.fetch_add(
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        tracing::info!(collection = %self.slots.name(), segment = id, %from, %to, bytes = outcome.bytes, "segment moved");
        Ok(outcome)
    }

    /// Where `entry`'s file lives in local tier `tier`.
    fn local_path(&self, entry: &SegmentEntry, tier: StorageTier) -> Result<PathBuf> {
        Ok(self
            .env
            .segments_dir(self.slots.hot_dir(), self.slots.name(), tier)?
            .join(&entry.file_name))
    }

    /// The cache namespace of `entry`'s cold ranges.
    fn namespace(&self, entry: &SegmentEntry) -> String {
        SegmentHandle::namespace(self.slots.name(), entry)
    }

    /// Size of the ranged reads of a download or a read-back (the multipart part size, at least
    /// 1 MiB).
    fn read_part_bytes(&self) -> u64 {
        self.env.options.multipart_part_bytes.max(1 << 20) as u64
    }
}

/// Finish a verified copy written to `tmp`: on success rename it to `dest` and fsync the
/// directory; on failure remove `tmp`.
fn place_tmp(tmp: &Path, dest: &Path, copied: Result<u64>) -> Result<u64> {
    let len = match copied {
        Ok(len) => len,
        Err(e) => {
            let _ = std::fs::remove_file(tmp);
            return Err(e);
        }
    };
    std::fs::rename(tmp, dest).map_err(MoverError::io("rename", tmp))?;
    fsutil::fsync_dir(dest.parent().unwrap_or(Path::new(".")))?;
    Ok(len)
}
