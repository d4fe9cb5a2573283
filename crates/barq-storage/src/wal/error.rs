//! [`WalError`]: what can go wrong in the write-ahead log.

use std::path::{Path, PathBuf};

use barq_core::ErrorKind;

/// An error of the write-ahead log. Converted into [`barq_core::Error`] at the module's edge;
/// find it again with [`barq_core::Error::find_source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"read"`, `"fsync"`, `"create wal file"`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A WAL file written by another format version.
    #[error("wal file {} has format version {found}; this build reads version {supported}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A generation older than the newest is damaged: writes acknowledged after the damage
    /// cannot be recovered, so the database does not open by itself.
    #[error(
        "wal file {} is damaged at offset {offset} ({reason}) but is not the newest generation: \
         acknowledged writes after that point cannot be recovered; move the file aside to open \
         the database without them",
        path.display()
    )]
    DamagedOlderGeneration {
        /// The file.
        path: PathBuf,
        /// Where the damage starts.
        offset: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A record that passed its checksum does not decode.
    #[error("wal record {0}")]
    BadRecord(String),
    /// A write or fsync of the log failed earlier; it takes no more writes.
    #[error("database poisoned by a failed WAL write ({0}); reopen it")]
    Poisoned(String),
}

impl WalError {
    /// The coarse kind callers see.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WalError::Io { .. } => ErrorKind::Internal,
            WalError::UnsupportedVersion { .. }
            | WalError::DamagedOlderGeneration { .. }
            | WalError::BadRecord(_) => ErrorKind::DataCorruption,
            WalError::Poisoned(_) => ErrorKind::Closed,
        }
    }

    /// An [`WalError::Io`] of `op` on `path`.
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WalError {
        let path = path.to_owned();
        move |source| WalError::Io { op, path, source }
    }
}

barq_core::subsystem_error!(WalError);
