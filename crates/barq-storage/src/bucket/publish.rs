//! [`Publisher`]: claims the writer's epoch, publishes manifest versions once every segment
//! they name is in the store, notices a newer writer (fencing) and prunes old versions.

use barq_core::{Error, ErrorKind, Result};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{
    EPOCH_DIR, MANIFEST_DIR, PublishedManifest, encode, epoch_key, list_numbered,
    list_numbered_after, manifest_key,
};
use crate::manifest::{Manifest, ManifestStore};
use crate::poison::Poison;
use crate::tiering::TierEnv;
use crate::tiering::store::path;

/// What `status` shows of the bucket a writer publishes to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketStatus {
    /// Whether sealed segments are uploaded and manifests published (`upload_on_seal`).
    pub enabled: bool,
    /// The epoch this writer claimed, once it has.
    pub epoch: Option<u64>,
    /// The newest manifest version this writer published.
    pub published_version: Option<u64>,
    /// When it was published, ms since the Unix epoch.
    pub published_at_ms: Option<u64>,
    /// The local manifest's version.
    pub local_version: u64,
    /// Sealed segments that have no copy in the store yet.
    pub upload_lag_segments: u64,
    /// Their bytes.
    pub upload_lag_bytes: u64,
    /// Why the last upload or publish failed, until one succeeds.
    pub last_error: Option<String>,
    /// Set once a newer writer claimed the bucket: this node takes no more writes.
    pub fenced: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    epoch: Option<u64>,
    published: Option<u64>,
    published_at_ms: Option<u64>,
    /// The segment objects the newest published version names: never orphans while it is the
    /// newest, however long publishing stalls.
    published_keys: std::collections::HashSet<String>,
    /// When this writer last checked that no newer writer claimed the bucket (ms).
    fence_checked_ms: u64,
    last_error: Option<String>,
}

/// An idle writer checks for a newer one this often (a writer that publishes checks each time).
const FENCE_CHECK_MS: u64 = 5_000;

/// See the module docs of [`crate::bucket`].
#[derive(Debug, Default)]
pub(crate) struct Publisher {
    state: Mutex<State>,
    /// One publish at a time.
    running: Mutex<()>,
    /// The failure last logged by the upload loop.
    last_logged: Mutex<Option<String>>,
}

/// The segments of `m` that have no copy in the store, and their bytes.
pub(crate) fn upload_lag(m: &Manifest) -> (u64, u64) {
    m.collections
        .values()
        .flat_map(|c| &c.segments)
        .filter(|s| s.remote_key.is_none())
        .fold((0, 0), |(n, b), s| (n + 1, b + s.size_bytes))
}

impl Publisher {
    /// The segment objects the newest published version names.
    pub(crate) fn published_keys(&self) -> std::collections::HashSet<String> {
        self.state.lock().published_keys.clone()
    }

    /// Claim this writer's epoch if it has none yet (before its first upload, so that it
    /// never writes to a bucket a newer writer owns), and check that no newer writer claimed
    /// the bucket since: at once when `now`, else at most every few seconds. `Conflict` once
    /// fenced.
    pub(crate) fn ensure_owner(
        &self,
        env: &TierEnv,
        manifest: &ManifestStore,
        poison: &Poison,
        now: bool,
    ) -> Result<u64> {
        if let Some(why) = poison.fenced() {
            return Err(Error::new(ErrorKind::Conflict, why.to_owned()));
        }
        let (claimed, checked) = {
            let st = self.state.lock();
            (st.epoch, st.fence_checked_ms)
        };
        let epoch = match claimed {
            Some(e) => e,
            None => return self.claim(env, manifest),
        };
        let at = env.clock.now_ms();
        if now || at.saturating_sub(checked) >= FENCE_CHECK_MS {
            self.check_fence(env, epoch, poison)?;
            self.state.lock().fence_checked_ms = at;
        }
        Ok(epoch)
    }

