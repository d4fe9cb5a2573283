//! The data directory's exclusive lock.
//!
//! An OS advisory lock (`flock`) on `DIR/LOCK`: the kernel releases it when the holder dies, so a
//! crash never leaves a stale lock behind. The holder writes its pid into the file so that a
//! second opener can say who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use barq_core::{Error, ErrorKind, Result};

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Take the lock on `dir`, or fail with [`ErrorKind::Conflict`] naming the holder's pid.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join("LOCK");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format_args!("open lock file {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("process {holder}")
                };
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("data directory {} is locked by {who}", dir.display()),
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format_args!("lock {}", path.display()), e));
            }
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(format_args!("write lock file {}", path.display()), e))?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_pid_and_release_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DirLock::acquire(dir.path()).expect("first");
        let err = DirLock::acquire(dir.path()).expect_err("second");
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(
            err.message()
                .ends_with(&format!("locked by process {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DirLock::acquire(dir.path()).expect("released");
    }
}
