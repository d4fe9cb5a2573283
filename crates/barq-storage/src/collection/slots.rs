//! [`SegmentSlots`]: the narrow interface through which a move acts on a collection — find a
//! segment's handle, mark it busy, commit its new location to the manifest and put the new
//! handle in its slot — and [`Busy`], the segments that a move or a compaction holds.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use barq_core::{Error, ErrorKind, Result};
use parking_lot::Mutex;

use super::{Collection, SegmentHandle};
use crate::manifest::{SegmentEntry, StorageTier};

/// What a move needs of a collection, and nothing more.
pub(crate) trait SegmentSlots: Sync {
    /// The collection's name.
    fn name(&self) -> &str;
    /// Its directory in the data directory (its Hot tier).
    fn hot_dir(&self) -> &Path;
    /// `NotFound` once the collection was dropped.
    fn check_open(&self) -> Result<()>;
    /// Mark segment `id` busy with `what` for the life of the guard, or fail with `Conflict`
    /// when something else holds it.
    fn mark_busy(&self, id: u64, what: &'static str) -> Result<BusyGuard<'_>>;
    /// The current handle of segment `id`.
    fn handle(&self, id: u64) -> Result<Arc<SegmentHandle>>;
    /// Record that segment `id` now lives in `tier` (with `remote_key` when it has a copy in the
    /// cold store), moved at `now_ms`, in one durable manifest commit. Returns the new entry.
    fn commit_location(
        &self,
        id: u64,
        tier: StorageTier,
        remote_key: Option<String>,
        now_ms: u64,
    ) -> Result<SegmentEntry>;
    /// Record that segment `id` has a verified copy at `remote_key` in the cold store, where it
    /// is (Local+Remote), in one durable manifest commit. Returns the new entry.
    fn commit_remote_copy(&self, id: u64, remote_key: String) -> Result<SegmentEntry>;
    /// Put `new` in the slot of the segment with its id (same rows in the same order, so the
    /// dead bitmaps stay valid).
    fn replace_handle(&self, new: Arc<SegmentHandle>);
}

/// What an upload on seal marks its segment with.
pub(crate) const UPLOADING: &str = "uploading";

/// The longest a move or a compaction waits for an upload on seal of its segment.
const UPLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Segments being moved or compacted, with what holds each.
#[derive(Debug, Default)]
pub(crate) struct Busy(Mutex<HashMap<u64, &'static str>>);

impl Busy {
    /// Hold `id` for `what` in `collection`, or fail with `Conflict`. An upload on seal holds
    /// its segment only while it copies it: a move or a compaction waits for it (at most
    /// [`UPLOAD_WAIT`]) instead of failing.
    pub(crate) fn mark(
        &self,
        collection: &str,
        id: u64,
        what: &'static str,
    ) -> Result<BusyGuard<'_>> {
        let deadline = std::time::Instant::now() + UPLOAD_WAIT;
        loop {
            let mut busy = self.0.lock();
            match busy.get(&id) {
                None => {
                    busy.insert(id, what);
                    return Ok(BusyGuard { busy: self, id });
                }
                Some(&UPLOADING) if what != UPLOADING && std::time::Instant::now() < deadline => {
                    drop(busy);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Some(other) => {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "segment {id} of collection \"{collection}\" is busy ({other}); try again later"
                        ),
                    ));
                }
            }
        }
    }

    /// Whether `id` is held.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.0.lock().contains_key(&id)
    }

    /// What holds each held segment.
    pub(crate) fn snapshot(&self) -> HashMap<u64, &'static str> {
        self.0.lock().clone()
    }
}

/// Holds a segment busy until dropped.
pub(crate) struct BusyGuard<'a> {
    busy: &'a Busy,
    id: u64,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.busy.0.lock().remove(&self.id);
    }
}

impl SegmentSlots for Collection {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn hot_dir(&self) -> &Path {
        &self.dir
    }

    fn check_open(&self) -> Result<()> {
        Collection::check_open(self)
    }

    fn mark_busy(&self, id: u64, what: &'static str) -> Result<BusyGuard<'_>> {
        self.busy.mark(&self.config.name, id, what)
    }

    fn handle(&self, id: u64) -> Result<Arc<SegmentHandle>> {
        Collection::handle(self, id)
    }

    fn commit_location(
        &self,
        id: u64,
        tier: StorageTier,
        remote_key: Option<String>,
        now_ms: u64,
    ) -> Result<SegmentEntry> {
        self.commit_segment(id, "a move", |s| {
            s.tier = tier;
            s.remote_key = remote_key;
            s.moved_at_ms = Some(now_ms);
        })
    }

    fn commit_remote_copy(&self, id: u64, remote_key: String) -> Result<SegmentEntry> {
        self.commit_segment(id, "its upload", |s| s.remote_key = Some(remote_key))
    }

    fn replace_handle(&self, new: Arc<SegmentHandle>) {
        let mut st = self.state.write();
        if let Some(slot) = st.segments.iter_mut().find(|h| h.entry.id == new.entry.id) {
            *slot = new;
        }
    }
}

impl Collection {
    /// Edit segment `id`'s manifest entry in one durable commit; `NotFound` naming `during` if
    /// it is gone. Returns the new entry.
    fn commit_segment(
        &self,
        id: u64,
        during: &str,
        edit: impl FnOnce(&mut SegmentEntry),
    ) -> Result<SegmentEntry> {
        let name = &self.config.name;
        self.manifest.commit(|m| {
            let s = m
                .collections
                .get_mut(name)
                .and_then(|c| c.segments.iter_mut().find(|s| s.id == id))
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "segment {id} of \"{name}\" vanished during {during}"
                    ))
                })?;
            edit(s);
            Ok(s.clone())
        })
    }

    /// The current handle of segment `id`.
    pub(crate) fn handle(&self, id: u64) -> Result<Arc<SegmentHandle>> {
        self.state
            .read()
            .segments
            .iter()
            .find(|h| h.entry.id == id)
            .cloned()
            .ok_or_else(|| {
                Error::not_found(format!(
                    "collection \"{}\" has no segment {id}",
                    self.config.name
                ))
            })
    }

    /// The segments a move or a compaction holds.
    pub(crate) fn busy(&self) -> &Busy {
        &self.busy
    }
}
