//! Background threads: the flusher, the compactor and, in `interval` durability, the WAL
//! syncer — each on its own thread so that a long compaction never delays a flush or an fsync.
//!
//! A worker that panics poisons the database (see `poison`) and ends.
//!
//! Each holds only a `Weak` reference to the database's shared state and stop when told to or
//! when the database is gone; `Database::close` joins them.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::Durability;
use crate::db::Shared;

/// Handles to the running threads.
#[derive(Debug)]
pub(crate) struct Background {
    stop: Vec<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

/// How often the flusher looks for memtables over the limit.
const FLUSH_POLL: Duration = Duration::from_millis(20);

/// `period` ± 10 %, so that many databases started together do not hit their store at once.
fn jittered(period: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let factor = 0.9 + 0.2 * (f64::from(nanos % 1000) / 1000.0);
    period.mul_f64(factor)
}

impl Background {
    pub(crate) fn start(shared: &Arc<Shared>) -> std::io::Result<Background> {
        let mut bg = Background {
            stop: Vec::new(),
            threads: Vec::new(),
        };
        bg.spawn_loop("barq-flush", FLUSH_POLL, shared, Shared::flush_requested)?;
        if shared.options.background_compaction {
            bg.spawn_loop(
                "barq-compact",
                shared.options.compaction_check_interval,
                shared,
                Shared::compact_where_due,
            )?;
        }
        if let Some(every) = shared.options.tiering.maintenance_interval {
            bg.spawn_loop(
                "barq-tiering",
                jittered(every),
                shared,
                Shared::tiering_maintenance,
            )?;
        }
        if let Durability::Interval(every) = shared.options.durability {
            bg.spawn_loop("barq-wal-sync", every, shared, Shared::sync_wals)?;
        }
        Ok(bg)
    }

    /// Run `work` every `period` on a thread of its own until stopped or the database is gone.
    fn spawn_loop(
        &mut self,
        name: &str,
        period: Duration,
        shared: &Arc<Shared>,
        work: fn(&Shared),
    ) -> std::io::Result<()> {
        let (tx, rx) = mpsc::channel::<()>();
        let weak: Weak<Shared> = Arc::downgrade(shared);
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
                        let Some(shared) = Weak::upgrade(&weak) else {
                            return;
                        };
                        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            work(&shared)
                        }));
                        if let Err(payload) = run {
                            let msg = crate::poison::panic_message(payload.as_ref());
                            shared.poison(format!("background worker {name} panicked: {msg}"));
                            return;
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
