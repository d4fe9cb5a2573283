//! [`MoverError`]: what can go wrong in a move, besides the cold store's own errors
//! ([`ColdStoreError`](crate::tiering::ColdStoreError)).

use std::path::{Path, PathBuf};

use barq_core::ErrorKind;

/// Which copy a move made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    /// Hot or Warm → Cold.
    Upload,
    /// Cold → Hot or Warm.
    Download,
    /// Hot ↔ Warm.
    Local,
}

impl std::fmt::Display for CopyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CopyKind::Upload => "uploaded copy",
            CopyKind::Download => "downloaded copy",
            CopyKind::Local => "local copy",
        })
    }
}

/// An error of a move. The segment stays where it was. Converted into [`barq_core::Error`] at
/// the module's edge; find it again with [`barq_core::Error::find_source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MoverError {
    /// A local file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"open"`, `"write"`, `"rename"`, …).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A copy does not match the segment's length and checksum in the manifest; it was
    /// removed.
    #[error("{copy} of segment {segment} ({object}) does not match: {found}; expected {expected}")]
    Mismatch {
        /// Which copy.
        copy: CopyKind,
        /// The segment.
        segment: u64,
        /// The object key or file of the copy.
        object: String,
        /// What the copy has.
        found: String,
        /// What the manifest says.
        expected: String,
    },
    /// The thread that writes a download to disk could not start.
    #[error("start the download writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
    /// The thread that writes a download to disk ended early.
    #[error("the download writer {0}")]
    Writer(&'static str),
}

impl MoverError {
    /// The coarse kind callers see.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MoverError::Io { .. } | MoverError::WriterThread(_) | MoverError::Writer(_) => {
                ErrorKind::Internal
            }
            MoverError::Mismatch { .. } => ErrorKind::DataCorruption,
        }
    }

    /// A [`MoverError::Io`] of `op` on `path`.
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MoverError {
        let path = path.to_owned();
        move |source| MoverError::Io { op, path, source }
    }
}

barq_core::subsystem_error!(MoverError);
