//! One move of one segment between tiers, in the order docs/design.md §6 requires:
//! copy → verify → commit the manifest → delete the source. Downloads and local copies go to a
//! `*.tmp` file that is fsynced, verified and renamed (and the directory fsynced) before the
//! commit. Each step boundary has a failpoint; tests crash there and reopen.

use std::future::Future;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use barq_core::{Error, ErrorKind, Result};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::RemoteSource;
use super::store::{PARTS_IN_FLIGHT, PartSink, path};
use crate::collection::{Collection, SegmentHandle};
use crate::fsutil;
use crate::manifest::{SegmentEntry, StorageTier, checksum_string};
use crate::options::{
    FP_TIER_AFTER_COMMIT, FP_TIER_AFTER_DOWNLOAD, FP_TIER_AFTER_UPLOAD, FP_TIER_AFTER_VERIFY,
};
use crate::segment::{MmapSource, RangeSource, Segment};

/// What a move did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveOutcome {
    /// The segment's collection.
    pub collection: String,
    /// The segment.
    pub segment_id: u64,
    /// Where it was.
    pub from: StorageTier,
    /// Where it is now.
    pub to: StorageTier,
    /// Bytes transferred (0 when nothing had to be copied).
    pub bytes: u64,
}

/// Marks a segment busy for the life of the guard.
pub(crate) struct BusyGuard<'a> {
    collection: &'a Collection,
    id: u64,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.collection.busy.lock().remove(&self.id);
    }
}

/// Progress callback: bytes transferred so far by this move.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

