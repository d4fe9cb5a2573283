//! A fault-injecting [`ObjectStore`] wrapper for tests.
//!
//! [`FaultyStore`] wraps any store (usually `object_store::memory::InMemory`) and, on command,
//! makes chosen operations fail a given number of times or until healed, slows them down, flips a
//! byte in every body it returns, breaks bodies in the middle, or fails everything as if the
//! server were unreachable, or holds calls until released. It counts
//! calls per [`Op`], requests and bytes read, so tests can assert on retries and cache hits.
//! Controls take `&self`, are thread-safe and take effect immediately.
//!
//! It is for fault injection only: wrap a real store with it, never use it instead of a real
//! server, and never on a production path.
//!
//! Each call is counted, then delayed, then either fails or goes to the inner store. The fate of a
//! call is decided when it is made; for the lazy `list` streams, when the stream is first polled,
//! and for `delete_stream`, per location. Creating a multipart upload, each of its parts and its
//! `complete` are separate [`Op::MultipartPut`] calls, so an upload can die half way. `abort` is
//! counted too and obeys [`FaultyStore::set_offline`] and [`FaultyStore::delay`], but never an
//! injected [`FaultyStore::fail`], so cleanup paths stay testable.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result, UploadPart,
};
use parking_lot::Mutex;

/// The `store` name in injected [`Error::Generic`] errors.
const STORE: &str = "faulty";

/// A kind of object-store call that faults and counters apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `put_opts`.
    Put,
    /// `put_multipart_opts`, and each `put_part` and `complete` of the upload.
    MultipartPut,
    /// `get_opts` (without `head`) and `get_ranges`.
    Get,
    /// `get_opts` with `head = true`.
    Head,
    /// Each location of `delete_stream`.
    Delete,
    /// `list`, `list_with_offset` and `list_with_delimiter`.
    List,
    /// `copy_opts` and `rename_opts`.
    Copy,
}

impl Op {
    /// Every op, in declaration order.
    pub const ALL: [Op; 7] = [
        Op::Put,
        Op::MultipartPut,
        Op::Get,
        Op::Head,
        Op::Delete,
        Op::List,
        Op::Copy,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Put => "put",
            Op::MultipartPut => "multipart put",
            Op::Get => "get",
            Op::Head => "head",
            Op::Delete => "delete",
            Op::List => "list",
            Op::Copy => "copy",
        })
    }
}

/// What is injected into one op.
#[derive(Debug, Default, Clone, Copy)]
struct Rule {
    fail_next: usize,
    fail_always: bool,
    delay: Duration,
}

/// Shared by the store, its uploads and its lazy streams.
#[derive(Debug, Default)]
struct Faults {
    rules: Mutex<[Rule; Op::ALL.len()]>,
    offline: AtomicBool,
    corrupt_gets: AtomicBool,
    break_bodies: AtomicU64,
    break_min_bytes: AtomicU64,
    calls: [AtomicU64; Op::ALL.len()],
    bytes_read: AtomicU64,
    held: [AtomicBool; Op::ALL.len()],
    waiting: [AtomicU64; Op::ALL.len()],
    released: tokio::sync::Notify,
}

impl Faults {
    /// Counts a call of `op` and decides its fate: the delay before it, and whether it fails.
    /// `injectable = false` exempts the call from `fail`/`fail_always` (not from being offline).
    fn decide(&self, op: Op, injectable: bool) -> (Duration, Result<()>) {
        self.calls[op.index()].fetch_add(1, Ordering::Relaxed);
        let mut rules = self.rules.lock();
        let rule = &mut rules[op.index()];
        let outcome = if self.offline.load(Ordering::Relaxed) {
            Err(injected(op, "store offline (connection refused)"))
        } else if injectable && rule.fail_always {
            Err(injected(op, "503 Service Unavailable, retryable"))
        } else if injectable && rule.fail_next > 0 {
            rule.fail_next -= 1;
            Err(injected(op, "503 Service Unavailable, retryable"))
        } else {
            Ok(())
        };
        (rule.delay, outcome)
    }

