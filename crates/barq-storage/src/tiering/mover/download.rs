//! Cold → Hot or Warm: the parts are fetched in parallel on the I/O runtime and written at their
//! offsets by a thread of their own into a `*.tmp` file, which is fsynced, checked (length and
//! CRC32C), renamed into place and then committed.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use barq_core::Result;
use bytes::Bytes;

use super::{CopyKind, Mover, MoverError, Progress, place_tmp};
use crate::collection::SegmentHandle;
use crate::fsutil;
use crate::manifest::{SegmentEntry, StorageTier, checksum_string};
use crate::options::FP_TIER_AFTER_DOWNLOAD;
use crate::segment::{MmapSource, RangeSource, Segment, SegmentError};
use crate::tiering::store::{PARTS_IN_FLIGHT, PartSink};

impl Mover<'_> {
    pub(super) fn download(
        &self,
        h: &SegmentHandle,
        to: StorageTier,
        progress: Progress<'_>,
    ) -> Result<u64> {
        let env = &self.env;
        let entry = &h.entry;
        let key = entry
            .remote_key
            .clone()
            .ok_or(SegmentError::NoRemoteKey(entry.id))?;
        let dest = self.local_path(entry, to)?;
        if let Some(dir) = dest.parent() {
            fsutil::create_dir_durable(dir)?;
        }
        let tmp = fsutil::tmp_path(&dest);
        let result = self.download_to(&key, entry, &tmp, progress);
        let len = place_tmp(&tmp, &dest, result)?;
        self.env.failpoints.check(FP_TIER_AFTER_DOWNLOAD)?;
        let committed =
            self.slots
                .commit_location(entry.id, to, Some(key), self.env.clock.now_ms())?;
        let source: Arc<dyn RangeSource> = Arc::new(MmapSource::open(&dest)?);
        let footer = Segment::open(Arc::clone(&source))?.footer().clone();
        self.slots
            .replace_handle(h.relocated(committed, source, Some(footer)));
        env.cache.remove_namespace(&self.namespace(entry));
        env.counters.downloads.fetch_add(1, Ordering::Relaxed);
        env.counters
            .bytes_downloaded
            .fetch_add(len, Ordering::Relaxed);
        Ok(len)
    }

    /// Fetch `key` into `tmp` and fsync it; check length and CRC32C against `entry`. The parts
    /// are written by a thread of their own while the next ones arrive, and the disk makes them
    /// durable as they land ([`fsutil::write_synced`]), so the final fsync has little left.
    fn download_to(
        &self,
        key: &str,
        entry: &SegmentEntry,
        tmp: &Path,
        progress: Progress<'_>,
    ) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, Vec<Bytes>)>(2 * PARTS_IN_FLIGHT);
        let started = std::time::Instant::now();
        std::thread::scope(|s| {
            let writer = std::thread::Builder::new()
                .name("barq-download".into())
                .spawn_scoped(s, move || -> Result<()> {
                    let io = |op: &'static str, e| MoverError::io(op, tmp)(e);
                    let file = std::fs::File::create(tmp).map_err(|e| io("create", e))?;
                    let mut written = 0u64;
                    let mut waited = std::time::Duration::ZERO;
                    let mut written_at = std::time::Duration::ZERO;
                    let mut chunks = 0usize;
                    let mut busy = std::time::Duration::ZERO;
                    fsutil::write_synced(&file, tmp, |wrote| {
                        loop {
                            let t = std::time::Instant::now();
                            let Some((mut at, batch)) = rx.blocking_recv() else {
                                break;
                            };
                            waited += t.elapsed();
                            let tw = std::time::Instant::now();
                            chunks += batch.len();
                            for chunk in batch {
                                fsutil::write_all_at(&file, &chunk, at)
                                    .map_err(|e| io("write", e))?;
                                at += chunk.len() as u64;
                                written += chunk.len() as u64;
                            }
                            busy += tw.elapsed();
                            wrote();
                            // A retried part is written twice: progress never passes the end.
                            progress(written.min(entry.size_bytes));
                        }
                        written_at = started.elapsed();
                        // Every part was checked for its length as it arrived; this checks
                        // that all of them landed, and in one piece.
                        let on_disk = file.metadata().map_err(|e| io("stat", e))?.len();
                        if written < entry.size_bytes || on_disk != entry.size_bytes {
                            return Err(MoverError::Mismatch {
                                copy: CopyKind::Download,
                                segment: entry.id,
                                object: tmp.display().to_string(),
                                found: format!("{written} bytes written, {on_disk} in the file"),
                                expected: format!("{} bytes", entry.size_bytes),
                            }
                            .into());
                        }
                        Ok(())
                    })?;
                    tracing::debug!(
                        bytes = written,
                        ?written_at,
                        waited_for_network = ?waited,
                        chunks,
                        ?busy,
                        fsync = ?(started.elapsed() - written_at),
                        "download written"
                    );
                    Ok(())
                })
                .map_err(MoverError::WriterThread)?;
            let fetched = self.env.cold.block_on(self.env.cold.read_parts(
                key,
                0..entry.size_bytes,
                self.read_part_bytes(),
                PARTS_IN_FLIGHT,
                |r| ToWriter {
                    limiter: Arc::clone(&self.env.limiter),
                    tx: tx.clone(),
                    base: r.start,
                    at: r.start,
                    len: 0,
                    batch: Vec::new(),
                },
            ));
            tracing::debug!(fetched_at = ?started.elapsed(), "download fetched");
            // With every sender gone (the parts' too) the writer drains, fsyncs and ends. Its
            // error, if any, is the cause of a failed send.
            let fetched = fetched.map(|(crc, _parts)| crc);
            drop(tx);
            writer
                .join()
                .map_err(|_| MoverError::Writer("panicked"))??;
            let crc = fetched?;
            if checksum_string(crc) != entry.checksum {
                return Err(MoverError::Mismatch {
                    copy: CopyKind::Download,
                    segment: entry.id,
                    object: key.to_owned(),
                    found: checksum_string(crc),
                    expected: entry.checksum.clone(),
                }
                .into());
            }
            Ok(entry.size_bytes)
        })
    }
}