    /// Whether `e` is another failure than the last one logged (and remember it).
    pub(crate) fn note_error(&self, e: &Error) -> bool {
        let text = e.to_string();
        let mut last = self.last_logged.lock();
        let new = last.as_deref() != Some(text.as_str());
        *last = Some(text);
        new
    }

    /// Remember why an upload or a publish failed (cleared by the next publish).
    pub(crate) fn record_error(&self, e: &Error) {
        self.state.lock().last_error = Some(e.to_string());
    }

    /// The status for `status()` and metrics.
    pub(crate) fn status(
        &self,
        env: &TierEnv,
        manifest: &Manifest,
        poison: &Poison,
    ) -> BucketStatus {
        let st = self.state.lock();
        let (segments, bytes) = upload_lag(manifest);
        BucketStatus {
            enabled: env.shared_bucket,
            epoch: st.epoch,
            published_version: st.published,
            published_at_ms: st.published_at_ms,
            local_version: manifest.version,
            upload_lag_segments: if env.shared_bucket { segments } else { 0 },
            upload_lag_bytes: if env.shared_bucket { bytes } else { 0 },
            last_error: st.last_error.clone(),
            fenced: poison.fenced().map(str::to_owned),
        }
    }

    /// Publish the current manifest version if it is newer than the last one published and
    /// every segment it names is in the store. Claims an epoch first if this writer has none.
    /// Returns the version published, `None` when there was nothing to publish yet.
    pub(crate) fn publish(
        &self,
        env: &TierEnv,
        manifest: &ManifestStore,
        poison: &Poison,
    ) -> Result<Option<u64>> {
        let _one = self.running.lock();
        let r = self.publish_locked(env, manifest, poison);
        let mut st = self.state.lock();
        match &r {
            Ok(_) => {
                st.last_error = None;
                *self.last_logged.lock() = None;
            }
            Err(e) => st.last_error = Some(e.to_string()),
        }
        r
    }