    /// Counts, delays and maybe fails a call of `op`; while `op` is held, waits first.
    async fn enter(&self, op: Op) -> Result<()> {
        self.wait_while_held(op).await;
        let (delay, outcome) = self.decide(op, true);
        sleep(delay).await;
        outcome
    }

    async fn wait_while_held(&self, op: Op) {
        let i = op.index();
        if !self.held[i].load(Ordering::Acquire) {
            return;
        }
        self.waiting[i].fetch_add(1, Ordering::AcqRel);
        // Counted down also when the waiting call is dropped (a timeout, a cancelled query).
        struct Waiting<'a>(&'a AtomicU64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _waiting = Waiting(&self.waiting[i]);
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.held[i].load(Ordering::Acquire) {
                break;
            }
            released.await;
        }
    }

    fn read(&self, len: usize) {
        self.bytes_read.fetch_add(len as u64, Ordering::Relaxed);
    }

    fn corrupting(&self) -> bool {
        self.corrupt_gets.load(Ordering::Relaxed)
    }

    /// Whether a body of `len` bytes is one of those to break (and count it).
    fn breaking(&self, len: u64) -> bool {
        len >= self.break_min_bytes.load(Ordering::Acquire)
            && self
                .break_bodies
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
    }
}

fn injected(op: Op, why: &str) -> Error {
    Error::Generic {
        store: STORE,
        source: format!("injected fault: {op} request failed: {why}").into(),
    }
}

async fn sleep(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// Flips every bit of the middle byte (empty bodies are left alone).
fn corrupt(body: Bytes) -> Bytes {
    if body.is_empty() {
        return body;
    }
    let mut buf = body.to_vec();
    let mid = buf.len() / 2;
    buf[mid] ^= 0xFF;
    Bytes::from(buf)
}

/// An [`ObjectStore`] that forwards to `inner` unless told to fail, delay or corrupt (see the
/// module doc). Clones share their faults and counters.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
}

