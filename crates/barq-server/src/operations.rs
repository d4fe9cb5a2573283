//! Asynchronous operations: a long request (offload, hydrate, compaction, maintenance) with
//! `"async": true` answers `202` at once with an operation that can be polled at
//! `/v1/operations/{id}` for its state, its progress in bytes and, at the end, its result or
//! error. The last [`KEEP_FINISHED`] finished operations are kept; shutdown waits for the running
//! ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, ErrorBody};

/// Finished operations kept for polling.
pub const KEEP_FINISHED: usize = 1000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One operation's shared state; the work reports progress through it.
#[derive(Debug)]
pub struct Operation {
    id: u64,
    kind: &'static str,
    collection: Option<String>,
    started_at_ms: u64,
    /// Bytes to move (0 when unknown).
    pub bytes_total: AtomicU64,
    /// Bytes moved so far.
    pub bytes_done: AtomicU64,
    end: Mutex<Option<(u64, Result<Value, ErrorBody>)>>,
}

/// What `GET /v1/operations/{id}` returns.
#[derive(Debug, Serialize)]
pub struct OperationView {
    /// `op-<n>`.
    pub id: String,
    /// `offload`, `hydrate`, `compact`, `maintenance`.
    pub kind: &'static str,
    /// The collection, if the operation has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// `running`, `succeeded` or `failed`.
    pub state: &'static str,
    /// Bytes moved so far.
    pub bytes_done: u64,
    /// Bytes to move (0 when unknown).
    pub bytes_total: u64,
    /// When it started (ms since the epoch).
    pub started_at_ms: u64,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// The same result the synchronous request would have returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Operation {
    /// The operation as JSON.
    pub fn view(&self) -> OperationView {
        let end = self.end.lock();
        let (state, finished_at_ms, result, error) = match &*end {
            None => ("running", None, None, None),
            Some((t, Ok(v))) => ("succeeded", Some(*t), Some(v.clone()), None),
            Some((t, Err(e))) => ("failed", Some(*t), None, Some(e.clone())),
        };
        OperationView {
            id: format!("op-{}", self.id),
            kind: self.kind,
            collection: self.collection.clone(),
            state,
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            started_at_ms: self.started_at_ms,
            finished_at_ms,
            result,
            error,
        }
    }

    fn running(&self) -> bool {
        self.end.lock().is_none()
    }
}

/// The registry.
#[derive(Debug, Default)]
pub struct Operations {
    next: AtomicU64,
    ops: Mutex<BTreeMap<u64, Arc<Operation>>>,
}

impl Operations {
    /// Start `work` on a blocking thread and return its operation at once.
    pub fn start<F>(
        &self,
        kind: &'static str,
        collection: Option<String>,
        bytes_total: u64,
        work: F,
    ) -> Arc<Operation>
    where
        F: FnOnce(&Operation) -> Result<Value, ApiError> + Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let op = Arc::new(Operation {
            id,
            kind,
            collection,
            started_at_ms: now_ms(),
            bytes_total: AtomicU64::new(bytes_total),
            bytes_done: AtomicU64::new(0),
            end: Mutex::new(None),
        });
        {
            let mut ops = self.ops.lock();
            ops.insert(id, Arc::clone(&op));
            // Forget the oldest finished operations beyond the limit.
            let finished: Vec<u64> = ops
                .iter()
                .filter(|(_, o)| !o.running())
                .map(|(id, _)| *id)
                .collect();
            for id in finished
                .iter()
                .take(finished.len().saturating_sub(KEEP_FINISHED))
            {
                ops.remove(id);
            }
        }
        let task = Arc::clone(&op);
        tokio::task::spawn_blocking(move || {
            let result = work(&task).map_err(|e| e.body);
            if let Err(e) = &result {
                tracing::warn!(operation = task.id, kind = task.kind, code = %e.code, message = %e.message, "operation failed");
            }
            *task.end.lock() = Some((now_ms(), result));
        });
        op
    }

    /// An operation by its id (`op-<n>`).
    pub fn get(&self, id: &str) -> Option<Arc<Operation>> {
        let n: u64 = id.strip_prefix("op-")?.parse().ok()?;
        self.ops.lock().get(&n).cloned()
    }

    /// Every kept operation, newest first.
    pub fn list(&self) -> Vec<OperationView> {
        self.ops.lock().values().rev().map(|o| o.view()).collect()
    }

    /// Operations still running.
    pub fn running(&self) -> usize {
        self.ops.lock().values().filter(|o| o.running()).count()
    }

    /// Wait until no operation runs, or `max` has passed; returns how many still run.
    pub async fn wait_idle(&self, max: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let n = self.running();
            if n == 0 || tokio::time::Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
