//! [`MovePermits`]: the one bound on moves running at once (`move_concurrency`), shared by
//! maintenance passes, engine and CLI calls and HTTP operations. A move waits for a permit
//! before it starts and returns it when it ends, whatever the outcome.

use parking_lot::{Condvar, Mutex};

/// A counting semaphore for blocking callers (moves run on their own threads).
#[derive(Debug)]
pub(crate) struct MovePermits {
    free: Mutex<usize>,
    returned: Condvar,
}

/// A held permit; returned on drop.
#[derive(Debug)]
pub(crate) struct MovePermit<'a>(&'a MovePermits);

impl MovePermits {
    pub(crate) fn new(permits: usize) -> Self {
        MovePermits {
            free: Mutex::new(permits.max(1)),
            returned: Condvar::new(),
        }
    }

    /// Wait for a permit.
    pub(crate) fn acquire(&self) -> MovePermit<'_> {
        let mut free = self.free.lock();
        while *free == 0 {
            self.returned.wait(&mut free);
        }
        *free -= 1;
        MovePermit(self)
    }
}

impl Drop for MovePermit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock() += 1;
        self.0.returned.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_than_the_bound_at_once() {
        let permits = MovePermits::new(2);
        let (now, max) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let _p = permits.acquire();
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        now.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(max.load(Ordering::SeqCst), 2);
        assert_eq!(*permits.free.lock(), 2, "every permit came back");
    }
}
