//! Recall measured at run time: a fraction of the searches that went through an index
//! (`Options::recall_sample_rate`, default 1 %) is run again exactly on a background thread, and
//! the overlap of the two top-k lists is added to the collection's [`RecallStats`].
//!
//! Only searches whose segments are all local are sampled: an exact scan of a cold segment would
//! fetch its whole vector block from the store. Samples are taken on a fixed stride (every
//! `1 / rate`-th indexed search), not at random, so a test can predict them. At most
//! [`QUEUED`] samples wait; beyond that a sample is skipped, so sampling never slows searches
//! or piles up work. Writes between a search and its re-run make the two answers differ a little;
//! the measurement is meant for a steady workload, not for a collection being rewritten.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use barq_core::SearchHit;
use parking_lot::Mutex;

/// Samples waiting for the sampler thread, at most.
const QUEUED: usize = 4;

type Job = Box<dyn FnOnce() + Send>;

/// The per-database sampler: decides which searches are sampled and runs their exact re-runs.
#[derive(Debug)]
pub(crate) struct RecallSampler {
    /// Every `period`-th indexed search is sampled; 0: never.
    period: u64,
    seen: AtomicU64,
    worker: Mutex<Option<(SyncSender<Job>, JoinHandle<()>)>>,
}

impl RecallSampler {
    pub(crate) fn new(rate: f64) -> RecallSampler {
        let period = if rate > 0.0 {
            (1.0 / rate.min(1.0)).round().max(1.0) as u64
        } else {
            0
        };
        RecallSampler {
            period,
            seen: AtomicU64::new(0),
            worker: Mutex::new(None),
        }
    }

    /// Count an indexed search; `true` when this one is to be sampled.
    pub(crate) fn due(&self) -> bool {
        self.period > 0
            && (self.seen.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(self.period)
    }

    /// Run `job` on the sampler thread (started on first use); `false` when the queue is full
    /// or the sampler is stopped.
    pub(crate) fn submit(&self, job: Job) -> bool {
        let mut w = self.worker.lock();
        if w.is_none() {
            let (tx, rx) = sync_channel::<Job>(QUEUED);
            let spawned = std::thread::Builder::new()
                .name("barq-recall".into())
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                });
            match spawned {
                Ok(handle) => *w = Some((tx, handle)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not start the recall sampler");
                    return false;
                }
            }
        }
        let Some((tx, _)) = w.as_ref() else {
            return false;
        };
        match tx.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// Finish the queued samples and stop the thread.
    pub(crate) fn stop(&self) {
        if let Some((tx, handle)) = self.worker.lock().take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

/// A collection's measured recall: the exact top-k hits that the sampled searches also returned,
/// out of all exact top-k hits.
#[derive(Debug, Default)]
pub(crate) struct RecallStats {
    samples: AtomicU64,
    found: AtomicU64,
    wanted: AtomicU64,
}

impl RecallStats {
    /// Add a sample: what the indexed search returned (`ann`) against the exact answer.
    pub(crate) fn record(&self, ann: &[String], exact: &[SearchHit]) {
        let found = exact.iter().filter(|h| ann.contains(&h.id)).count();
        self.found.fetch_add(found as u64, Ordering::Relaxed);
        self.wanted.fetch_add(exact.len() as u64, Ordering::Relaxed);
        self.samples.fetch_add(1, Ordering::Relaxed);
    }

    /// Samples taken, the hits found and the hits wanted over all of them.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        (
            self.samples.load(Ordering::Relaxed),
            self.found.load(Ordering::Relaxed),
            self.wanted.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stride_of_searches_is_sampled_and_overlap_is_counted() {
        let s = RecallSampler::new(0.25);
        let due: Vec<bool> = (0..8).map(|_| s.due()).collect();
        assert_eq!(due, [false, false, false, true, false, false, false, true]);
        assert!(!RecallSampler::new(0.0).due());
        assert!(RecallSampler::new(1.0).due());
        let done = std::sync::Arc::new(AtomicU64::new(0));
        let d = std::sync::Arc::clone(&done);
        assert!(s.submit(Box::new(move || {
            d.fetch_add(1, Ordering::SeqCst);
        })));
        s.stop();
        assert_eq!(
            done.load(Ordering::SeqCst),
            1,
            "queued samples finish at stop"
        );

        let r = RecallStats::default();
        let hit = |id: &str| SearchHit {
            id: id.into(),
            score: 0.0,
            payload: None,
        };
        r.record(&["a".into(), "b".into()], &[hit("a"), hit("c")]);
        r.record(&["x".into()], &[hit("x")]);
        assert_eq!(r.totals(), (2, 2, 3));
    }
}
