//! Small file-system helpers for the durability rules of DESIGN.md §2 and §4: fsync a directory
//! after creating or renaming in it, replace a file atomically.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use barq_core::{Error, Result};

/// Suffix of every temporary file; startup sweeps them.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// fsync a directory so that a create, rename or delete in it is durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
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

/// Ask the kernel to start writing `len` bytes at `offset` of `file` back to disk without waiting
/// for it, so that a later fsync of a large file written in chunks has little left to do and the
/// disk works while the next chunk arrives (RocksDB's `bytes_per_sync`). A no-op where the
/// system has no `sync_file_range`; durability still comes from the final fsync.
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: the descriptor is open for the life of `file`; the call reads only its
        // integer arguments. A failure only means the final fsync does all the work.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
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
