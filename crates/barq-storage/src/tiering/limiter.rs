//! A token bucket shared by all moves: they may transfer at most so many bytes per second
//! together, so that moves never starve foreground I/O.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// See the module docs. `None` rate: unlimited.
#[derive(Debug)]
pub(crate) struct Limiter {
    rate: Option<u64>,
    state: Mutex<(Instant, f64)>,
}

impl Limiter {
    pub(crate) fn new(rate: Option<u64>) -> Limiter {
        Limiter {
            rate: rate.filter(|r| *r > 0),
            state: Mutex::new((Instant::now(), 0.0)),
        }
    }

    /// Wait until `bytes` may be transferred.
    pub(crate) async fn acquire(&self, bytes: u64) {
        let Some(rate) = self.rate else { return };
        let wait = {
            let mut st = self.state.lock();
            let now = Instant::now();
            // Tokens accumulate for at most one second.
            let elapsed = now.duration_since(st.0).as_secs_f64();
            st.1 = (st.1 + elapsed * rate as f64).min(rate as f64);
            st.0 = now;
            st.1 -= bytes as f64;
            if st.1 < 0.0 {
                Duration::from_secs_f64(-st.1 / rate as f64)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_throughput() {
        let l = Limiter::new(Some(1_000_000));
        // 300 kB at 1 MB/s: about 0.3 s.
        let start = Instant::now();
        for _ in 0..6 {
            l.acquire(50_000).await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "{:?}",
            start.elapsed()
        );
        let free = Limiter::new(None);
        let start = Instant::now();
        free.acquire(u64::MAX).await;
        assert!(start.elapsed() < Duration::from_millis(100));
    }
}
