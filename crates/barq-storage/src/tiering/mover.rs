//! One move of one segment between tiers, in the order DESIGN.md §6 requires:
//! copy → verify → commit the manifest → delete the source. Downloads and local copies go to a
//! `*.tmp` file that is fsynced, verified and renamed (and the directory fsynced) before the
//! commit. Each step boundary has a failpoint; tests crash there and reopen.

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
use super::store::path;
use crate::collection::{Collection, SegmentHandle};
use crate::fsutil;
use crate::manifest::{SegmentEntry, StorageTier, checksum_string};
use crate::options::{
    FP_TIER_AFTER_COMMIT, FP_TIER_AFTER_DOWNLOAD, FP_TIER_AFTER_UPLOAD, FP_TIER_AFTER_VERIFY,
};
use crate::segment::{MmapSource, RangeSource, Segment};

/// Multipart parts in flight per upload.
const PARTS_IN_FLIGHT: usize = 4;

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
            self.fetch_in_parts(key, entry.size_bytes, |_| async { Ok(()) })
                .await?
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

    /// Read `size` bytes of `key` as ranged GETs of `multipart_part_bytes`, a few in flight,
    /// in order; each part goes through the bandwidth limiter and `sink` (which may wait, e.g. for
    /// room in a writer's queue, while the next parts keep arriving). Returns the CRC32C and the
    /// length read.
    async fn fetch_in_parts<F, Fut>(&self, key: &str, size: u64, mut sink: F) -> Result<(u32, u64)>
    where
        F: FnMut(Bytes) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let cold = &self.env.cold;
        let part = self.env.options.multipart_part_bytes.max(1 << 20) as u64;
        let ranges: Vec<std::ops::Range<u64>> = (0..size.div_ceil(part))
            .map(|i| i * part..((i + 1) * part).min(size))
            .collect();
        let mut parts = futures::stream::iter(ranges)
            .map(|r| cold.get_range(key, r))
            .buffered(PARTS_IN_FLIGHT);
        let (mut crc, mut len) = (0u32, 0u64);
        while let Some(bytes) = parts.next().await {
            let bytes = bytes?;
            self.env.limiter.acquire(bytes.len() as u64).await;
            crc = crc32c::crc32c_append(crc, &bytes);
            len += bytes.len() as u64;
            sink(bytes).await?;
        }
        Ok((crc, len))
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
    /// are written by a thread of their own, which starts each part's writeback as it goes, so
    /// the network and the disk work at the same time and the final fsync has less left.
    fn download_to(
        &self,
        key: &str,
        entry: &SegmentEntry,
        tmp: &Path,
        progress: Progress<'_>,
    ) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(PARTS_IN_FLIGHT);
        let started = std::time::Instant::now();
        std::thread::scope(|s| {
            let writer = std::thread::Builder::new()
                .name("barq-download".into())
                .spawn_scoped(s, move || -> Result<()> {
                    let io = |what: &str, e| Error::io(format_args!("{what} {}", tmp.display()), e);
                    let mut file = std::fs::File::create(tmp).map_err(|e| io("create", e))?;
                    let mut written = 0u64;
                    let mut waited = std::time::Duration::ZERO;
                    loop {
                        let t = std::time::Instant::now();
                        let Some(chunk) = rx.blocking_recv() else {
                            break;
                        };
                        waited += t.elapsed();
                        file.write_all(&chunk).map_err(|e| io("write", e))?;
                        fsutil::start_writeback(&file, written, chunk.len() as u64);
                        written += chunk.len() as u64;
                        progress(written);
                    }
                    let written_at = started.elapsed();
                    file.sync_all().map_err(|e| io("fsync", e))?;
                    tracing::debug!(
                        bytes = written,
                        ?written_at,
                        waited_for_network = ?waited,
                        fsync = ?(started.elapsed() - written_at),
                        "download written"
                    );
                    Ok(())
                })
                .map_err(|e| Error::io("start the download writer thread", e))?;
            let fetched =
                self.env
                    .cold
                    .block_on(self.fetch_in_parts(key, entry.size_bytes, move |chunk| {
                        let tx = tx.clone();
                        async move {
                            tx.send(chunk).await.map_err(|_| {
                                Error::new(ErrorKind::Internal, "the download writer stopped")
                            })
                        }
                    }));
            tracing::debug!(fetched_at = ?started.elapsed(), "download fetched");
            // The sender is gone with the closure: the writer drains, fsyncs and ends. Its error,
            // if any, is the cause of a failed send.
            writer
                .join()
                .map_err(|_| Error::new(ErrorKind::Internal, "the download writer panicked"))??;
            let (crc, len) = fetched?;
            if len != entry.size_bytes || checksum_string(crc) != entry.checksum {
                return Err(Error::corruption(format!(
                    "downloaded copy of segment {} ({key}) does not match: {len} bytes, {}; expected {} bytes, {}",
                    entry.id,
                    checksum_string(crc),
                    entry.size_bytes,
                    entry.checksum
                )));
            }
            Ok(len)
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
            let mut out = std::fs::File::create(&tmp)
                .map_err(|e| Error::io(format_args!("create {}", tmp.display()), e))?;
            let mut buf = vec![0u8; 1 << 20];
            let (mut crc, mut len) = (0u32, 0u64);
            loop {
                let n = input
                    .read(&mut buf)
                    .map_err(|e| Error::io(format_args!("read {}", src.display()), e))?;
                if n == 0 {
                    break;
                }
                self.env.cold.block_on(self.env.limiter.acquire(n as u64));
                out.write_all(&buf[..n])
                    .map_err(|e| Error::io(format_args!("write {}", tmp.display()), e))?;
                fsutil::start_writeback(&out, len, n as u64);
                crc = crc32c::crc32c_append(crc, &buf[..n]);
                len += n as u64;
                progress(len);
            }
            out.sync_all()
                .map_err(|e| Error::io(format_args!("fsync {}", tmp.display()), e))?;
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
