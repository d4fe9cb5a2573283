//! Background threads: the flusher, the compactor, the tiering maintenance loop and, in
//! `interval` durability, the WAL syncer — each on its own thread so that a long compaction
//! never delays a flush or an fsync.
//!
//! A loop is a name, a period and a [`Job`]: a closure that does one round of work and says
//! whether the loop goes on (the database's jobs hold only a `Weak` reference to its state and
//! stop when it is gone). A job that panics ends its loop and is reported to the `on_panic`
//! callback (the database poisons itself; see `poison`). `Database::close` stops and joins them.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// One round of a loop's work; `false` ends the loop (the database is gone).
pub(crate) type Job = Box<dyn Fn() -> bool + Send>;

/// Called with the loop's name and the panic's message when a job panics.
pub(crate) type OnPanic = Arc<dyn Fn(&str, String) + Send + Sync>;

/// Handles to the running threads.
#[derive(Debug, Default)]
pub(crate) struct Background {
    stop: Vec<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

/// `period` ± 10 %, so that many databases started together do not hit their store at once.
pub(crate) fn jittered(period: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let factor = 0.9 + 0.2 * (f64::from(nanos % 1000) / 1000.0);
    period.mul_f64(factor)
}

impl Background {
    /// Run `job` every `period` on a thread of its own until stopped, until it returns
    /// `false`, or until it panics (then `on_panic` hears of it). The first run is one period
    /// after the start.
    pub(crate) fn spawn_loop(
        &mut self,
        name: &str,
        period: Duration,
        job: Job,
        on_panic: OnPanic,
    ) -> std::io::Result<()> {
        let (tx, rx) = mpsc::channel::<()>();
        let name = name.to_owned();
        self.stop.push(tx);
        self.threads.push(
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    loop {
                        match rx.recv_timeout(period) {
                            Err(RecvTimeoutError::Timeout) => {}
                            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                        }
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&job)) {
                            Ok(true) => {}
                            Ok(false) => return,
                            Err(payload) => {
                                on_panic(&name, crate::poison::panic_message(payload.as_ref()));
                                return;
                            }
                        }
                    }
                })?,
        );
        Ok(())
    }

    /// Stop and join every thread.
    pub(crate) fn stop(self) {
        for tx in &self.stop {
            let _ = tx.send(());
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_loop_runs_until_its_job_says_stop_and_a_panic_is_reported() {
        let mut bg = Background::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let panics = Arc::new(std::sync::Mutex::new(Vec::new()));
        let on_panic: OnPanic = {
            let panics = Arc::clone(&panics);
            Arc::new(move |name: &str, why: String| {
                panics.lock().expect("lock").push(format!("{name}: {why}"))
            })
        };
        let r = Arc::clone(&runs);
        let job: Job = Box::new(move || r.fetch_add(1, Ordering::SeqCst) < 2);
        bg.spawn_loop(
            "t-stop",
            Duration::from_millis(1),
            job,
            Arc::clone(&on_panic),
        )
        .expect("spawn");
        bg.spawn_loop(
            "t-panic",
            Duration::from_millis(1),
            Box::new(|| panic!("boom")),
            on_panic,
        )
        .expect("spawn");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (runs.load(Ordering::SeqCst) < 3 || panics.lock().expect("lock").is_empty())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        bg.stop();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "three rounds, the third said stop"
        );
        assert_eq!(*panics.lock().expect("lock"), ["t-panic: boom"]);
    }
}
