//! What is known of the cold store's health: [`ColdStoreHealth`], kept by a [`HealthMonitor`].
//!
//! The hot path never depends on the cold store. A store that does not answer at open, or
//! that fails an operation after its retries, makes the database *degraded*: writes, flushes,
//! hot compactions and hot reads go on; what needs cold bytes that are not cached fails with
//! `Unavailable`; moves wait for a later pass. While degraded, a background task probes the
//! store (write, read back, delete a small object) every `store_recheck_interval`; the first
//! probe that succeeds makes it `ok` again, without a restart.
//!
//! States: `unchecked` (not probed yet) → `ok` | `degraded`; `ok` → `degraded` on a failed
//! probe or operation; `degraded` → `ok` only on a successful probe (an answer to a read is not
//! proof that the store can be written: a missing bucket answers "not found").

use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The cold store's state as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColdStoreState {
    /// Not probed (the probe at open is turned off) and no operation has failed.
    Unchecked,
    /// The last probe succeeded and no operation has failed since.
    Ok,
    /// The store did not answer or refused; see the reason.
    Degraded,
}

impl ColdStoreState {
    /// `"unchecked"`, `"ok"` or `"degraded"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ColdStoreState::Unchecked => "unchecked",
            ColdStoreState::Ok => "ok",
            ColdStoreState::Degraded => "degraded",
        }
    }
}

/// The cold store's health, for status, readiness and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdStoreHealth {
    /// The state.
    pub state: ColdStoreState,
    /// Why it is degraded: the store, the step that failed and the error (never a secret).
    pub reason: Option<String>,
    /// When it entered this state (ms since the Unix epoch).
    pub since_ms: u64,
    /// When it was last probed (ms since the Unix epoch).
    pub last_probe_ms: Option<u64>,
    /// Failed probes since the state last was `ok`.
    pub failed_probes: u64,
}

impl Default for ColdStoreHealth {
    fn default() -> Self {
        ColdStoreHealth {
            state: ColdStoreState::Unchecked,
            reason: None,
            since_ms: 0,
            last_probe_ms: None,
            failed_probes: 0,
        }
    }
}

/// Keeps [`ColdStoreHealth`] and wakes the re-probe task when the store becomes degraded.
#[derive(Debug, Default)]
pub(crate) struct HealthMonitor {
    health: Mutex<ColdStoreHealth>,
    /// Operations that failed, counted under the `health` lock: a probe that started before
    /// the last failure does not clear it.
    op_failures: AtomicU64,
    /// Signalled on every change to `degraded`, so the re-probe task starts at once.
    pub(crate) degraded: Arc<Notify>,
}

impl HealthMonitor {
    pub(crate) fn get(&self) -> ColdStoreHealth {
        self.health.lock().clone()
    }

    /// A stamp to take when a probe starts, for [`HealthMonitor::probe_ok`].
    pub(crate) fn probe_started(&self) -> u64 {
        let _h = self.health.lock();
        self.op_failures.load(Ordering::Relaxed)
    }

    /// A probe that started at `started` (from [`HealthMonitor::probe_started`]) succeeded.
    /// An operation that failed while it ran wins: the store stays degraded until a later probe.
    pub(crate) fn probe_ok(&self, started: u64, now_ms: u64) {
        let mut h = self.health.lock();
        h.last_probe_ms = Some(now_ms);
        if self.op_failures.load(Ordering::Relaxed) != started {
            return;
        }
        if h.state != ColdStoreState::Ok {
            if h.state == ColdStoreState::Degraded {
                tracing::info!(
                    failed_probes = h.failed_probes,
                    "cold store answers again; moves and cold reads resume"
                );
            }
            h.state = ColdStoreState::Ok;
            h.since_ms = now_ms;
        }
        h.reason = None;
        h.failed_probes = 0;
    }

    /// A probe failed with `reason`.
    pub(crate) fn probe_failed(&self, reason: &str, now_ms: u64) {
        let first = {
            let mut h = self.health.lock();
            h.failed_probes += 1;
            h.last_probe_ms = Some(now_ms);
            self.set_degraded(&mut h, reason, now_ms)
        };
        if first {
            tracing::error!(error = %reason, "cold store is not usable; serving hot data only, moves and uncached cold reads wait");
        } else {
            tracing::debug!(error = %reason, "cold store probe failed again");
        }
    }

    /// An operation failed after its retries with an error that says the store is not
    /// answering.
    pub(crate) fn operation_failed(&self, reason: &str, now_ms: u64) {
        let first = {
            let mut h = self.health.lock();
            self.op_failures.fetch_add(1, Ordering::Relaxed);
            self.set_degraded(&mut h, reason, now_ms)
        };
        if first {
            tracing::warn!(error = %reason, "cold store operation failed; the store is degraded until a probe succeeds");
        }
    }

    /// Returns whether this is a change of state.
    fn set_degraded(&self, h: &mut ColdStoreHealth, reason: &str, now_ms: u64) -> bool {
        let changed = h.state != ColdStoreState::Degraded;
        if changed {
            h.state = ColdStoreState::Degraded;
            h.since_ms = now_ms;
            self.degraded.notify_one();
        }
        h.reason = Some(reason.to_owned());
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_probe_clears_degraded() {
        let m = HealthMonitor::default();
        assert_eq!(m.get().state, ColdStoreState::Unchecked);
        m.probe_ok(m.probe_started(), 10);
        assert_eq!(m.get().state, ColdStoreState::Ok);
        m.operation_failed("cold store s3://b: read x: connection refused", 20);
        let h = m.get();
        assert_eq!(h.state, ColdStoreState::Degraded);
        assert_eq!(h.since_ms, 20);
        assert!(h.reason.as_deref().is_some_and(|r| r.contains("refused")));
        m.probe_failed("write of probe object failed", 30);
        m.probe_failed("write of probe object failed", 40);
        let h = m.get();
        assert_eq!(
            (h.state, h.since_ms, h.failed_probes),
            (ColdStoreState::Degraded, 20, 2)
        );
        m.probe_ok(m.probe_started(), 50);
        let h = m.get();
        assert_eq!(
            (h.state, h.since_ms, h.failed_probes),
            (ColdStoreState::Ok, 50, 0)
        );
        assert_eq!(h.reason, None);
    }

    #[test]
    fn a_failure_during_a_probe_outlives_its_success() {
        let m = HealthMonitor::default();
        m.probe_failed("connection refused", 10);
        let started = m.probe_started();
        m.operation_failed("read x: connection reset", 15);
        m.probe_ok(started, 20);
        let h = m.get();
        assert_eq!(h.state, ColdStoreState::Degraded);
        assert_eq!(h.last_probe_ms, Some(20));
        m.probe_ok(m.probe_started(), 30);
        assert_eq!(m.get().state, ColdStoreState::Ok);
    }
}
