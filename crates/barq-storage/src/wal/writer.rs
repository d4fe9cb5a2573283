//! Appending to the WAL, group commit and rotation.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use barq_core::{Error, Result};
use parking_lot::{Condvar, Mutex};

use super::{BatchEncoder, WAL_HEADER_LEN, WAL_MAGIC, WAL_VERSION, WalError, file_name};
use crate::fsutil;

struct Inner {
    file: Arc<File>,
    generation: u64,
    /// Bytes appended over the life of this `Wal`, across generations (a logical position).
    written: u64,
    next_seq: u64,
}

struct SyncState {
    synced: u64,
    syncing: bool,
    failed: Option<String>,
}

/// One collection's WAL.
pub(crate) struct Wal {
    dir: PathBuf,
    inner: Mutex<Inner>,
    sync: Mutex<SyncState>,
    synced_cv: Condvar,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).finish()
    }
}

fn create_generation(dir: &Path, generation: u64) -> Result<File> {
    let path = dir.join(file_name(generation));
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(WalError::io("create wal file", &path))?;
    let mut header = Vec::with_capacity(WAL_HEADER_LEN as usize);
    header.extend_from_slice(&WAL_MAGIC);
    header.extend_from_slice(&WAL_VERSION.to_le_bytes());
    f.write_all(&header)
        .and_then(|()| f.sync_all())
        .map_err(WalError::io("write wal header", &path))?;
    fsutil::fsync_dir(dir)?;
    Ok(f)
}

fn poisoned(why: &str) -> Error {
    WalError::Poisoned(why.to_owned()).into()
}

impl Wal {
    /// Start writing generation `generation` in `dir`; the next write gets `next_seq`.
    pub(crate) fn create(dir: &Path, generation: u64, next_seq: u64) -> Result<Wal> {
        let file = create_generation(dir, generation)?;
        Ok(Wal {
            dir: dir.to_owned(),
            inner: Mutex::new(Inner {
                file: Arc::new(file),
                generation,
                written: 0,
                next_seq,
            }),
            sync: Mutex::new(SyncState {
                synced: 0,
                syncing: false,
                failed: None,
            }),
            synced_cv: Condvar::new(),
        })
    }

    /// Why the log takes no more writes (a failed write or fsync), if it does not.
    pub(crate) fn failed(&self) -> Option<String> {
        self.sync.lock().failed.clone()
    }

    fn check(&self) -> Result<()> {
        match &self.sync.lock().failed {
            Some(why) => Err(poisoned(why)),
            None => Ok(()),
        }
    }

    pub(crate) fn fail(&self, why: String) -> Error {
        tracing::error!(dir = %self.dir.display(), error = %why, "wal write failed, the database is poisoned");
        let mut s = self.sync.lock();
        s.failed.get_or_insert(why.clone());
        self.synced_cv.notify_all();
        poisoned(&why)
    }

    /// Append a batch: assign its sequence numbers, write it, then run `apply(first_seq)` while
    /// still holding the WAL lock (so a memtable swap cannot fall between the two). Returns the
    /// logical position to pass to [`Wal::sync_to`].
    pub(crate) fn append(&self, batch: &mut BatchEncoder, apply: impl FnOnce(u64)) -> Result<u64> {
        self.check()?;
        let mut inner = self.inner.lock();
        let first_seq = inner.next_seq;
        let frame = batch.seal(first_seq);
        if let Err(e) = (&*inner.file).write_all(frame) {
            return Err(self.fail(format!("append to {}: {e}", self.dir.display())));
        }
        inner.written += frame.len() as u64;
        inner.next_seq += batch.count();
        apply(first_seq);
        Ok(inner.written)
    }

    /// The generation being appended to.
    pub(crate) fn generation(&self) -> u64 {
        self.inner.lock().generation
    }

    /// The sequence number the next write will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.inner.lock().next_seq
    }

    /// Block until everything appended up to `pos` is fsynced. Concurrent callers share one
    /// fsync: whoever finds no fsync running starts one covering everything written so far.
    pub(crate) fn sync_to(&self, pos: u64) -> Result<()> {
        let mut s = self.sync.lock();
        loop {
            if let Some(why) = &s.failed {
                return Err(poisoned(why));
            }
            if s.synced >= pos {
                return Ok(());
            }
            if s.syncing {
                self.synced_cv.wait(&mut s);
                continue;
            }
            s.syncing = true;
            drop(s);
            let (file, upto) = {
                let inner = self.inner.lock();
                (Arc::clone(&inner.file), inner.written)
            };
            let result = file.sync_data();
            s = self.sync.lock();
            s.syncing = false;
            match result {
                Ok(()) => s.synced = s.synced.max(upto),
                Err(e) => {
                    let why = format!("fsync {}: {e}", self.dir.display());
                    tracing::error!(error = %why, "wal fsync failed, the database is poisoned");
                    s.failed.get_or_insert(why);
                }
            }
            self.synced_cv.notify_all();
        }
    }

    /// fsync everything appended so far.
    pub(crate) fn sync_all(&self) -> Result<()> {
        let pos = self.inner.lock().written;
        self.sync_to(pos)
    }

    /// Bytes appended and not yet known to be fsynced.
    pub(crate) fn unsynced_bytes(&self) -> u64 {
        let written = self.inner.lock().written;
        written.saturating_sub(self.sync.lock().synced)
    }

    /// Start a new generation: fsync the current file, open the next one, and run `apply` (the
    /// memtable swap) under the WAL lock. Returns the new generation: every record of an older
    /// generation is in memtables swapped out before this call.
    pub(crate) fn rotate(&self, apply: impl FnOnce()) -> Result<u64> {
        self.check()?;
        let mut inner = self.inner.lock();
        if let Err(e) = inner.file.sync_data() {
            return Err(self.fail(format!("fsync {}: {e}", self.dir.display())));
        }
        let next = inner.generation + 1;
        let file = create_generation(&self.dir, next).map_err(|e| self.fail(e.to_string()))?;
        inner.file = Arc::new(file);
        inner.generation = next;
        let written = inner.written;
        {
            let mut s = self.sync.lock();
            s.synced = s.synced.max(written);
        }
        apply();
        Ok(next)
    }

    /// Delete every generation older than `generation` (their data is in committed segments).
    pub(crate) fn delete_before(&self, generation: u64) -> Result<()> {
        let mut removed = false;
        for (g, path) in list_generations(&self.dir)? {
            if g < generation {
                fs::remove_file(&path).map_err(WalError::io("remove", &path))?;
                removed = true;
            }
        }
        if removed {
            fsutil::fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Total bytes of the WAL files on disk.
    pub(crate) fn disk_bytes(&self) -> u64 {
        list_generations(&self.dir)
            .map(|v| {
                v.iter()
                    .filter_map(|(_, p)| fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// The WAL files in `dir`, sorted by generation.
pub(crate) fn list_generations(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(WalError::io("list", dir)(e).into()),
    };
    for entry in entries {
        let path = entry.map_err(WalError::io("list", dir))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(g) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((g, path));
        }
    }
    out.sort();
    Ok(out)
}