impl FaultyStore {
    /// A healthy wrapper around `inner`: no faults, counters at zero.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            inner,
            faults: Arc::default(),
        }
    }

    /// The wrapped store, to look behind the faults (e.g. to check what was really written).
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// The next `times` calls of `op` fail; replaces any pending count (`0` cancels it).
    pub fn fail(&self, op: Op, times: usize) {
        self.faults.rules.lock()[op.index()].fail_next = times;
    }

    /// Every call of `op` fails until [`heal`](Self::heal) or [`heal_all`](Self::heal_all).
    pub fn fail_always(&self, op: Op) {
        self.faults.rules.lock()[op.index()].fail_always = true;
    }

    /// `op` stops failing and stops being delayed.
    pub fn heal(&self, op: Op) {
        self.faults.rules.lock()[op.index()] = Rule::default();
    }

    /// Back to a healthy store: no failures, delays, corruption, and online. Counters are kept.
    pub fn heal_all(&self) {
        *self.faults.rules.lock() = Default::default();
        self.faults.offline.store(false, Ordering::Relaxed);
        self.faults.corrupt_gets.store(false, Ordering::Relaxed);
        self.faults.break_bodies.store(0, Ordering::Relaxed);
    }

    /// Sleep `delay` before every call of `op` (`Duration::ZERO` removes it).
    pub fn delay(&self, op: Op, delay: Duration) {
        self.faults.rules.lock()[op.index()].delay = delay;
    }

    /// Whether every body returned by `get_opts` and every range of `get_ranges` has its middle
    /// byte flipped.
    pub fn corrupt_gets(&self, corrupt: bool) {
        self.faults.corrupt_gets.store(corrupt, Ordering::Relaxed);
    }

    /// Break the next `n` bodies of at least `min_bytes` returned by `get_opts`: each yields its
    /// first half, then an error, as when a connection drops in the middle of a response.
    pub fn break_bodies(&self, n: u64, min_bytes: u64) {
        self.faults
            .break_min_bytes
            .store(min_bytes, Ordering::Release);
        self.faults.break_bodies.store(n, Ordering::Release);
    }

    /// Whether every call fails, like an unreachable server. Pending `fail` counts are not
    /// consumed while offline.
    pub fn set_offline(&self, offline: bool) {
        self.faults.offline.store(offline, Ordering::Relaxed);
    }

    /// While `hold` is true, every new call of `op` waits (before it is counted) until it is
    /// released: a store that hangs, for tests of what else goes on meanwhile.
    pub fn hold(&self, op: Op, hold: bool) {
        self.faults.held[op.index()].store(hold, Ordering::Release);
        if !hold {
            self.faults.released.notify_waiters();
        }
    }

    /// Calls of `op` waiting because it is held.
    pub fn waiting(&self, op: Op) -> u64 {
        self.faults.waiting[op.index()].load(Ordering::Acquire)
    }

    /// Calls of `op` so far, failed ones included.
    pub fn calls(&self, op: Op) -> u64 {
        self.faults.calls[op.index()].load(Ordering::Relaxed)
    }

    /// Body bytes returned by gets and ranges so far (as consumed, for streamed bodies).
    pub fn bytes_read(&self) -> u64 {
        self.faults.bytes_read.load(Ordering::Relaxed)
    }

    /// Calls of every op so far, failed ones included.
    pub fn requests(&self) -> u64 {
        Op::ALL.iter().map(|&op| self.calls(op)).sum()
    }

    /// A stream that is counted, delayed and maybe failed when first polled.
    fn gate<T: Send + 'static>(
        &self,
        op: Op,
        stream: BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        let faults = Arc::clone(&self.faults);
        futures::stream::once(async move {
            match faults.enter(op).await {
                Ok(()) => stream,
                Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.faults.enter(Op::Put).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.faults.enter(Op::MultipartPut).await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            faults: Arc::clone(&self.faults),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        self.faults.enter(op).await?;
        let mut result = self.inner.get_opts(location, options).await?;
        if op == Op::Head {
            return Ok(result);
        }
        let meta = result.meta.clone();
        let range = result.range.clone();
        let attributes = std::mem::take(&mut result.attributes);
        let extensions = std::mem::take(&mut result.extensions);
        let stream = if self.faults.corrupting() {
            let body = corrupt(result.bytes().await?);
            self.faults.read(body.len());
            futures::stream::once(async { Ok(body) }).boxed()
        } else if self.faults.breaking(range.end - range.start) {
            // Half the body, then the connection drops.
            let body = result.bytes().await?;
            let half = body.slice(..body.len() / 2);
            self.faults.read(half.len());
            futures::stream::iter([
                Ok(half),
                Err(injected(
                    Op::Get,
                    "connection reset in the middle of the body",
                )),
            ])
            .boxed()
        } else {
            let faults = Arc::clone(&self.faults);
            result
                .into_stream()
                .inspect_ok(move |chunk| faults.read(chunk.len()))
                .boxed()
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.faults.enter(Op::Get).await?;
        let mut bodies = self.inner.get_ranges(location, ranges).await?;
        self.faults.read(bodies.iter().map(Bytes::len).sum());
        if self.faults.corrupting() {
            bodies = bodies.into_iter().map(corrupt).collect();
        }
        Ok(bodies)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let faults = Arc::clone(&self.faults);
        let locations = locations
            .and_then(move |location| {
                let faults = Arc::clone(&faults);
                async move {
                    faults.enter(Op::Delete).await?;
                    Ok(location)
                }
            })
            .boxed();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.gate(Op::List, self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.gate(Op::List, self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.faults.enter(Op::List).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.faults.enter(Op::Copy).await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.faults.enter(Op::Copy).await?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload whose parts and `complete` are [`Op::MultipartPut`] calls.
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Arc<Faults>,
}

#[async_trait::async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        // Decided now: a failed part must never reach the inner upload.
        let (delay, outcome) = self.faults.decide(Op::MultipartPut, true);
        let put = outcome.map(|()| self.inner.put_part(data));
        Box::pin(async move {
            sleep(delay).await;
            put?.await
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.faults.enter(Op::MultipartPut).await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        let (delay, outcome) = self.faults.decide(Op::MultipartPut, false);
        sleep(delay).await;
        outcome?;
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn store() -> FaultyStore {
        FaultyStore::new(Arc::new(InMemory::new()))
    }

    fn assert_injected<T: fmt::Debug>(result: Result<T>) {
        match result {
            Err(Error::Generic {
                store: STORE,
                source,
            }) => {
                assert!(source.to_string().contains("injected fault"), "{source}")
            }
            other => panic!("expected an injected fault, got {other:?}"),
        }
    }

    async fn put(store: &FaultyStore, path: &Path, data: &[u8]) -> Result<PutResult> {
        store.put(path, Bytes::copy_from_slice(data).into()).await
    }

    async fn get(store: &FaultyStore, path: &Path) -> Result<Bytes> {
        store.get(path).await?.bytes().await
    }

    #[tokio::test]
    async fn fails_n_times_then_succeeds() {
        let store = store();
        let path = Path::from("a");
        put(&store, &path, b"hello").await.expect("put");
        store.fail(Op::Get, 2);
        assert_injected(get(&store, &path).await);
        assert_injected(get(&store, &path).await);
        assert_eq!(get(&store, &path).await.expect("third get"), "hello");
        assert_eq!(store.calls(Op::Get), 3);
        assert_eq!(store.calls(Op::Put), 1);
        assert_eq!(store.requests(), 4);
    }

    #[tokio::test]
    async fn fail_always_until_healed() {
        let store = store();
        let path = Path::from("a");
        store.fail_always(Op::Put);
        for _ in 0..3 {
            assert_injected(put(&store, &path, b"x").await);
        }
        assert!(matches!(
            store.head(&path).await,
            Err(Error::NotFound { .. })
        ));
        store.heal(Op::Put);
        put(&store, &path, b"x").await.expect("put after heal");
        assert_eq!(store.head(&path).await.expect("head").size, 1);
        assert_eq!(store.calls(Op::Put), 4);
    }

    #[tokio::test]
    async fn offline_fails_every_op_until_back_online() {
        let store = store();
        let (a, b) = (Path::from("a"), Path::from("b"));
        put(&store, &a, b"x").await.expect("put");
        store.fail(Op::Get, 1);
        store.set_offline(true);
        assert_injected(put(&store, &b, b"y").await);
        assert_injected(store.put_multipart(&b).await);
        assert_injected(get(&store, &a).await);
        assert_injected(store.get_ranges(&a, std::slice::from_ref(&(0..1))).await);
        assert_injected(store.head(&a).await);
        assert_injected(store.list(None).try_collect::<Vec<_>>().await);
        assert_injected(store.list_with_delimiter(None).await);
        assert_injected(store.copy(&a, &b).await);
        assert_injected(store.delete(&a).await);
        store.set_offline(false);
        // The pending failure was not used up while offline.
        assert_injected(get(&store, &a).await);
        assert_eq!(get(&store, &a).await.expect("get"), "x");
        store.copy(&a, &b).await.expect("copy");
        let listed: Vec<_> = store.list(None).try_collect().await.expect("list");
        assert_eq!(listed.len(), 2);
        store.delete(&a).await.expect("delete");
    }

    #[tokio::test]
    async fn delete_stream_faults_are_per_location() {
        let store = store();
        let (a, b) = (Path::from("a"), Path::from("b"));
        for path in [&a, &b] {
            put(&store, path, b"x").await.expect("put");
        }
        store.fail(Op::Delete, 1);
        let locations = futures::stream::iter([Ok(a.clone()), Ok(b.clone())]).boxed();
        let mut results = store
            .delete_stream(locations)
            .collect::<Vec<_>>()
            .await
            .into_iter();
        assert_injected(results.next().expect("one result per location"));
        let deleted = results.next().expect("one result per location");
        assert_eq!(deleted.expect("second delete"), b);
        assert!(store.inner().head(&a).await.is_ok());
        assert!(store.inner().head(&b).await.is_err());
        assert_eq!(store.calls(Op::Delete), 2);
    }

    #[tokio::test]
    async fn a_broken_body_gives_half_then_an_error_once() {
        let store = store();
        let path = Path::from("blob");
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        put(&store, &path, &data).await.expect("put");
        store.break_bodies(1, 0);
        let chunks: Vec<Result<Bytes>> = store
            .get(&path)
            .await
            .expect("the request itself succeeds")
            .into_stream()
            .collect()
            .await;
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        assert_eq!(chunks[0].as_ref().expect("first half"), &data[..500]);
        assert_injected(chunks.into_iter().nth(1).expect("error"));
        assert_eq!(get(&store, &path).await.expect("next get is whole"), data);
    }

    #[tokio::test]
    async fn corrupt_get_differs_in_exactly_one_byte() {
        let store = store();
        let path = Path::from("blob");
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        put(&store, &path, &data).await.expect("put");
        store.corrupt_gets(true);
        let result = store.get(&path).await.expect("get");
        assert_eq!((result.meta.size, result.range.clone()), (1000, 0..1000));
        let body = result.bytes().await.expect("body");
        assert_eq!(body.len(), data.len());
        assert_eq!(body.iter().zip(&data).filter(|(x, y)| x != y).count(), 1);
        let range = store.get_range(&path, 100..200).await.expect("range");
        assert_eq!(
            range
                .iter()
                .zip(&data[100..200])
                .filter(|(x, y)| x != y)
                .count(),
            1
        );
        store.corrupt_gets(false);
        assert_eq!(get(&store, &path).await.expect("clean get"), data);
    }

    #[tokio::test]
    async fn bytes_read_counts_gets_and_ranges() {
        let store = store();
        let path = Path::from("blob");
        put(&store, &path, &[7u8; 100]).await.expect("put");
        let ranges = store
            .get_ranges(&path, &[0..10, 20..25])
            .await
            .expect("ranges");
        assert_eq!(ranges.iter().map(Bytes::len).sum::<usize>(), 15);
        assert_eq!(store.bytes_read(), 15);
        get(&store, &path).await.expect("get");
        assert_eq!(store.bytes_read(), 115);
        store.head(&path).await.expect("head");
        assert_eq!(store.bytes_read(), 115);
        assert_eq!((store.calls(Op::Get), store.calls(Op::Head)), (2, 1));
    }

    #[tokio::test]
    async fn multipart_failure_half_way_leaves_no_object() {
        let store = store();
        let path = Path::from("big");
        let mut upload = store.put_multipart(&path).await.expect("create upload");
        upload
            .put_part(vec![1u8; 10].into())
            .await
            .expect("first part");
        store.fail_always(Op::MultipartPut);
        assert_injected(upload.put_part(vec![2u8; 10].into()).await);
        assert_injected(upload.complete().await);
        // Cleanup is never failed by `fail_always`.
        upload.abort().await.expect("abort");
        assert!(matches!(
            store.inner().head(&path).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(store.calls(Op::MultipartPut), 5);

        store.heal(Op::MultipartPut);
        store.fail(Op::MultipartPut, 1);
        assert_injected(store.put_multipart(&path).await);
        let mut upload = store.put_multipart(&path).await.expect("create upload");
        upload.put_part(vec![3u8; 10].into()).await.expect("part");
        upload.complete().await.expect("complete");
        assert_eq!(store.head(&path).await.expect("head").size, 10);
    }

    #[tokio::test]
    async fn delay_delays_the_call() {
        let store = store();
        let path = Path::from("a");
        put(&store, &path, b"x").await.expect("put");
        let delay = Duration::from_millis(30);
        store.delay(Op::Get, delay);
        let start = std::time::Instant::now();
        get(&store, &path).await.expect("delayed get");
        assert!(start.elapsed() >= delay, "{:?}", start.elapsed());
        store.heal_all();
        assert_eq!(get(&store, &path).await.expect("get"), "x");
    }
}
