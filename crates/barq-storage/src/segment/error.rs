//! [`SegmentError`]: what can go wrong reading or writing a segment file.

use std::path::{Path, PathBuf};

use barq_core::ErrorKind;

/// An error of a segment file. Converted into [`barq_core::Error`] at the module's edge; find
/// it again with [`barq_core::Error::find_source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create"`, `"mmap"`, `"write segment"`, …).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The footer, the trailer or an id page does not decode (no segment named yet).
    #[error("{0}")]
    Decode(String),
    /// The file was written in a format version this build does not read.
    #[error("segment format version {found} is not supported (this build reads 1..={supported})")]
    UnsupportedVersion {
        /// The file's version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A segment's bytes are damaged or inconsistent: never answered with a wrong result.
    #[error("segment {segment}: {detail}")]
    Corrupt {
        /// The segment (its file or object).
        segment: String,
        /// What is wrong.
        detail: String,
        /// The decoding error behind it, if any.
        #[source]
        cause: Option<Box<SegmentError>>,
    },
    /// Bytes read do not match their checksum.
    #[error("checksum mismatch in bytes {start}..{end} of {segment}")]
    Checksum {
        /// The segment.
        segment: String,
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
    },
    /// A read past the end of a segment file.
    #[error("read of {start}..{end} past the end of {segment} ({len} bytes)")]
    OutOfBounds {
        /// The segment.
        segment: String,
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// The file's length.
        len: u64,
    },
    /// The manifest lists a local segment whose file is not there.
    #[error("segment {id} listed in the manifest is missing: {}", path.display())]
    Missing {
        /// The segment.
        id: u64,
        /// Where its file should be.
        path: PathBuf,
    },
    /// A local segment file's length differs from the manifest's.
    #[error("segment file {} is {found} bytes, the manifest says {expected}", path.display())]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Its length.
        found: u64,
        /// The manifest's length.
        expected: u64,
    },
    /// The manifest says a segment is Cold but gives no object key.
    #[error("segment {0} is cold but has no remote key in the manifest")]
    NoRemoteKey(u64),
    /// The writer was given rows it cannot take (a bug in the caller).
    #[error("{0}")]
    BadRow(String),
}

impl SegmentError {
    /// The coarse kind callers see.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SegmentError::Io { .. } | SegmentError::BadRow(_) => ErrorKind::Internal,
            SegmentError::Decode(_)
            | SegmentError::UnsupportedVersion { .. }
            | SegmentError::Corrupt { .. }
            | SegmentError::Checksum { .. }
            | SegmentError::OutOfBounds { .. }
            | SegmentError::Missing { .. }
            | SegmentError::SizeMismatch { .. }
            | SegmentError::NoRemoteKey(_) => ErrorKind::DataCorruption,
        }
    }

    /// A [`SegmentError::Io`] of `op` on `path`.
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SegmentError {
        let path = path.to_owned();
        move |source| SegmentError::Io { op, path, source }
    }

    /// A [`SegmentError::Decode`].
    pub(crate) fn decode(detail: impl Into<String>) -> SegmentError {
        SegmentError::Decode(detail.into())
    }
}

barq_core::subsystem_error!(SegmentError);
