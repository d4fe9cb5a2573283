//! The cold store as Barq uses it: an `object_store::ObjectStore` plus a key prefix, the runtime
//! that drives it, retries with backoff, and counters.
//!
//! Object keys are `<prefix>/<collection>/segments/<segment-id>.seg`; collection names and
//! segment ids are validated before they reach a key, so keys only use `[a-z0-9._/-]`.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use barq_core::{Error, ErrorKind, Result};
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt};

use super::health::{ColdStoreHealth, ColdStoreState, HealthMonitor};

/// An error of the cold store. Converted into [`barq_core::Error`] at the module's edge; find
/// it again with [`barq_core::Error::find_source`]. Messages name the store (never a secret).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ColdStoreError {
    /// A request failed after its retries (or at once, when retrying cannot help).
    #[error("cold store {store}: {what}: {source}")]
    Request {
        /// The store's description.
        store: String,
        /// The operation (`"put docs/segments/…"`, `"upload part of …"`, …).
        what: String,
        /// The store client's error.
        #[source]
        source: object_store::Error,
    },
    /// The probe (write, read back, delete a small object) failed at `step`.
    #[error("cold store {store} is not usable: {step} failed: {reason}")]
    Unusable {
        /// The store's description.
        store: String,
        /// The step (`"write of probe object …"`, `"probe"`, …).
        step: String,
        /// Why.
        reason: String,
    },
    /// A ranged read returned another number of bytes than asked for.
    #[error("cold store {store}: {what}: {reason}")]
    BadBody {
        /// The store's description.
        store: String,
        /// The read.
        what: String,
        /// How the body differs.
        reason: String,
    },
    /// A read of a cold segment ran past its end.
    #[error("read of {start}..{end} past the end of {key} ({len} bytes)")]
    OutOfBounds {
        /// The object.
        key: String,
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// The object's length.
        len: u64,
    },
    /// A cold segment's object is not in the store although the manifest lists it.
    #[error("cold segment object {key} is missing from the store: {reason}")]
    Missing {
        /// The object.
        key: String,
        /// The store's answer.
        reason: String,
    },
    /// Bytes read from the store do not match their checksum.
    #[error("checksum mismatch in bytes {start}..{end} of {key} (cold store {store})")]
    Checksum {
        /// The store's description.
        store: String,
        /// The object.
        key: String,
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
    },
    /// A read was cancelled (the store's runtime is shutting down).
    #[error("cold store read cancelled: {0}")]
    Cancelled(String),
    /// The store's runtime could not start.
    #[error("start the object-store runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl ColdStoreError {
    /// The coarse kind callers see.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ColdStoreError::Request { source, .. } => match source {
                object_store::Error::NotFound { .. } => ErrorKind::NotFound,
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. } => ErrorKind::Conflict,
                _ => ErrorKind::Unavailable,
            },
            ColdStoreError::Unusable { .. } => ErrorKind::Unavailable,
            ColdStoreError::BadBody { .. }
            | ColdStoreError::OutOfBounds { .. }
            | ColdStoreError::Missing { .. }
            | ColdStoreError::Checksum { .. } => ErrorKind::DataCorruption,
            ColdStoreError::Cancelled(_) => ErrorKind::Closed,
            ColdStoreError::Runtime(_) => ErrorKind::Internal,
        }
    }
}

barq_core::subsystem_error!(ColdStoreError);

/// Counters of traffic to the cold store.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Requests sent (each retry counts).
    pub requests: AtomicU64,
    /// Bytes fetched by reads.
    pub bytes_fetched: AtomicU64,
    /// Requests that failed (each retry counts).
    pub failures: AtomicU64,
}

/// A configured cold store.
#[derive(Clone)]
pub struct ColdStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    description: String,
    runtime: Arc<IoRuntime>,
    /// Traffic counters.
    pub counters: Arc<StoreCounters>,
    /// What is known of the store's health.
    pub(crate) health: Arc<HealthMonitor>,
}

impl std::fmt::Debug for ColdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdStore")
            .field("store", &self.description)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Attempts per store operation before it counts as failed.
const ATTEMPTS: u32 = 3;

/// Parts in flight for one large transfer (an upload, a download, a large cold read).
pub(crate) const PARTS_IN_FLIGHT: usize = 4;