impl Collection {
    /// Mark `ids` busy with `what`, or fail with `Conflict` if one already is.
    pub(crate) fn mark_busy(&self, id: u64, what: &'static str) -> Result<BusyGuard<'_>> {
        let mut busy = self.busy.lock();
        if let Some(other) = busy.get(&id) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "segment {id} of collection \"{}\" is busy ({other}); try again later",
                    self.config.name
                ),
            ));
        }
        busy.insert(id, what);
        Ok(BusyGuard {
            collection: self,
            id,
        })
    }

    /// The current handle of segment `id`.
    pub(crate) fn handle(&self, id: u64) -> Result<Arc<SegmentHandle>> {
        self.state
            .read()
            .segments
            .iter()
            .find(|h| h.entry.id == id)
            .cloned()
            .ok_or_else(|| {
                Error::not_found(format!(
                    "collection \"{}\" has no segment {id}",
                    self.config.name
                ))
            })
    }

    fn replace_handle(&self, new: Arc<SegmentHandle>) {
        let mut st = self.state.write();
        if let Some(slot) = st.segments.iter_mut().find(|h| h.entry.id == new.entry.id) {
            // Same rows, same order: the dead bitmaps stay valid.
            *slot = new;
        }
    }

    fn commit_location(
        &self,
        id: u64,
        tier: StorageTier,
        remote_key: Option<String>,
    ) -> Result<SegmentEntry> {
        let name = self.config.name.clone();
        let now = self.env.clock.now_ms();
        self.manifest.commit(|m| {
            let s = m
                .collections
                .get_mut(&name)
                .and_then(|c| c.segments.iter_mut().find(|s| s.id == id))
                .ok_or_else(|| {
                    Error::not_found(format!("segment {id} of \"{name}\" vanished during a move"))
                })?;
            s.tier = tier;
            s.remote_key = remote_key;
            s.moved_at_ms = Some(now);
            Ok(s.clone())
        })
    }

    /// Move segment `id` to `to` (see the module docs). A failure leaves it where it was.
    pub(crate) fn move_segment(
        &self,
        id: u64,
        to: StorageTier,
        progress: Progress<'_>,
    ) -> Result<MoveOutcome> {
        self.check_open()?;
        let _busy = self.mark_busy(id, "moving")?;
        let h = self.handle(id)?;
        let from = h.entry.tier;
        let mut outcome = MoveOutcome {
            collection: self.config.name.clone(),
            segment_id: id,
            from,
            to,
            bytes: 0,
        };
        if from == to {
            return Ok(outcome);
        }
        let started = std::time::Instant::now();
        outcome.bytes = match (from, to) {
            (_, StorageTier::Cold) => self.offload(&h, progress)?,
            (StorageTier::Cold, _) => self.download(&h, to, progress)?,
            _ => self.copy_local(&h, to, progress)?,
        };
        self.env.counters.moves_done.fetch_add(1, Ordering::Relaxed);
        self.env.counters.move_millis.fetch_add(
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        tracing::info!(collection = %self.config.name, segment = id, %from, %to, bytes = outcome.bytes, "segment moved");
        Ok(outcome)
    }

    fn local_path(&self, entry: &SegmentEntry, tier: StorageTier) -> Result<std::path::PathBuf> {
        Ok(self
            .env
            .segments_dir(&self.dir, &self.config.name, tier)?
            .join(&entry.file_name))
    }

    fn offload(&self, h: &SegmentHandle, progress: Progress<'_>) -> Result<u64> {
        let env = &self.env;
        let cold = &env.cold;
        let entry = &h.entry;
        let src = self.local_path(entry, entry.tier)?;
        let key = cold.segment_key(&self.config.name, entry.id);
        let p = path(&key);
        // Local+Remote: a verified copy from an earlier offload needs no upload.
        let have_remote = if entry.remote_key.as_deref() == Some(key.as_str()) {
            match cold.block_on(cold.retry(&format!("head {key}"), || cold.inner().head(&p))) {
                Ok(meta) => meta.size == entry.size_bytes,
                Err(e) if e.kind() == ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            }
        } else {
            false
        };
        let mut moved = 0;
        if !have_remote {
            moved = cold.block_on(self.upload(&src, &key, entry.size_bytes, progress))?;
            self.options.failpoints.check(FP_TIER_AFTER_UPLOAD)?;
            cold.block_on(self.verify_remote(&key, entry))?;
        }
        self.options.failpoints.check(FP_TIER_AFTER_VERIFY)?;
        let committed = self.commit_location(entry.id, StorageTier::Cold, Some(key.clone()))?;
        self.options.failpoints.check(FP_TIER_AFTER_COMMIT)?;
        let footer = h.segment().ok().map(|s| s.footer().clone());
        let source = Arc::new(RemoteSource::new(
            cold.clone(),
            Arc::clone(&env.cache),
            key,
            SegmentHandle::namespace(&self.config.name, entry),
            entry.size_bytes,
        ));
        self.replace_handle(h.relocated(committed, source, footer));
        remove_durably(&src)?;
        Ok(moved)
    }

    async fn upload(
        &self,
        src: &Path,
        key: &str,
        size: u64,
        progress: Progress<'_>,
    ) -> Result<u64> {
        let env = &self.env;
        let cold = &env.cold;
        let p = path(key);
        let mut file = std::fs::File::open(src)
            .map_err(|e| Error::io(format_args!("open {}", src.display()), e))?;
        let part = env.options.multipart_part_bytes.max(5 << 20);
        let read_part = |file: &mut std::fs::File, n: usize| -> Result<Bytes> {
            let mut buf = vec![0u8; n];
            file.read_exact(&mut buf)
                .map_err(|e| Error::io(format_args!("read {}", src.display()), e))?;
            Ok(Bytes::from(buf))
        };
        if size as usize <= part {
            let bytes = read_part(&mut file, size as usize)?;
            env.limiter.acquire(size).await;
            cold.retry(&format!("put {key}"), || {
                cold.inner().put(&p, PutPayload::from(bytes.clone()))
            })
            .await?;
            progress(size);
        } else {
            let mut upload = cold
                .retry(&format!("start multipart upload of {key}"), || {
                    cold.inner().put_multipart(&p)
                })
                .await?;
            let mut in_flight = FuturesUnordered::new();
            let mut sent = 0u64;
            let mut done = 0u64;
            let result: Result<()> = async {
                while sent < size {
                    let n = part.min((size - sent) as usize);
                    let bytes = read_part(&mut file, n)?;
                    env.limiter.acquire(n as u64).await;
                    let fut = upload.put_part(PutPayload::from(bytes));
                    in_flight.push(async move { fut.await.map(|()| n as u64) });
                    sent += n as u64;
                    cold.counters.requests.fetch_add(1, Ordering::Relaxed);
                    while in_flight.len() >= PARTS_IN_FLIGHT {
                        if let Some(r) = in_flight.next().await {
                            done +=
                                r.map_err(|e| cold.error(&format!("upload part of {key}"), e))?;
                            progress(done);
                        }
                    }
                }
                while let Some(r) = in_flight.next().await {
                    done += r.map_err(|e| cold.error(&format!("upload part of {key}"), e))?;
                    progress(done);
                }
                Ok(())
            }
            .await;
            drop(in_flight);
            if let Err(e) = result {
                let _ = upload.abort().await;
                return Err(e);
            }
            cold.counters.requests.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = upload.complete().await {
                let _ = upload.abort().await;
                return Err(cold.error(&format!("complete multipart upload of {key}"), e));
            }
        }
        env.counters.uploads.fetch_add(1, Ordering::Relaxed);
        env.counters
            .bytes_uploaded
            .fetch_add(size, Ordering::Relaxed);
        Ok(size)
    }

    /// Read the object back and compare its size and CRC32C with the manifest's (or only its
    /// size, see [`UploadVerification`](super::UploadVerification)).
    async fn verify_remote(&self, key: &str, entry: &SegmentEntry) -> Result<()> {
        let cold = &self.env.cold;
        let p = path(key);
        if self.env.options.verify_uploads == super::UploadVerification::Size {
            let meta = cold
                .retry(&format!("head {key}"), || cold.inner().head(&p))
                .await?;
            if meta.size != entry.size_bytes {
                let _ = cold.inner().delete(&p).await;
                return Err(Error::corruption(format!(
                    "uploaded copy of segment {} ({key}) is {} bytes, expected {}",
                    entry.id, meta.size, entry.size_bytes
                )));
            }
            return Ok(());
        }
        let meta = cold
            .retry(&format!("head {key}"), || cold.inner().head(&p))
            .await?;
        let (crc, len) = if meta.size == entry.size_bytes {
            let (crc, _) = cold
                .read_parts(
                    key,
                    0..entry.size_bytes,
                    self.read_part_bytes(),
                    PARTS_IN_FLIGHT,
                    |_| Limited(Arc::clone(&self.env.limiter)),
                )
                .await?;
            (crc, entry.size_bytes)
        } else {
            (0, meta.size)
        };
        if len != entry.size_bytes || checksum_string(crc) != entry.checksum {
            let _ = cold.inner().delete(&p).await;
            return Err(Error::corruption(format!(
                "uploaded copy of segment {} ({key}) does not match: {len} bytes, {}; expected {} bytes, {}",
                entry.id,
                checksum_string(crc),
                entry.size_bytes,
                entry.checksum
            )));
        }
        Ok(())
    }

    /// Size of the ranged reads of a download or a read-back (the multipart part size, at least
    /// 1 MiB).
    fn read_part_bytes(&self) -> u64 {
        self.env.options.multipart_part_bytes.max(1 << 20) as u64
    }

    fn download(&self, h: &SegmentHandle, to: StorageTier, progress: Progress<'_>) -> Result<u64> {
        let env = &self.env;
        let entry = &h.entry;
        let key = entry
            .remote_key
            .clone()
            .ok_or_else(|| Error::corruption("cold segment without a remote key"))?;
        let dest = self.local_path(entry, to)?;
        if let Some(dir) = dest.parent() {
            fsutil::create_dir_durable(dir)?;
        }
        let tmp = fsutil::tmp_path(&dest);
        let result = self.download_to(&key, entry, &tmp, progress);
        let len = place_tmp(&tmp, &dest, result)?;
        self.options.failpoints.check(FP_TIER_AFTER_DOWNLOAD)?;
        let committed = self.commit_location(entry.id, to, Some(key))?;
        let source: Arc<dyn RangeSource> = Arc::new(MmapSource::open(&dest)?);
        let footer = Segment::open(Arc::clone(&source))?.footer().clone();
        self.replace_handle(h.relocated(committed, source, Some(footer)));
        env.cache
            .remove_namespace(&SegmentHandle::namespace(&self.config.name, entry));
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
                    let io = |what: &str, e| Error::io(format_args!("{what} {}", tmp.display()), e);
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
                            return Err(Error::corruption(format!(
                                "download of segment {} wrote {written} bytes, the file has {on_disk}; expected {}",
                                entry.id, entry.size_bytes
                            )));
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
                .map_err(|e| Error::io("start the download writer thread", e))?;
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
                .map_err(|_| Error::new(ErrorKind::Internal, "the download writer panicked"))??;
            let crc = fetched?;
            if checksum_string(crc) != entry.checksum {
                return Err(Error::corruption(format!(
                    "downloaded copy of segment {} ({key}) does not match: {}; expected {}",
                    entry.id,
                    checksum_string(crc),
                    entry.checksum
                )));
            }
            Ok(entry.size_bytes)
        })
    }

    fn copy_local(
        &self,
        h: &SegmentHandle,
        to: StorageTier,
        progress: Progress<'_>,
    ) -> Result<u64> {
        let entry = &h.entry;
        let src = self.local_path(entry, entry.tier)?;
        let dest = self.local_path(entry, to)?;
        if let Some(dir) = dest.parent() {
            fsutil::create_dir_durable(dir)?;
        }
        let tmp = fsutil::tmp_path(&dest);
        let copied = (|| -> Result<u64> {
            let mut input = std::fs::File::open(&src)
                .map_err(|e| Error::io(format_args!("open {}", src.display()), e))?;
            let out = std::fs::File::create(&tmp)
                .map_err(|e| Error::io(format_args!("create {}", tmp.display()), e))?;
            let mut buf = vec![0u8; 1 << 20];
            let (crc, len) = fsutil::write_synced(&out, &tmp, |wrote| {
                let (mut crc, mut len) = (0u32, 0u64);
                loop {
                    let n = input
                        .read(&mut buf)
                        .map_err(|e| Error::io(format_args!("read {}", src.display()), e))?;
                    if n == 0 {
                        break;
                    }
                    self.env.cold.block_on(self.env.limiter.acquire(n as u64));
                    (&out)
                        .write_all(&buf[..n])
                        .map_err(|e| Error::io(format_args!("write {}", tmp.display()), e))?;
                    wrote();
                    crc = crc32c::crc32c_append(crc, &buf[..n]);
                    len += n as u64;
                    progress(len);
                }
                Ok((crc, len))
            })?;
            if len != entry.size_bytes || checksum_string(crc) != entry.checksum {
                return Err(Error::corruption(format!(
                    "copy of segment {} does not match the manifest ({len} bytes, {})",
                    entry.id,
                    checksum_string(crc)
                )));
            }
            Ok(len)
        })();
        let len = place_tmp(&tmp, &dest, copied)?;
        let committed = self.commit_location(entry.id, to, entry.remote_key.clone())?;
        self.options.failpoints.check(FP_TIER_AFTER_COMMIT)?;
        let source: Arc<dyn RangeSource> = Arc::new(MmapSource::open(&dest)?);
        let footer = h.segment().ok().map(|s| s.footer().clone());
        self.replace_handle(h.relocated(committed, source, footer));
        remove_durably(&src)?;
        self.env
            .counters
            .local_copies
            .fetch_add(1, Ordering::Relaxed);
        Ok(len)
    }
}

