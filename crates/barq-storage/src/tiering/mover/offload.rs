//! Hot or Warm → Cold: upload (multipart for large segments), verify, commit, delete the local
//! file. A segment that still has a verified copy in the store (Local+Remote) is not uploaded
//! again.

use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use barq_core::{ErrorKind, Result};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::{ObjectStoreExt, PutPayload};

use super::{CopyKind, Mover, MoverError, Progress};
use crate::collection::SegmentHandle;
use crate::fsutil::remove_durably;
use crate::manifest::{SegmentEntry, StorageTier, checksum_string};
use crate::options::{FP_TIER_AFTER_COMMIT, FP_TIER_AFTER_UPLOAD, FP_TIER_AFTER_VERIFY};
use crate::tiering::RemoteSource;
use crate::tiering::store::{PARTS_IN_FLIGHT, PartSink, path};

impl Mover<'_> {
    /// Upload on seal: copy segment `id` to the store, verify the copy and record it, leaving
    /// the segment where it is (Local+Remote). Returns the bytes uploaded: 0 when the segment
    /// is Cold or already has a copy.
    pub(crate) fn copy_to_store(&self, id: u64) -> Result<u64> {
        self.slots.check_open()?;
        let _busy = self.slots.mark_busy(id, crate::collection::UPLOADING)?;
        let h = self.slots.handle(id)?;
        let entry = &h.entry;
        if entry.tier == StorageTier::Cold || entry.remote_key.is_some() {
            return Ok(0);
        }
        let cold = &self.env.cold;
        let key = cold.segment_key(self.slots.name(), entry.id, &entry.checksum);
        let src = self.local_path(entry, entry.tier)?;
        let n = cold.block_on(self.upload(&src, &key, entry.size_bytes, &|_| {}))?;
        self.env.failpoints.check(FP_TIER_AFTER_UPLOAD)?;
        cold.block_on(self.verify_remote(&key, entry))?;
        let committed = self.slots.commit_remote_copy(entry.id, key)?;
        self.slots.replace_handle(h.with_entry(committed));
        self.env
            .counters
            .seal_uploads
            .fetch_add(1, Ordering::Relaxed);
        Ok(n)
    }

    pub(super) fn offload(&self, h: &SegmentHandle, progress: Progress<'_>) -> Result<u64> {
        let env = &self.env;
        let cold = &env.cold;
        let entry = &h.entry;
        let src = self.local_path(entry, entry.tier)?;
        // Local+Remote: a verified copy from an earlier upload needs no upload.
        let key = entry
            .remote_key
            .clone()
            .unwrap_or_else(|| cold.segment_key(self.slots.name(), entry.id, &entry.checksum));
        let p = path(&key);
        let have_remote = if entry.remote_key.is_some() {
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
            self.env.failpoints.check(FP_TIER_AFTER_UPLOAD)?;
            cold.block_on(self.verify_remote(&key, entry))?;
        }
        self.env.failpoints.check(FP_TIER_AFTER_VERIFY)?;
        let committed = self.slots.commit_location(
            entry.id,
            StorageTier::Cold,
            Some(key.clone()),
            self.env.clock.now_ms(),
        )?;
        self.env.failpoints.check(FP_TIER_AFTER_COMMIT)?;
        let footer = h.segment().ok().map(|s| s.footer().clone());
        let source = Arc::new(RemoteSource::new(
            cold.clone(),
            Arc::clone(&env.cache),
            key,
            self.namespace(entry),
            entry.size_bytes,
        ));
        // The cold copy's footer, index head, tombstones and row map are kept locally from the
        // local file; a failure only means the first query fetches them.
        if let Ok(seg) = h.segment()
            && let Err(e) = seg.keep_metadata_in(source.as_ref())
        {
            tracing::warn!(segment = entry.id, error = %e, "could not keep a cold segment's metadata locally");
        }
        self.slots
            .replace_handle(h.relocated(committed, source, footer));
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
        let mut file = std::fs::File::open(src).map_err(MoverError::io("open", src))?;
        let part = env.options.multipart_part_bytes.max(5 << 20);
        let read_part = |file: &mut std::fs::File, n: usize| -> Result<Bytes> {
            let mut buf = vec![0u8; n];
            file.read_exact(&mut buf)
                .map_err(MoverError::io("read", src))?;
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
    /// size, see [`UploadVerification`](crate::tiering::UploadVerification)).
    async fn verify_remote(&self, key: &str, entry: &SegmentEntry) -> Result<()> {
        let cold = &self.env.cold;
        let p = path(key);
        if self.env.options.verify_uploads == crate::tiering::UploadVerification::Size {
            let meta = cold
                .retry(&format!("head {key}"), || cold.inner().head(&p))
                .await?;
            if meta.size != entry.size_bytes {
                let _ = cold.inner().delete(&p).await;
                return Err(MoverError::Mismatch {
                    copy: CopyKind::Upload,
                    segment: entry.id,
                    object: key.to_owned(),
                    found: format!("{} bytes", meta.size),
                    expected: format!("{} bytes", entry.size_bytes),
                }
                .into());
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
            return Err(MoverError::Mismatch {
                copy: CopyKind::Upload,
                segment: entry.id,
                object: key.to_owned(),
                found: format!("{len} bytes, {}", checksum_string(crc)),
                expected: format!("{} bytes, {}", entry.size_bytes, entry.checksum),
            }
            .into());
        }
        Ok(())
    }
}

/// A part of a verifying read-back: nothing is kept; the move's bandwidth limit applies.
struct Limited(Arc<crate::tiering::Limiter>);

impl PartSink for Limited {
    fn chunk(&mut self, _: u64, bytes: Bytes) -> impl Future<Output = Result<()>> + Send {
        let limiter = Arc::clone(&self.0);
        async move {
            limiter.acquire(bytes.len() as u64).await;
            Ok(())
        }
    }
}
