//! Small file-system helpers for the durability rules of docs/design.md §2 and §4: fsync a directory
//! after creating or renaming in it, replace a file atomically, write a large file with its fsync
//! overlapping the writes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use barq_core::{Error, Result};
use parking_lot::{Condvar, Mutex};

/// Suffix of every temporary file; startup sweeps them.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// fsync a directory so that a create, rename or delete in it is durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    // The parent of a bare relative name ("data") is "": the current directory.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format_args!("fsync directory {}", dir.display()), e))
}

/// Create `dir` and its parents, then fsync the parent so the new entry is durable.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(format_args!("create {}", dir.display()), e))?;
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Replace `path` with `contents` atomically: write `path.tmp`, fsync, rename, fsync the
/// directory. A crash leaves either the old or the new file, never a mix.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io(format_args!("create {}", tmp.display()), e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format_args!("write {}", tmp.display()), e))?;
    drop(f);
    fs::rename(&tmp, path)
        .map_err(|e| Error::io(format_args!("rename {} into place", tmp.display()), e))?;
    fsync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Write a large file with its fsync running alongside the writing. `write` writes `file` in
/// pieces and calls the function it is given after each one; a thread of its own then calls
/// `fdatasync` again whenever bytes were written since its last call, so the disk makes the
/// pieces that have landed durable while the next ones arrive. When `write` returns, a final
/// fsync covers the tail and the metadata. On this project's virtual disk a 111 MB download that
/// was written and then fsynced spent 120–160 ms in that last fsync; with the syncs overlapped,
/// little is left for it (docs/benchmarks.md).
///
/// Any error of a background sync is returned: on Linux a writeback error is reported once per
/// open file, so the final fsync would not see it again.
pub(crate) fn write_synced<R>(
    file: &File,
    what: &Path,
    write: impl FnOnce(&dyn Fn()) -> Result<R>,
) -> Result<R> {
    #[derive(Default)]
    struct State {
        dirty: bool,
        done: bool,
    }
    let state = Mutex::new(State::default());
    let cv = Condvar::new();
    let written = || {
        state.lock().dirty = true;
        cv.notify_one();
    };
    /// Tells the sync thread to stop, also when `write` panics (the scope joins the thread
    /// before the panic goes on, so it must not wait for more writes).
    struct Stop<'a>(&'a Mutex<State>, &'a Condvar);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.lock().done = true;
            self.1.notify_one();
        }
    }
    let (result, synced) = std::thread::scope(|s| {
        let syncer = std::thread::Builder::new()
            .name("barq-sync".into())
            .spawn_scoped(s, || -> std::io::Result<()> {
                loop {
                    {
                        let mut st = state.lock();
                        while !st.dirty && !st.done {
                            cv.wait(&mut st);
                        }
                        if st.done {
                            return Ok(());
                        }
                        st.dirty = false;
                    }
                    file.sync_data()?;
                }
            });
        let stop = Stop(&state, &cv);
        let result = write(&written);
        drop(stop);
        let synced = match syncer {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the sync thread panicked"))),
            // No thread: the final fsync does all the work.
            Err(_) => Ok(()),
        };
        (result, synced)
    });
    let value = result?;
    synced
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format_args!("fsync {}", what.display()), e))?;
    Ok(value)
}

/// Write all of `buf` at `offset` of `file` (the file's position is not used on Unix).
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(buf)
    }
}

/// `path` with [`TMP_SUFFIX`] appended.
pub(crate) fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    s.into()
}

/// Remove every `*.tmp` file directly in `dir`; returns how many were removed.
pub(crate) fn sweep_tmp_files(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format_args!("list {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format_args!("list {}", dir.display()), e))?;
        let path = entry.path();
        if path.to_string_lossy().ends_with(TMP_SUFFIX) {
            tracing::info!(path = %path.display(), "removing leftover temporary file");
            fs::remove_file(&path)
                .map_err(|e| Error::io(format_args!("remove {}", path.display()), e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

/// Remove a file and fsync its directory (a missing file is fine).
pub(crate) fn remove_durably(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => fsync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format_args!("remove {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        write_atomic(&p, b"one").expect("write");
        write_atomic(&p, b"two").expect("write");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn write_synced_writes_every_piece_and_returns_the_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("big");
        let file = File::create(&p).expect("create");
        let piece = vec![7u8; 1 << 20];
        let n = write_synced(&file, &p, |written| {
            for _ in 0..8 {
                (&file).write_all(&piece).expect("write");
                written();
            }
            Ok(8)
        })
        .expect("write_synced");
        assert_eq!(n, 8);
        assert_eq!(fs::read(&p).expect("read").len(), 8 << 20);
    }

    #[test]
    fn write_synced_returns_the_writer_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        let file = File::create(&p).expect("create");
        let err = write_synced(&file, &p, |_| -> Result<()> {
            Err(Error::new(
                barq_core::ErrorKind::Unavailable,
                "the store went away",
            ))
        })
        .expect_err("the writer's error comes back");
        assert_eq!(
            (err.kind(), err.message()),
            (barq_core::ErrorKind::Unavailable, "the store went away")
        );
    }

    #[test]
    fn write_synced_passes_a_panic_on_instead_of_hanging() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        let file = File::create(&p).expect("create");
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_synced(&file, &p, |written| -> Result<()> {
                (&file).write_all(b"some").expect("write");
                written();
                panic!("the writer panicked");
            })
        }));
        assert!(caught.is_err(), "the panic reaches the caller");
    }

    #[test]
    fn sweep_removes_only_tmp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a.seg.tmp"), b"x").expect("write");
        fs::write(dir.path().join("b.tmp"), b"x").expect("write");
        fs::write(dir.path().join("keep.seg"), b"x").expect("write");
        assert_eq!(sweep_tmp_files(dir.path()).expect("sweep"), 2);
        let left: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert_eq!(left, ["keep.seg"]);
        assert_eq!(
            sweep_tmp_files(&dir.path().join("missing")).expect("missing dir is fine"),
            0
        );
    }
}
