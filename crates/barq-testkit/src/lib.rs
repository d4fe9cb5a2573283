//! Test support shared by Barq DB's test suites (`publish = false`; only ever a
//! dev-dependency, so no product build contains it): a fault-injecting object store
//! ([`FaultyStore`]), a clock that moves only when told to ([`ManualClock`]), a private
//! SeaweedFS server that a test can stop and start ([`Weed`]), listing a store's keys
//! ([`list_keys`]), waiting for a condition ([`wait_until`]), and reading the real text
//! embeddings that `scripts/embeddings.py` makes ([`read_embeddings`]).
//!
//! A test that needs a service it cannot find fails under `CI=true` and is skipped, with a
//! printed reason, elsewhere ([`require`]).

mod embeddings;
pub mod faulty_store;
mod weed;

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;

pub use embeddings::read_embeddings;
pub use faulty_store::{FaultyStore, Op};
pub use weed::{Weed, free_ports, weed_binary};

/// Whether this runs in CI (`CI=true`), where a missing service is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The values of `vars`, or `None` with a printed reason (a panic under `CI=true`).
pub fn require(what: &str, vars: &[&str]) -> Option<Vec<String>> {
    let mut values = Vec::new();
    for v in vars {
        match std::env::var(v) {
            Ok(x) if !x.is_empty() => values.push(x),
            _ if in_ci() => panic!(
                "{v} is not set: CI must start {what} (scripts/test-services.sh start, then eval its env)"
            ),
            _ => {
                eprintln!(
                    "skipping: {what} is not configured ({v} unset; run scripts/test-services.sh start and eval its env)"
                );
                return None;
            }
        }
    }
    Some(values)
}

/// Poll `cond` every 10 ms until it holds; panic naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A small runtime for the blocking helpers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// Every key under `prefix` (all keys for `None`), sorted.
pub fn list_keys(store: &Arc<dyn ObjectStore>, prefix: Option<&str>) -> Vec<String> {
    use futures::TryStreamExt;
    let prefix = prefix.map(object_store::path::Path::from);
    let mut keys: Vec<String> = runtime().block_on(async {
        store
            .list(prefix.as_ref())
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("list the store")
    });
    keys.sort();
    keys
}

/// An S3 client of the SeaweedFS at `endpoint` (credentials from the `AWS_*` environment), for
/// looking at a bucket independently of Barq. No retries: a test sees the store as it is.
pub fn s3_client(endpoint: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        object_store::aws::AmazonS3Builder::from_env()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .expect("an S3 client"),
    )
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        ManualClock(std::sync::atomic::AtomicU64::new(now_ms))
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0
            .fetch_add(by.as_millis() as u64, std::sync::atomic::Ordering::AcqRel);
    }

    /// Set the clock.
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, std::sync::atomic::Ordering::Release);
    }
}

impl barq_core::Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// A seeded linear congruential generator: reproducible test data without a dependency.
#[derive(Debug, Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    /// A value in [-0.5, 0.5).
    pub fn unit(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) as f32 - 0.5
    }

    /// A roughly gaussian value: the sum of four [`Lcg::unit`]s (mean 0, variance 1/3).
    pub fn gauss(&mut self) -> f32 {
        (0..4).map(|_| self.unit()).sum::<f32>()
    }
}
