//! The public error of Barq DB: a small [`ErrorKind`] set plus a message that names the problem.
//!
//! Subsystems keep their own error enums and convert at their edge; callers only ever see
//! [`Error`]. The HTTP layer maps `ErrorKind` to a status code in exactly one function.

use std::fmt;

/// What went wrong, coarsely: enough for a caller to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or violates a limit; nothing was written.
    InvalidArgument,
    /// A collection, document or segment does not exist.
    NotFound,
    /// The request conflicts with existing state (e.g. a collection that already exists, or a
    /// data directory locked by another process).
    Conflict,
    /// A dependency (a disk, an object store) is temporarily unavailable; retrying may work.
    Unavailable,
    /// Stored data failed a checksum or could not be decoded. Never answered with a wrong result.
    DataCorruption,
    /// The database was closed, or poisoned by a failed fsync and must be reopened.
    Closed,
    /// The node is a read-only replica: writes and tiering operations go to the writer.
    ReadOnly,
    /// An I/O error or a bug.
    Internal,
}

impl ErrorKind {
    /// A stable snake_case code, used in JSON errors and CLI output.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::DataCorruption => "data_corruption",
            ErrorKind::Closed => "closed",
            ErrorKind::ReadOnly => "read_only",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The error every public Barq DB API returns.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with Barq DB's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message that names the problem.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Shorthand for an [`ErrorKind::InvalidArgument`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for an [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for an [`ErrorKind::DataCorruption`] error.
    pub fn corruption(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::DataCorruption, message)
    }

    /// Shorthand for an [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// An I/O error while doing `what` (e.g. `"writing wal file /d/wal/1.log"`).
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        Self::new(ErrorKind::Internal, format!("{what}: {err}")).with_source(err)
    }

    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The first error of type `E` in this error's source chain: the subsystem error it was
    /// converted from (a storage crate's `WalError`, `SegmentError`, …), so that a caller can
    /// match its variant.
    pub fn find_source<E: std::error::Error + 'static>(&self) -> Option<&E> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = match &self.source {
            Some(s) => Some(s.as_ref()),
            None => None,
        };
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<E>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

/// `impl From<$ty> for Error`: the kind from `$ty::kind()`, the message from its `Display`, and
/// the value itself as the source (see [`Error::find_source`]).
#[macro_export]
macro_rules! subsystem_error {
    ($ty:ty) => {
        impl From<$ty> for $crate::Error {
            fn from(e: $ty) -> $crate::Error {
                $crate::Error::new(e.kind(), e.to_string()).with_source(e)
            }
        }
    };
}
