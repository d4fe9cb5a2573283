//! WAL recovery: replay every generation in order, truncating a torn or corrupt tail.

use std::fs::OpenOptions;

use barq_core::Result;

use super::record::{FRAME_HEADER, decode_body};
use super::writer::list_generations;
use super::{WAL_HEADER_LEN, WAL_MAGIC, WAL_VERSION, WalError, WalOp};
use std::path::Path;

/// What a replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReplayStats {
    /// Largest sequence number seen (replayed or skipped).
    pub max_seq: u64,
    /// Largest generation found.
    pub last_generation: u64,
    /// Operations applied.
    pub applied: u64,
    /// Operations skipped because they are already in segments.
    pub skipped: u64,
    /// Bytes cut off torn or corrupt tails.
    pub truncated_bytes: u64,
}

/// Replay the WAL in `dir`: call `apply(seq, op)` for every operation with `seq > flushed_seq`,
/// in sequence order.
///
/// Only the newest generation can legitimately end in a torn record (older ones were fsynced
/// when the WAL rotated away from them), so a torn or corrupt tail there is truncated at the
/// last good record with a warning, while damage to an older generation is a data-corruption
/// error: acknowledged writes would be lost, and the operator has to decide.
pub(crate) fn replay(
    dir: &Path,
    dim: usize,
    flushed_seq: u64,
    mut apply: impl FnMut(u64, WalOp),
) -> Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    let generations = list_generations(dir)?;
    let newest = generations.last().map(|(g, _)| *g);
    for (generation, path) in generations {
        stats.last_generation = stats.last_generation.max(generation);
        let bytes = std::fs::read(&path).map_err(WalError::io("read", &path))?;
        if bytes.is_empty() {
            continue;
        }
        let header_ok = bytes.len() >= WAL_HEADER_LEN as usize && bytes[..8] == WAL_MAGIC;
        if header_ok {
            let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            if version != WAL_VERSION {
                return Err(WalError::UnsupportedVersion {
                    path: path.clone(),
                    found: version,
                    supported: WAL_VERSION,
                }
                .into());
            }
        }
        let mut pos = WAL_HEADER_LEN as usize;
        let mut bad: Option<String> = (!header_ok).then(|| "missing or torn header".to_string());
        while bad.is_none() && pos < bytes.len() {
            if bytes.len() - pos < FRAME_HEADER {
                bad = Some("torn frame header".into());
                break;
            }
            let len =
                u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
                    as usize;
            let crc = u32::from_le_bytes([
                bytes[pos + 4],
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
            ]);
            let Some(body) = bytes.get(pos + FRAME_HEADER..pos + FRAME_HEADER + len) else {
                bad = Some("torn record".into());
                break;
            };
            if crc32c::crc32c(body) != crc {
                bad = Some("record checksum mismatch".into());
                break;
            }
            let (first_seq, ops) = match decode_body(body, dim) {
                Ok(x) => x,
                Err(e) => {
                    bad = Some(e.to_string());
                    break;
                }
            };
            for (i, op) in ops.into_iter().enumerate() {
                let seq = first_seq + i as u64;
                stats.max_seq = stats.max_seq.max(seq);
                if seq > flushed_seq {
                    apply(seq, op);
                    stats.applied += 1;
                } else {
                    stats.skipped += 1;
                }
            }
            pos += FRAME_HEADER + len;
        }
        if bad.is_none() {
            // Make what was replayed durable before a newer generation is started after it: an
            // older generation must never end torn (see above).
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(WalError::io("fsync", &path))?;
        }
        if let Some(why) = bad {
            let keep = if header_ok { pos } else { 0 };
            if Some(generation) != newest {
                return Err(WalError::DamagedOlderGeneration {
                    path,
                    offset: keep,
                    reason: why,
                }
                .into());
            }
            let cut = bytes.len() - keep;
            tracing::warn!(file = %path.display(), offset = keep, bytes = cut, reason = %why, "truncating corrupt wal tail");
            stats.truncated_bytes += cut as u64;
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(WalError::io("open", &path))?;
            f.set_len(keep as u64)
                .and_then(|()| f.sync_all())
                .map_err(WalError::io("truncate", &path))?;
        }
    }
    Ok(stats)
}
