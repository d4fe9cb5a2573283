//! [`Follower`]: what a read-only replica knows of the bucket it follows — the version it
//! serves, the newest one listed, the versions that did not read or check — and how it finds
//! the next version to apply.

use std::collections::BTreeSet;

use barq_core::{ErrorKind, Result};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{MANIFEST_DIR, PublishedManifest, list_numbered_after, read_version};
use crate::tiering::TierEnv;

/// What `status`, `/readyz` and metrics show of a replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// The bucket it follows (no secrets).
    pub store: String,
    /// The manifest version it serves, once it has one.
    pub version: Option<u64>,
    /// The epoch of the writer that published it.
    pub epoch: Option<u64>,
    /// When that version was published, ms since the Unix epoch.
    pub published_at_ms: Option<u64>,
    /// Where clients reach the writer that published it, if it says.
    #[serde(default)]
    pub writer_url: Option<String>,
    /// The newest version seen in the bucket (versions that did not check excluded).
    pub newest_version: Option<u64>,
    /// How far the served version's number is behind the newest one.
    pub behind_versions: u64,
    /// How long the newest version has been in the bucket without being served, in ms
    /// (0 when the replica is current).
    pub lag_ms: u64,
    /// When the bucket was last polled, ms since the Unix epoch.
    pub last_poll_ms: Option<u64>,
    /// Why the last poll (or applying the version it found) failed, until one succeeds.
    pub last_error: Option<String>,
    /// Versions skipped because they did not read or check (torn, altered, gone), newest last.
    pub skipped: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    status: ReplicaStatus,
    newest_modified_ms: Option<i64>,
    bad: BTreeSet<u64>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Follower {
    state: Mutex<State>,
    running: Mutex<()>,
}

/// How many skipped versions the status remembers.
const SKIPPED_KEPT: usize = 10;

impl Follower {
    pub(crate) fn new(store: String) -> Follower {
        let f = Follower::default();
        f.state.lock().status.store = store;
        f
    }

    /// Held by the poll that runs (the first one at open, then the loop's).
    pub(crate) fn one_at_a_time(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.running.lock()
    }

    /// The newest version above the one served that reads and checks, if any. Versions that
    /// do not are remembered, named in the status and never read again.
    pub(crate) fn next_version(&self, env: &TierEnv) -> Result<Option<PublishedManifest>> {
        let cold = &env.cold;
        let (served, served_epoch) = {
            let st = self.state.lock();
            (st.status.version, st.status.epoch)
        };
        let listed = cold
            .block_on(list_numbered_after(cold, MANIFEST_DIR, served))
            .inspect_err(|e| self.poll_failed(env, e))?;
        {
            let mut st = self.state.lock();
            st.status.last_poll_ms = Some(env.clock.now_ms());
            st.status.last_error = None;
            let bad = st.bad.clone();
            if let Some((v, modified)) = listed.iter().rev().find(|(v, _)| !bad.contains(v)) {
                st.status.newest_version = Some(*v);
                st.newest_modified_ms = Some(*modified);
            }
        }
        for (v, _) in listed.iter().rev() {
            if self.state.lock().bad.contains(v) {
                continue;
            }
            // A version of an older writer than the one served (a writer fenced while it
            // published) is not newer data.
            let read = cold
                .block_on(read_version(cold, *v))
                .and_then(|p| match served_epoch {
                    Some(e) if p.epoch < e => Err(barq_core::Error::new(
                        ErrorKind::DataCorruption,
                        format!(
                            "manifest version {v} was published by writer epoch {}, older than the \
                         epoch {e} of the version served",
                            p.epoch
                        ),
                    )),
                    _ => Ok(p),
                });
            match read {
                Ok(p) => return Ok(Some(p)),
                Err(e) if matches!(e.kind(), ErrorKind::DataCorruption | ErrorKind::NotFound) => {
                    tracing::error!(version = v, error = %e, "a manifest version of the bucket is skipped");
                    let mut st = self.state.lock();
                    st.bad.insert(*v);
                    st.status.skipped.push(e.to_string());
                    let extra = st.status.skipped.len().saturating_sub(SKIPPED_KEPT);
                    st.status.skipped.drain(..extra);
                    if st.status.newest_version == Some(*v) {
                        st.status.newest_version = served;
                        st.newest_modified_ms = None;
                    }
                }
                Err(e) => {
                    self.poll_failed(env, &e);
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    fn poll_failed(&self, env: &TierEnv, e: &barq_core::Error) {
        let mut st = self.state.lock();
        st.status.last_poll_ms = Some(env.clock.now_ms());
        st.status.last_error = Some(e.to_string());
    }

    /// `p` is served now.
    pub(crate) fn applied(&self, p: &PublishedManifest) {
        let mut st = self.state.lock();
        let s = &mut st.status;
        s.version = Some(p.manifest.version);
        s.epoch = Some(p.epoch);
        s.last_error = None;
        s.published_at_ms = Some(p.published_at_ms);
        s.writer_url = p.writer_url.clone();
        if s.newest_version.is_none_or(|n| n < p.manifest.version) {
            s.newest_version = Some(p.manifest.version);
        }
    }

    /// A version failed to apply: remember why.
    pub(crate) fn apply_failed(&self, e: &barq_core::Error) {
        self.state.lock().status.last_error = Some(e.to_string());
    }

    /// The status at `now_ms`.
    pub(crate) fn status(&self, now_ms: u64) -> ReplicaStatus {
        let st = self.state.lock();
        let mut s = st.status.clone();
        let (served, newest) = (s.version.unwrap_or(0), s.newest_version.unwrap_or(0));
        s.behind_versions = newest.saturating_sub(served);
        s.lag_ms = match (s.behind_versions, st.newest_modified_ms) {
            (0, _) | (_, None) => 0,
            (_, Some(m)) => now_ms.saturating_sub(u64::try_from(m).unwrap_or(0)),
        };
        s
    }
}
