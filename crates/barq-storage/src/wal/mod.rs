//! The write-ahead log (docs/design.md §2).
//!
//! Each collection has its own WAL: a directory of generation files `{gen:016}.wal`. A write is
//! one CRC32C-framed record holding a batch of operations with consecutive sequence numbers; it
//! is appended with one `write(2)` and, in `sync` durability, fsynced before it is acknowledged —
//! writers that arrive while an fsync runs share the next one (group commit).
//!
//! A flush *rotates* the WAL (new generation) at the same instant it swaps the memtable, so a
//! generation's records are exactly the memtables flushed before it. Generations older than the
//! flushed memtable are deleted only after its segment is committed in the manifest. Recovery
//! replays every generation in order, skipping records at or below the manifest's `flushed_seq`
//! (so replay is idempotent), and fsyncs what it read. A torn or corrupt tail of the newest
//! generation is truncated with a warning; damage to an older generation (which was fsynced
//! before a newer one was started) is a data-corruption error.

mod error;
mod reader;
mod record;
mod writer;

pub use error::WalError;

pub(crate) use reader::replay;
pub(crate) use record::{BatchEncoder, WalOp};
pub(crate) use writer::Wal;

/// File name of generation `gen`.
pub(crate) fn file_name(generation: u64) -> String {
    format!("{generation:016}.wal")
}

/// First bytes of every WAL file.
pub(crate) const WAL_MAGIC: [u8; 8] = *b"BARQWAL\0";
/// WAL format version.
pub(crate) const WAL_VERSION: u32 = 1;
/// Bytes of the file header: magic + version.
pub(crate) const WAL_HEADER_LEN: u64 = 12;

#[cfg(test)]
mod tests;