/// Bytes gathered before they go to the download writer.
const WRITE_BATCH_BYTES: u64 = 1 << 20;

/// A part of a download: its chunks go to the writer thread in batches of about
/// [`WRITE_BATCH_BYTES`] with their offset in the file; the move's bandwidth limit applies.
struct ToWriter {
    limiter: Arc<crate::tiering::Limiter>,
    tx: tokio::sync::mpsc::Sender<(u64, Vec<Bytes>)>,
    /// File offset of the part.
    base: u64,
    /// File offset of the batch.
    at: u64,
    /// Bytes in the batch.
    len: u64,
    batch: Vec<Bytes>,
}

impl ToWriter {
    async fn send(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let at = self.at;
        self.at += std::mem::take(&mut self.len);
        self.tx
            .send((at, batch))
            .await
            .map_err(|_| MoverError::Writer("stopped").into())
    }
}

impl PartSink for ToWriter {
    async fn chunk(&mut self, offset: u64, bytes: Bytes) -> Result<()> {
        self.limiter.acquire(bytes.len() as u64).await;
        let at = self.base + offset;
        if at != self.at + self.len {
            // The part is read again from its start: what was gathered will be rewritten.
            self.batch.clear();
            (self.at, self.len) = (at, 0);
        }
        self.len += bytes.len() as u64;
        self.batch.push(bytes);
        if self.len >= WRITE_BATCH_BYTES {
            self.send().await?;
        }
        Ok(())
    }

    fn finish(&mut self) -> impl Future<Output = Result<()>> + Send {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks gather into batches of about 1 MiB at their file offsets; when a part starts again
    /// from its beginning (a retried read), what was gathered and not sent is dropped, because
    /// the new attempt rewrites it.
    #[test]
    fn download_batches_follow_offsets_and_a_restarted_part() {
        const K: usize = 400 << 10;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let mut part = ToWriter {
            limiter: Arc::new(crate::tiering::Limiter::new(None)),
            tx,
            base: 1000,
            at: 1000,
            len: 0,
            batch: Vec::new(),
        };
        let chunk = |b: u8, n: usize| Bytes::from(vec![b; n]);
        rt.block_on(async {
            for (i, b) in [1u8, 2, 3].into_iter().enumerate() {
                part.chunk((i * K) as u64, chunk(b, K))
                    .await
                    .expect("chunk");
            }
            part.chunk(3 * K as u64, chunk(4, 100))
                .await
                .expect("chunk");
            // The read breaks and the part starts again.
            part.chunk(0, chunk(5, K)).await.expect("chunk");
            part.chunk(K as u64, chunk(6, K)).await.expect("chunk");
            part.finish().await.expect("finish");
        });
        drop(part);
        let mut sent = Vec::new();
        while let Ok((at, batch)) = rx.try_recv() {
            let firsts: Vec<(u8, usize)> = batch.iter().map(|b| (b[0], b.len())).collect();
            sent.push((at, firsts));
        }
        assert_eq!(
            sent,
            [
                (1000, vec![(1, K), (2, K), (3, K)]),
                (1000, vec![(5, K), (6, K)]),
            ]
        );
    }
}