/// Finish a verified copy written to `tmp`: on success rename it to `dest` and fsync the
/// directory; on failure remove `tmp`.
fn place_tmp(tmp: &Path, dest: &Path, copied: Result<u64>) -> Result<u64> {
    let len = match copied {
        Ok(len) => len,
        Err(e) => {
            let _ = std::fs::remove_file(tmp);
            return Err(e);
        }
    };
    std::fs::rename(tmp, dest)
        .map_err(|e| Error::io(format_args!("rename {}", tmp.display()), e))?;
    fsutil::fsync_dir(dest.parent().unwrap_or(Path::new(".")))?;
    Ok(len)
}

/// Remove a file and fsync its directory (a missing file is fine).
pub(crate) fn remove_durably(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => fsutil::fsync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format_args!("remove {}", path.display()), e)),
    }
}

/// A part of a verifying read-back: nothing is kept; the move's bandwidth limit applies.
struct Limited(Arc<super::Limiter>);

impl PartSink for Limited {
    fn chunk(&mut self, _: u64, bytes: Bytes) -> impl Future<Output = Result<()>> + Send {
        let limiter = Arc::clone(&self.0);
        async move {
            limiter.acquire(bytes.len() as u64).await;
            Ok(())
        }
    }
}

/// Bytes gathered before they go to the download writer.
const WRITE_BATCH_BYTES: u64 = 1 << 20;

/// A part of a download: its chunks go to the writer thread in batches of about
/// [`WRITE_BATCH_BYTES`] with their offset in the file; the move's bandwidth limit applies.
struct ToWriter {
    limiter: Arc<super::Limiter>,
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
            .map_err(|_| Error::new(ErrorKind::Internal, "the download writer stopped"))
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
            limiter: Arc::new(super::super::Limiter::new(None)),
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
