//! [`Poison`]: once a background worker has panicked, the database's state can no longer be
//! trusted to make progress (a dead flusher would leave writers stalled until their timeout),
//! so every later write fails at once with a `Closed` error that names the worker and the
//! panic; reads go on. Reopening the database clears it (the WAL holds every acknowledged
//! write).

use std::sync::OnceLock;

use barq_core::{Error, ErrorKind, Result};

/// See the module docs. The first reason set wins. A database is also *fenced* (writes fail
/// with `Conflict`) once a newer writer has claimed its bucket (see [`crate::bucket`]).
#[derive(Debug, Default)]
pub(crate) struct Poison {
    panicked: OnceLock<String>,
    fenced: OnceLock<String>,
    /// Set for a read-only replica (the message names the bucket it follows).
    read_only: OnceLock<String>,
    /// Where the replica's writer is, once a version it published said.
    writer_url: parking_lot::RwLock<Option<String>>,
}

impl Poison {
    /// Poison with `why` (ignored if already poisoned).
    pub(crate) fn set(&self, why: String) {
        let _ = self.panicked.set(why);
    }

    /// Fence: another writer owns the bucket now (ignored if already fenced).
    pub(crate) fn fence(&self, why: String) {
        let _ = self.fenced.set(why);
    }

    /// Make the database a read-only replica: every write fails with `ReadOnly` and `why`.
    pub(crate) fn set_read_only(&self, why: String) {
        let _ = self.read_only.set(why);
    }

    /// A replica: the writer of the version served is at `url` (named by refused writes).
    pub(crate) fn set_writer_url(&self, url: Option<String>) {
        *self.writer_url.write() = url;
    }

    /// `Err(ReadOnly)` on a read-only replica, `Err(Conflict)` once fenced (for writes and
    /// tiering operations).
    pub(crate) fn check_writable(&self) -> Result<()> {
        if let Some(why) = self.read_only.get() {
            let message = match self.writer_url.read().as_deref() {
                Some(url) => format!("{why}; the writer is at {url}"),
                None => why.clone(),
            };
            return Err(Error::new(ErrorKind::ReadOnly, message));
        }
        match self.fenced.get() {
            None => Ok(()),
            Some(why) => Err(Error::new(
                ErrorKind::Conflict,
                format!("this node takes no more writes: {why}"),
            )),
        }
    }

    /// Why the database is poisoned, if it is.
    pub(crate) fn reason(&self) -> Option<&str> {
        self.panicked.get().map(String::as_str)
    }

    /// Why the database is fenced, if it is.
    pub(crate) fn fenced(&self) -> Option<&str> {
        self.fenced.get().map(String::as_str)
    }

    /// `Err(ReadOnly)` on a replica, `Err(Conflict)` once fenced, `Err(Closed)` once poisoned.
    pub(crate) fn check(&self) -> Result<()> {
        self.check_writable()?;
        match self.panicked.get() {
            None => Ok(()),
            Some(why) => Err(Error::new(
                ErrorKind::Closed,
                format!("the database is poisoned and takes no writes: {why}; reopen it"),
            )),
        }
    }
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
