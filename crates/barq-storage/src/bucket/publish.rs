//! [`Publisher`]: claims the writer's epoch, publishes manifest versions once every segment
//! they name is in the store, notices a newer writer (fencing) and prunes old versions.

use barq_core::{Error, ErrorKind, Result};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{
    EPOCH_DIR, MANIFEST_DIR, PublishedManifest, encode, epoch_key, list_numbered, manifest_key,
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
    last_error: Option<String>,
}

/// See the module docs of [`crate::bucket`].
#[derive(Debug, Default)]
pub(crate) struct Publisher {
    state: Mutex<State>,
    /// One publish at a time.
    running: Mutex<()>,
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
            Ok(_) => st.last_error = None,
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
        if let Some(why) = poison.fenced() {
            return Err(Error::new(ErrorKind::Conflict, why.to_owned()));
        }
        let cold = &env.cold;
        let claimed = self.state.lock().epoch;
        let epoch = match claimed {
            Some(e) => e,
            None => self.claim(env, manifest)?,
        };
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
        self.check_fence(env, epoch, poison)?;
        let version = snap.version;
        let now = env.clock.now_ms();
        let bytes = encode(&PublishedManifest {
            epoch,
            published_at_ms: now,
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
                // A retried put whose first attempt had landed finds its own bytes.
                let theirs = cold.block_on(cold.retry(&format!("get {key}"), || async {
                    cold.inner().get(&p).await?.bytes().await
                }))?;
                if theirs.as_ref() != bytes.as_slice() {
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
                    self.state.lock().epoch = Some(next);
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

    /// Delete manifest versions older than the retention, always keeping the newest. Returns
    /// how many were deleted.
    pub(crate) fn prune(&self, env: &TierEnv) -> Result<u64> {
        let cold = &env.cold;
        let retention = env.options.manifest_retention.as_millis() as i64;
        let now = env.clock.now_ms() as i64;
        let versions = cold.block_on(list_numbered(cold, MANIFEST_DIR))?;
        let Some(((newest, _), older)) = versions.split_last() else {
            return Ok(0);
        };
        let mut n = 0;
        for (v, modified) in older {
            if now - modified < retention || v >= newest {
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