    fn publish_locked(
        &self,
        env: &TierEnv,
        manifest: &ManifestStore,
        poison: &Poison,
    ) -> Result<Option<u64>> {
        let epoch = self.ensure_owner(env, manifest, poison, false)?;
        let cold = &env.cold;
        let snap = manifest.snapshot()?;
        if self
            .state
            .lock()
            .published
            .is_some_and(|p| p >= snap.version)
        {
            return Ok(None);
        }
        if upload_lag(&snap).0 > 0 {
            return Ok(None);
        }
        self.ensure_owner(env, manifest, poison, true)?;
        let version = snap.version;
        // A writer fenced just after a newer one listed the bucket may have published above
        // the number the newer one took: always publish above every version there.
        if let Some((above, _)) = cold
            .block_on(list_numbered_after(
                cold,
                MANIFEST_DIR,
                Some(version.saturating_sub(1)),
            ))?
            .last()
        {
            manifest.raise_version_above(*above)?;
            tracing::info!(
                version,
                above,
                "the bucket holds a newer version number; publishing above it"
            );
            return Ok(None);
        }
        let keys: std::collections::HashSet<String> = snap
            .collections
            .values()
            .flat_map(|c| c.segments.iter().filter_map(|s| s.remote_key.clone()))
            .collect();
        let now = env.clock.now_ms();
        let bytes = encode(&PublishedManifest {
            epoch,
            published_at_ms: now,
            writer_url: env.options.writer_url.clone(),
            manifest: snap,
        })?;
        let key = manifest_key(cold, version);
        let p = path(&key);
        let put = cold.block_on(cold.retry(&format!("publish {key}"), || {
            cold.inner().put_opts(
                &p,
                PutPayload::from(bytes.clone()),
                PutOptions::from(PutMode::Create),
            )
        }));
        match put {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Conflict => {
                // A put whose earlier attempt had landed (a retry, or a pass that failed after
                // it) finds a version of this writer's epoch: it is published.
                let theirs = cold.block_on(cold.retry(&format!("get {key}"), || async {
                    cold.inner().get(&p).await?.bytes().await
                }))?;
                let ours = super::decode(&key, &theirs).is_ok_and(|t| t.epoch == epoch);
                if !ours {
                    self.check_fence(env, epoch, poison)?;
                    let newest = cold
                        .block_on(list_numbered(cold, MANIFEST_DIR))?
                        .last()
                        .map_or(version, |(v, _)| *v);
                    manifest.raise_version_above(newest)?;
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "manifest version {version} already exists in {} (written by another \
                             writer); the next version is published after {newest}",
                            cold.description()
                        ),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
        let mut st = self.state.lock();
        st.published = Some(version);
        st.published_at_ms = Some(now);
        st.published_keys = keys;
        tracing::debug!(version, epoch, "manifest version published");
        Ok(Some(version))
    }

    /// Claim the next writer epoch with a create-only put, then raise the local manifest's
    /// version above the newest one in the bucket.
    fn claim(&self, env: &TierEnv, manifest: &ManifestStore) -> Result<u64> {
        let cold = &env.cold;
        for _ in 0..8 {
            let epochs = cold.block_on(list_numbered(cold, EPOCH_DIR))?;
            let next = epochs.last().map_or(1, |(e, _)| e + 1);
            let key = epoch_key(cold, next);
            let body = serde_json::json!({
                "epoch": next,
                "claimed_at_ms": env.clock.now_ms(),
                "pid": std::process::id(),
            })
            .to_string();
            let p = path(&key);
            let put = cold.block_on(cold.retry(&format!("claim {key}"), || {
                cold.inner().put_opts(
                    &p,
                    PutPayload::from(body.clone().into_bytes()),
                    PutOptions::from(PutMode::Create),
                )
            }));
            match put {
                Ok(_) => {
                    if let Some((newest, _)) =
                        cold.block_on(list_numbered(cold, MANIFEST_DIR))?.last()
                    {
                        manifest.raise_version_above(*newest)?;
                    }
                    {
                        let mut st = self.state.lock();
                        st.epoch = Some(next);
                        st.fence_checked_ms = env.clock.now_ms();
                    }
                    tracing::info!(epoch = next, store = %cold.description(), "claimed the writer epoch of the bucket");
                    return Ok(next);
                }
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "could not claim a writer epoch in {}: other writers claimed each one first",
                cold.description()
            ),
        ))
    }

    /// Fence this writer if a newer epoch exists.
    fn check_fence(&self, env: &TierEnv, epoch: u64, poison: &Poison) -> Result<()> {
        let cold = &env.cold;
        let key = epoch_key(cold, epoch + 1);
        let p = path(&key);
        match cold.block_on(cold.retry(&format!("head {key}"), || cold.inner().head(&p))) {
            Ok(_) => {
                let why = format!(
                    "a newer writer claimed epoch {} of {} (this node holds epoch {epoch}); it \
                     publishes nothing more",
                    epoch + 1,
                    cold.description()
                );
                tracing::error!(reason = %why, "fenced by a newer writer");
                poison.fence(why.clone());
                Err(Error::new(ErrorKind::Conflict, why))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Delete manifest versions older than the retention, always keeping the newest one that
    /// reads and checks (and any newer). Returns how many were deleted.
    pub(crate) fn prune(&self, env: &TierEnv) -> Result<u64> {
        let cold = &env.cold;
        let retention = env.options.manifest_retention.as_millis() as i64;
        let now = env.clock.now_ms() as i64;
        let versions = cold.block_on(list_numbered(cold, MANIFEST_DIR))?;
        let old = |m: i64| now - m >= retention;
        if !versions.iter().any(|(_, m)| old(*m)) {
            return Ok(0);
        }
        let Some(keep) = cold.block_on(super::newest_version(cold))?.0 else {
            return Ok(0);
        };
        let keep = keep.manifest.version;
        let mut n = 0;
        for (v, modified) in &versions {
            if !old(*modified) || *v >= keep {
                continue;
            }
            let key = manifest_key(cold, *v);
            let p = path(&key);
            cold.block_on(cold.retry(&format!("delete {key}"), || cold.inner().delete(&p)))?;
            n += 1;
        }
        Ok(n)
    }
}
