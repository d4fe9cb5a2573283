//! Hot ↔ Warm: copy into a `*.tmp` file under the bandwidth limit, fsync, check (length and
//! CRC32C), rename, commit, delete the source.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use barq_core::Result;

use super::{CopyKind, Mover, MoverError, Progress, place_tmp};
use crate::collection::SegmentHandle;
use crate::fsutil::{self, remove_durably};
use crate::manifest::{StorageTier, checksum_string};
use crate::options::FP_TIER_AFTER_COMMIT;
use crate::segment::{MmapSource, RangeSource};

impl Mover<'_> {
    pub(super) fn copy_local(
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
            let mut input = std::fs::File::open(&src).map_err(MoverError::io("open", &src))?;
            let out = std::fs::File::create(&tmp).map_err(MoverError::io("create", &tmp))?;
            let mut buf = vec![0u8; 1 << 20];
            let (crc, len) = fsutil::write_synced(&out, &tmp, |wrote| {
                let (mut crc, mut len) = (0u32, 0u64);
                loop {
                    let n = input.read(&mut buf).map_err(MoverError::io("read", &src))?;
                    if n == 0 {
                        break;
                    }
                    self.env.cold.block_on(self.env.limiter.acquire(n as u64));
                    (&out)
                        .write_all(&buf[..n])
                        .map_err(MoverError::io("write", &tmp))?;
                    wrote();
                    crc = crc32c::crc32c_append(crc, &buf[..n]);
                    len += n as u64;
                    progress(len);
                }
                Ok((crc, len))
            })?;
            if len != entry.size_bytes || checksum_string(crc) != entry.checksum {
                return Err(MoverError::Mismatch {
                    copy: CopyKind::Local,
                    segment: entry.id,
                    object: tmp.display().to_string(),
                    found: format!("{len} bytes, {}", checksum_string(crc)),
                    expected: format!("{} bytes, {}", entry.size_bytes, entry.checksum),
                }
                .into());
            }
            Ok(len)
        })();
        let len = place_tmp(&tmp, &dest, copied)?;
        let committed = self.slots.commit_location(
            entry.id,
            to,
            entry.remote_key.clone(),
            self.env.clock.now_ms(),
        )?;
        self.env.failpoints.check(FP_TIER_AFTER_COMMIT)?;
        let source: Arc<dyn RangeSource> = Arc::new(MmapSource::open(&dest)?);
        let footer = h.segment().ok().map(|s| s.footer().clone());
        self.slots
            .replace_handle(h.relocated(committed, source, footer));
        remove_durably(&src)?;
        self.env
            .counters
            .local_copies
            .fetch_add(1, Ordering::Relaxed);
        Ok(len)
    }
}