/// Where the body of one part of a [`ColdStore::read_parts`] goes, chunk by chunk as it arrives.
pub(crate) trait PartSink: Send + 'static {
    /// `bytes` at `offset` from the start of the part. A part whose read fails midway is read
    /// again from its start, so an offset may come again: a sink overwrites, it never appends.
    fn chunk(&mut self, offset: u64, bytes: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// The whole part has been handed over.
    fn finish(&mut self) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

/// A part read into its own buffer (of the part's length).
struct Piece(bytes::BytesMut);

impl PartSink for Piece {
    fn chunk(&mut self, offset: u64, bytes: Bytes) -> impl Future<Output = Result<()>> + Send {
        let at = offset as usize;
        self.0[at..at + bytes.len()].copy_from_slice(&bytes);
        std::future::ready(Ok(()))
    }
}

/// Why one attempt at reading a part failed: the store (retried if transient) or the sink or
/// the body's length (not retried).
enum PartError {
    Store(object_store::Error),
    Fatal(Error),
}

impl ColdStore {
    /// Wrap `store`; objects live under `prefix` (may be empty). `description` names the store
    /// in messages (never a secret).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        description: impl Into<String>,
    ) -> Result<ColdStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("barq-io")
            .enable_all()
            .build()
            .map_err(ColdStoreError::Runtime)?;
        Ok(ColdStore {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            description: description.into(),
            runtime: Arc::new(IoRuntime(Some(runtime))),
            counters: Arc::default(),
            health: Arc::default(),
        })
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// What the store is, for messages.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object key of a segment: its id and the CRC32C of its bytes (`checksum`, as the
    /// manifest writes it), so that two segments never share a key — not after a collection
    /// is dropped and created again with the same name (ids start over), nor when a restored
    /// node seals a segment under an id a former writer also used.
    pub fn segment_key(&self, collection: &str, segment_id: u64, checksum: &str) -> String {
        let crc = checksum.strip_prefix("crc32c:").unwrap_or(checksum);
        self.key(&format!("{collection}/segments/{segment_id:020}-{crc}.seg"))
    }

    /// `tail` under the key prefix.
    pub fn key(&self, tail: &str) -> String {
        if self.prefix.is_empty() {
            tail.to_owned()
        } else {
            format!("{}/{tail}", self.prefix)
        }
    }

    /// The key under which every collection lives (for listing).
    pub fn root(&self) -> Option<ObjectPath> {
        (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()))
    }

    /// Run `fut` to completion on the store's runtime from synchronous code. From a thread
    /// inside any tokio runtime's context (a task of an embedding program, or a thread of a
    /// runtime's blocking pool), where blocking on a runtime would panic, it waits on a scoped
    /// thread of its own; from anywhere else (the engine's threads, a plain caller) it blocks
    /// the calling thread.
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            return std::thread::scope(|s| {
                s.spawn(|| self.runtime.get().block_on(fut))
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
        }
        self.runtime.get().block_on(fut)
    }

    /// Read `range` of `key` (with retries) in a task of the store's runtime, so that its body
    /// is received on the runtime's workers next to the connection, not by polling from the
    /// caller's thread (which costs a cross-thread wake per chunk and measured ~1.5x slower for
    /// large ranges). Several such reads in flight use both workers.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let len = range.end - range.start;
        Ok(self.read_to_buffer(key, range, len, 1).await?.0)
    }

    /// [`read_parts`](Self::read_parts) into one buffer: each part is streamed into its own
    /// piece of it. Returns the bytes and their CRC32C.
    pub(crate) async fn read_to_buffer(
        &self,
        key: &str,
        range: Range<u64>,
        part_bytes: u64,
        in_flight: usize,
    ) -> Result<(Bytes, u32)> {
        let mut whole = bytes::BytesMut::zeroed((range.end - range.start) as usize);
        let (crc, pieces) = self
            .read_parts(key, range, part_bytes, in_flight, |r| {
                Piece(whole.split_to((r.end - r.start) as usize))
            })
            .await?;
        let mut pieces = pieces.into_iter().map(|p| p.0);
        let mut out = pieces.next().unwrap_or_default();
        for piece in pieces {
            // The pieces were split off one buffer in order: this is O(1).
            out.unsplit(piece);
        }
        Ok((out.freeze(), crc))
    }

    /// Read `range` of `key` as ranged reads of `part_bytes`, `in_flight` at a time, each in a
    /// task of the store's runtime (see [`get_range`](Self::get_range)) and retried on its own.
    /// Each part's body goes to the sink that `sink_for` makes for the part's range as the
    /// chunks arrive, without being collected first, and its CRC32C is computed on the way.
    /// Returns the CRC32C of the whole range and the sinks, in order.
    pub(crate) async fn read_parts<S: PartSink>(
        &self,
        key: &str,
        range: Range<u64>,
        part_bytes: u64,
        in_flight: usize,
        mut sink_for: impl FnMut(Range<u64>) -> S,
    ) -> Result<(u32, Vec<S>)> {
        let part_bytes = part_bytes.max(1);
        let parts = (0..(range.end - range.start).div_ceil(part_bytes)).map(|i| {
            range.start + i * part_bytes..(range.start + (i + 1) * part_bytes).min(range.end)
        });
        let mut reads = futures::stream::iter(parts.map(|r| {
            let sink = sink_for(r.clone());
            let (store, key) = (self.clone(), key.to_owned());
            // A read that ends early (an error) stops the parts still in flight.
            let mut task = AbortOnDrop(
                self.runtime
                    .get()
                    .spawn(async move { store.read_part(&key, r, sink).await }),
            );
            async move { joined((&mut task.0).await) }
        }))
        .buffered(in_flight.max(1));
        let mut crc = 0u32;
        let mut sinks = Vec::new();
        while let Some(part) = reads.next().await {
            let (part_crc, len, sink) = part?;
            crc = if sinks.is_empty() {
                part_crc
            } else {
                crc32c::crc32c_combine(crc, part_crc, len as usize)
            };
            sinks.push(sink);
        }
        Ok((crc, sinks))
    }

    /// One part of [`read_parts`](Self::read_parts), with retries: its CRC32C, length and sink.
    async fn read_part<S: PartSink>(
        &self,
        key: &str,
        range: Range<u64>,
        mut sink: S,
    ) -> Result<(u32, u64, S)> {
        let p = path(key);
        let what = format!("read {key} bytes {}..{}", range.start, range.end);
        let mut attempt = 1;
        loop {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            match self.stream_part(&p, &what, range.clone(), &mut sink).await {
                Ok(crc) => {
                    sink.finish().await?;
                    return Ok((crc, range.end - range.start, sink));
                }
                Err(PartError::Fatal(e)) => return Err(e),
                Err(PartError::Store(e)) => {
                    if !self.backoff(&what, attempt, &e).await {
                        return Err(self.error(&what, e));
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// One attempt at a part: stream its body into `sink`; returns its CRC32C.
    async fn stream_part<S: PartSink>(
        &self,
        p: &ObjectPath,
        what: &str,
        range: Range<u64>,
        sink: &mut S,
    ) -> std::result::Result<u32, PartError> {
        let want = range.end - range.start;
        let got = self
            .store
            .get_opts(p, GetOptions::default().with_range(Some(range)))
            .await
            .map_err(PartError::Store)?;
        // A local file is read in one call; its stream would read 8 KiB at a time.
        let mut body = if matches!(got.payload, GetResultPayload::File(..)) {
            let bytes = got.bytes().await.map_err(PartError::Store)?;
            futures::stream::once(async { Ok(bytes) }).boxed()
        } else {
            got.into_stream()
        };
        let (mut crc, mut offset) = (0u32, 0u64);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(PartError::Store)?;
            let len = chunk.len() as u64;
            if offset + len > want {
                return Err(PartError::Fatal(
                    ColdStoreError::BadBody {
                        store: self.description.clone(),
                        what: what.to_owned(),
                        reason: format!("the body is longer than {want} bytes"),
                    }
                    .into(),
                ));
            }
            crc = crc32c::crc32c_append(crc, &chunk);
            self.counters
                .bytes_fetched
                .fetch_add(len, Ordering::Relaxed);
            sink.chunk(offset, chunk).await.map_err(PartError::Fatal)?;
            offset += len;
        }
        if offset != want {
            return Err(PartError::Fatal(
                ColdStoreError::BadBody {
                    store: self.description.clone(),
                    what: what.to_owned(),
                    reason: format!("the body is {offset} bytes, not {want}"),
                }
                .into(),
            ));
        }
        Ok(crc)
    }

    /// After failed attempt number `attempt` of `what`: wait and return true to try again, or
    /// return false when `e` is not transient or the attempts are used up.
    async fn backoff(&self, what: &str, attempt: u32, e: &object_store::Error) -> bool {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        if attempt >= ATTEMPTS || !transient(e) {
            return false;
        }
        tracing::debug!(store = %self.description, what, attempt, error = %e, "retrying cold store request");
        tokio::time::sleep(Duration::from_millis(50) * 4u32.pow(attempt - 1)).await;
        true
    }

    /// A handle to spawn onto the runtime.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.get().handle().clone()
    }

    /// Run `op` with retries and backoff for transient errors; `what` names it in errors.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut attempt = 1;
        loop {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if !self.backoff(what, attempt, &e).await {
                        return Err(self.error(what, e));
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Map a store error to Barq's error, naming the store and the operation. A store that
    /// does not answer becomes degraded.
    pub fn error(&self, what: &str, e: object_store::Error) -> Error {
        let err = ColdStoreError::Request {
            store: self.description.clone(),
            what: what.to_owned(),
            source: e,
        };
        let kind = err.kind();
        let err = Error::from(err);
        if kind == ErrorKind::Unavailable {
            self.health.operation_failed(err.message(), wall_ms());
        }
        err
    }

    /// The store's health as last seen.
    pub fn health(&self) -> ColdStoreHealth {
        self.health.get()
    }

    /// Write, read back and delete a small probe object under the prefix, within
    /// [`PROBE_TIMEOUT`], and record the result in the health. An error names the store, the
    /// step that failed and why (`Unavailable`).
    pub(crate) async fn probe(&self) -> Result<()> {
        self.prober().probe().await
    }

    fn prober(&self) -> Prober {
        Prober {
            store: Arc::clone(&self.store),
            prefix: self.prefix.clone(),
            description: self.description.clone(),
            counters: Arc::clone(&self.counters),
            health: Arc::clone(&self.health),
        }
    }

    /// While the store is degraded, probe it every `every` until a probe succeeds; then wait
    /// for the next time it becomes degraded. Runs until the returned handle is dropped.
    pub(crate) fn spawn_recheck(&self, every: Duration) -> AbortOnDrop<()> {
        // The task holds no clone of the runtime (a task that kept its own runtime alive would
        // never end); the handle aborts it when the database is dropped.
        let prober = self.prober();
        AbortOnDrop(self.runtime.get().spawn(async move {
            loop {
                while prober.health.get().state != ColdStoreState::Degraded {
                    prober.health.degraded.notified().await;
                }
                tokio::time::sleep(every).await;
                let _ = prober.probe().await;
            }
        }))
    }
}

/// What a probe of the store needs.
struct Prober {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    description: String,
    counters: Arc<StoreCounters>,
    health: Arc<HealthMonitor>,
}

impl Prober {
    async fn probe(&self) -> Result<()> {
        let started = self.health.probe_started();
        let r = match tokio::time::timeout(PROBE_TIMEOUT, self.steps()).await {
            Ok(r) => r,
            Err(_) => Err(self.unusable(
                "probe",
                &format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
            )),
        };
        match &r {
            Ok(()) => self.health.probe_ok(started, wall_ms()),
            Err(e) => self.health.probe_failed(e.message(), wall_ms()),
        }
        r
    }

    async fn steps(&self) -> Result<()> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(".barq-probe-{}-{nanos}", std::process::id());
        let key = if self.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", self.prefix)
        };
        let p = path(&key);
        let body = Bytes::from_static(b"barq cold-store probe");
        let step = |what: &str, e: &dyn std::fmt::Display| {
            self.unusable(&format!("{what} of probe object {key}"), &e.to_string())
        };
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.store
            .put(&p, body.clone().into())
            .await
            .map_err(|e| step("write", &e))?;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let got = self.store.get(&p).await.map_err(|e| step("read", &e))?;
        let got = got.bytes().await.map_err(|e| step("read", &e))?;
        if got != body {
            return Err(step(
                "read",
                &"the bytes read back differ from those written",
            ));
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.store.delete(&p).await.map_err(|e| step("delete", &e))
    }

    fn unusable(&self, what: &str, why: &str) -> Error {
        ColdStoreError::Unusable {
            store: self.description.clone(),
            step: what.to_owned(),
            reason: why.to_owned(),
        }
        .into()
    }
}

/// How long a probe of the store may take before it counts as failed.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Wall-clock milliseconds since the Unix epoch (health timestamps are wall time, not the
/// policy's clock).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A task that is aborted when its handle is dropped.
pub(crate) struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::fmt::Debug for AbortOnDrop<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AbortOnDrop")
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The store's runtime. A read task holds a clone of the store, so the last one may be dropped by
/// a worker of the runtime itself (a task aborted after its caller gave up). There it is shut
/// down without waiting, which tokio allows inside a runtime; anywhere else it is dropped as
/// usual, waiting for its blocking tasks (a local store's file writes).
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime lives until drop")
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            rt.shutdown_background();
        }
    }
}

