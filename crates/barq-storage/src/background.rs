//! Background threads: the flusher/compactor and, in `interval` durability, the WAL syncer.
//!
//! Both hold only a `Weak` reference to the database's shared state and stop when told to or
//! when the database is gone; `Database::close` joins them.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

impl Background {
    pub(crate) fn start(shared: &Arc<Shared>) -> std::io::Result<Background> {
        let mut bg = Background {
            stop: Vec::new(),
            threads: Vec::new(),
        };
        let (tx, rx) = mpsc::channel::<()>();
        let weak = Arc::downgrade(shared);
        bg.stop.push(tx);
        bg.threads.push(
            std::thread::Builder::new()
                .name("barq-flush".into())
                .spawn(move || {
                    let mut last_compaction_check = Instant::now();
                    loop {
                        match rx.recv_timeout(FLUSH_POLL) {
                            Err(RecvTimeoutError::Timeout) => {}
                            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                        }
                        let Some(shared) = Weak::upgrade(&weak) else {
                            return;
                        };
                        shared.flush_requested();
                        if shared.options.background_compaction
                            && last_compaction_check.elapsed()
                                >= shared.options.compaction_check_interval
                        {
                            last_compaction_check = Instant::now();
                            shared.compact_where_due();
                        }
                    }
                })?,
        );
        if let Durability::Interval(every) = shared.options.durability {
            let (tx, rx) = mpsc::channel::<()>();
            let weak: Weak<Shared> = Arc::downgrade(shared);
            bg.stop.push(tx);
            bg.threads.push(
                std::thread::Builder::new()
                    .name("barq-wal-sync".into())
                    .spawn(move || {
                        loop {
                            match rx.recv_timeout(every) {
                                Err(RecvTimeoutError::Timeout) => {}
                                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                            }
                            let Some(shared) = Weak::upgrade(&weak) else {
                                return;
                            };
                            shared.sync_wals();
                        }
                    })?,
            );
        }
        Ok(bg)
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
