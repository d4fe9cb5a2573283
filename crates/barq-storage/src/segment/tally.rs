//! What one search fetches from the cold store: a [`Tally`] of requests and bytes that the
//! search installs on its threads, and that remote sources add to as they fetch.
//!
//! The tally travels with the work, not with the source: a source is shared by every search,
//! so each fetch adds to the tally of the thread that asked for it. A search installs its tally
//! on its own thread and on each thread it hands work to (see [`Tally::install`]).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests and bytes fetched from the cold store on behalf of one piece of work.
#[derive(Debug, Default)]
pub struct Tally {
    requests: AtomicU64,
    bytes: AtomicU64,
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Tally>>> = const { RefCell::new(None) };
}

impl Tally {
    /// The tally installed on this thread, if any.
    pub fn current() -> Option<Arc<Tally>> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// Run `f` with `tally` installed on this thread (the previous one restored afterwards).
    pub fn install<R>(tally: Option<Arc<Tally>>, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Arc<Tally>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let old = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = old);
            }
        }
        let _restore = Restore(CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), tally)));
        f()
    }

    /// Count `requests` ranged reads that fetched `bytes`.
    pub fn add(&self, requests: u64, bytes: u64) {
        self.requests.fetch_add(requests, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Requests counted so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_scopes_the_tally_to_the_call() {
        assert!(Tally::current().is_none());
        let t = Arc::new(Tally::default());
        Tally::install(Some(Arc::clone(&t)), || {
            Tally::current().expect("installed").add(2, 100);
            Tally::install(None, || assert!(Tally::current().is_none()));
            Tally::current().expect("restored").add(1, 5);
        });
        assert!(Tally::current().is_none());
        assert_eq!((t.requests(), t.bytes()), (3, 105));
    }
}