/// The result of a read task of the store's runtime (a panic in it is resumed here).
fn joined<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    match r {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(ColdStoreError::Cancelled(e.to_string()).into()),
    }
}

fn transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
    )
}

/// Shorthand: a key string as an object path.
pub(crate) fn path(key: &str) -> ObjectPath {
    ObjectPath::from(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use barq_testkit::{FaultyStore, Op};
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    /// An object of 5 MiB and a bit, in a fault-injecting wrapper of an in-memory store.
    fn setup() -> (ColdStore, Arc<FaultyStore>, Vec<u8>) {
        let faulty = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
        let cold =
            ColdStore::new(Arc::clone(&faulty) as Arc<dyn ObjectStore>, "", "test").expect("store");
        let data: Vec<u8> = (0..(5 << 20) + 123u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        cold.block_on(faulty.put(&path("obj"), data.clone().into()))
            .expect("put");
        (cold, faulty, data)
    }

    fn read(cold: &ColdStore, range: Range<u64>) -> Result<(u32, Vec<u8>)> {
        let (crc, parts) = cold.block_on(cold.read_parts("obj", range, 1 << 20, 3, |r| {
            Piece(bytes::BytesMut::zeroed((r.end - r.start) as usize))
        }))?;
        Ok((crc, parts.into_iter().flat_map(|p| p.0).collect()))
    }

    #[test]
    fn read_parts_reassembles_the_range_and_its_checksum() {
        let (cold, faulty, data) = setup();
        let (crc, got) = read(&cold, 0..data.len() as u64).expect("read");
        assert_eq!(got, data);
        assert_eq!(crc, crc32c::crc32c(&data));
        assert_eq!(faulty.calls(Op::Get), 6, "5 MiB + 123 bytes in 1 MiB parts");
        let (crc, got) = read(&cold, 1000..3_000_000).expect("an inner range");
        assert_eq!(got, data[1000..3_000_000]);
        assert_eq!(crc, crc32c::crc32c(&data[1000..3_000_000]));
    }

    #[test]
    fn a_part_broken_midway_is_read_again_from_its_start() {
        let (cold, faulty, data) = setup();
        faulty.break_bodies(2, 0);
        let (crc, got) = read(&cold, 0..data.len() as u64).expect("read despite two resets");
        assert_eq!(got, data);
        assert_eq!(crc, crc32c::crc32c(&data));
        assert_eq!(faulty.calls(Op::Get), 8, "6 parts and 2 retries");
        assert_eq!(cold.counters.failures.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_store_that_keeps_failing_fails_the_read_with_its_message() {
        let (cold, faulty, data) = setup();
        faulty.fail_always(Op::Get);
        let err = read(&cold, 0..data.len() as u64).expect_err("the store is down");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(
            matches!(
                err.find_source::<ColdStoreError>(),
                Some(ColdStoreError::Request { what, .. }) if what.starts_with("read obj")
            ),
            "{err}"
        );
    }

    #[test]
    fn a_sink_error_is_not_retried() {
        #[derive(Debug)]
        struct Refuses;
        impl PartSink for Refuses {
            fn chunk(&mut self, _: u64, _: Bytes) -> impl Future<Output = Result<()>> + Send {
                std::future::ready(Err(Error::new(ErrorKind::Internal, "disk full")))
            }
        }
        let (cold, faulty, _) = setup();
        let err = cold
            .block_on(cold.read_parts("obj", 0..100, 1 << 20, 3, |_| Refuses))
            .expect_err("the sink refused");
        assert_eq!(
            (err.kind(), err.message()),
            (ErrorKind::Internal, "disk full")
        );
        assert_eq!(faulty.calls(Op::Get), 1);
    }
}
