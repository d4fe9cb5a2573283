"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Literal,
    Optional,
    TypeVar,
    Union,
    overload,
)

import httpx

from . import _api, _vectors
from ._base import DEFAULT_TIMEOUT, DEFAULT_URL, _Base
from ._errors import Timeout, Unavailable
from ._progress import OperationProgress, OperationReporter, UpsertProgress, UpsertReporter
from ._types import (
    Collection,
    CollectionStats,
    CompactResult,
    DeleteResult,
    Document,
    Hit,
    IndexedField,
    Json,
    MaintenanceResult,
    Metric,
    MoveResult,
    Operation,
    Payload,
    PinResult,
    Segment,
    Stats,
    TieringOverrides,
    TieringStatus,
    UpsertResult,
)

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

T = TypeVar("T")


class Client:
    """A client of a Barq DB server (`barq serve`).

    `api_key` is sent on data routes, `admin_key` on admin routes (drop, compact, offload,
    hydrate, pin, unpin, tiering overrides, maintenance); without `admin_key` the API key is
    sent there too. One client keeps its connections open and is safe to share between
    threads. Use it as a context manager, or call `close()`.

    Failed requests raise a subclass of `barq.BarqError`. A request that got no answer is
    retried `retries` times when that is safe: always if it never reached the server,
    otherwise only if it is idempotent (reads, searches, upserts, pins, overrides).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: Optional[str] = None,
        admin_key: Optional[str] = None,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        *,
        retries: int = 2,
        max_body_bytes: int = _api.DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._base = _Base(url, api_key, admin_key, timeout, retries, max_body_bytes)
        self._http = httpx.Client(**self._base._client_options())

    @property
    def url(self) -> str:
        return self._base.url

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def _send(self, req: _api.Request[T]) -> T:
        base = self._base
        attempt = 0
        while True:
            try:
                resp = self._http.request(
                    req.method, req.path, content=req.body, headers=base._headers[req.access]
                )
            except httpx.TransportError as e:
                if base._retryable(e, req, attempt):
                    time.sleep(base._backoff(attempt))
                    attempt += 1
                    continue
                raise base._transport_error(e, req) from e
            return base._answer(req, resp.status_code, resp.content)

    # Health and metadata.

    def health(self) -> bool:
        """Whether the server answers (`/healthz`)."""
        self._send(_api.healthz())
        return True

    def ready(self) -> bool:
        """Whether the node serves (`/readyz`).

        True when ready, and also while degraded (the cold store does not answer, but
        writes and hot data are served); False when the database takes no writes.
        """
        try:
            self._send(_api.readyz())
        except Unavailable as e:
            if e.status == 503:
                return False
            raise
        return True

    def metrics(self) -> str:
        """The server's metrics, in the OpenMetrics text format."""
        return self._send(_api.metrics())

    def openapi(self) -> Json:
        """The server's OpenAPI document."""
        return self._send(_api.openapi())

    # Collections.

    def create_collection(
        self,
        name: str,
        dimension: int,
        metric: Metric,
        *,
        indexed_fields: Optional[Mapping[str, str]] = None,
    ) -> Collection:
        """Create a collection; `metric` is `"cosine"`, `"l2"` or `"dot"`; `indexed_fields`
        maps payload paths to `"keyword"`, `"integer"`, `"float"` or `"bool"` for filters.
        Raises `Conflict` if it exists."""
        return self._send(_api.create_collection(name, dimension, metric, indexed_fields))

    def add_indexed_fields(self, collection: str, fields: Mapping[str, str]) -> list[IndexedField]:
        """Index more payload fields (admin); existing segments pick them up at their next
        compaction or index build. Returns every field now indexed."""
        return self._send(_api.add_indexed_fields(collection, fields))

    def count(self, collection: str, filter: Optional[Mapping[str, Any]] = None) -> int:
        """The number of live documents, or of those `filter` matches."""
        return self._send(_api.count(collection, filter))

    def list_collections(self) -> list[Collection]:
        """Every collection, by name."""
        return self._send(_api.list_collections())

    def get_collection(self, name: str) -> CollectionStats:
        """A collection's settings and statistics."""
        return self._send(_api.get_collection(name))

    def stats(self) -> Stats:
        """Statistics of every collection."""
        return self._send(_api.stats())

    def drop_collection(self, name: str) -> None:
        """Drop a collection and all its documents (admin)."""
        self._send(_api.drop_collection(name))

    # Documents and search.

    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: _vectors.Vectors,
        payloads: Optional[Sequence[Optional[Payload]]] = None,
        *,
        batch_size: Optional[int] = None,
        progress: UpsertProgress = None,
    ) -> UpsertResult:
        """Insert or replace documents: `vectors` is a 2-D array (or a list of lists), one row
        per id; `payloads` one dict (or None) per id.

        Vectors are sent as base64 float32. The input is checked as a whole before anything is
        sent, then sent in requests of at most `batch_size` documents (default: as many as fit
        in `max_body_bytes`). With more than one request the collection's dimension is checked
        first. `progress=True` shows a tqdm bar (if tqdm is installed); a callable is called
        with (documents done, total) after each request.
        """
        plan = _api.UpsertPlan(
            collection, ids, vectors, payloads, batch_size, self._base.max_body_bytes
        )
        if len(plan.batches) > 1:
            plan.check_dimension(self.get_collection(collection))
        report = UpsertReporter(progress, len(plan.ids), f"upsert {collection}")
        done = 0
        try:
            for batch in plan.batches:
                done += self._send(plan.request(batch))
                report.update(batch[1] - batch[0])
        finally:
            report.close()
        return UpsertResult(collection=collection, upserted=done, batches=len(plan.batches))

    @overload
    def get(
        self, collection: str, id: str, *, numpy: Literal[False] = False
    ) -> Document[list[float]]: ...

    @overload
    def get(
        self, collection: str, id: str, *, numpy: Literal[True]
    ) -> Document[NDArray[np.float32]]: ...

    def get(
        self, collection: str, id: str, *, numpy: bool = False
    ) -> Union[Document[list[float]], Document[NDArray[np.float32]]]:
        """A document; with `numpy=True` its vector is a float32 numpy array. Raises
        `NotFound` if there is no such document."""
        doc = self._send(_api.get(collection, id))
        if numpy:
            return Document(doc.id, _vectors.to_numpy(doc.vector), doc.payload)
        return doc

    def delete(self, collection: str, ids: Union[str, Sequence[str]]) -> DeleteResult:
        """Delete one id or several; ids that do not exist are reported in `missing`."""
        return self._send(_api.delete(collection, ids))

    def search(
        self,
        collection: str,
        vector: _vectors.VectorLike,
        k: int = 10,
        with_payload: bool = False,
        filter: Optional[Mapping[str, Any]] = None,
    ) -> list[Hit]:
        """The `k` nearest documents to `vector` (a list or a 1-D array), best first; with
        `filter` (`{"must": [{"key": "lang", "match": {"value": "en"}}]}`, see the API docs),
        the nearest among the documents it matches. A bad filter raises `InvalidArgument`."""
        return self._send(_api.search(collection, vector, k, with_payload, filter))

    # Flush and compaction.

    def flush(self, collection: str) -> list[Segment]:
        """Write the in-memory documents to a segment now; returns the segments written."""
        return self._send(_api.flush(collection))

    def segments(self, collection: str) -> list[Segment]:
        """The collection's sealed segments, oldest first."""
        return self._send(_api.segments(collection))

    @overload
    def compact(
        self,
        collection: str,
        *,
        wait: Literal[True] = True,
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
    ) -> CompactResult: ...

    @overload
    def compact(
        self,
        collection: str,
        *,
        wait: Literal[False],
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
    ) -> Operation: ...

    def compact(
        self,
        collection: str,
        *,
        wait: bool = True,
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
    ) -> Union[CompactResult, Operation]:
        """Merge the collection's segments into one hot segment (admin). Runs as an
        asynchronous operation: with `wait=True` this polls it and returns its result (or
        raises its error); with `wait=False` it returns the running `Operation`."""
        req, parse = _api.compact(collection)
        return self._operation(req, parse, wait, progress, timeout)

    # Tiering.

    @overload
    def offload(
        self,
        collection: str,
        segments: Optional[Sequence[int]] = None,
        *,
        wait: Literal[True] = True,
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
    ) -> MoveResult: ...

    @overload
    def offload(
        self,
        collection: str,
        segments: Optional[Sequence[int]] = None,
        *,
        wait: Literal[False],
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
    ) -> Operation: ...

    def offload(
        self,
        collection: str,
        segments: Optional[Sequence[int]] = None,
        *,
        wait: bool = True,
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
    ) -> Union[MoveResult, Operation]:
        """Move sealed segments (all that are not cold, or these ids) to the cold tier (admin).

        Runs as an asynchronous operation: with `wait=True` this polls it, reporting progress
        in bytes (`progress=True` for a tqdm bar, or a callable taking the `Operation`), and
        returns its result or raises its error; with `wait=False` it returns the running
        `Operation` (see `wait_operation`). `timeout` bounds the wait, not the operation.
        """
        req, parse = _api.move(collection, "offload", segments)
        return self._operation(req, parse, wait, progress, timeout)

    @overload
    def hydrate(
        self,
        collection: str,
        segments: Optional[Sequence[int]] = None,
        *,
        wait: Literal[True] = True,
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
    ) -> MoveResult: ...

    @overload
    def hydrate(
        self,
        collection: str,
        segments: Optional[Sequence[int]] = None,
        *,
        wait: Literal[False],
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
    ) -> Operation: ...

    def hydrate(
        self,
        collection: str,
        segments: Optional[Sequence[int]] = None,
        *,
        wait: bool = True,
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
    ) -> Union[MoveResult, Operation]:
        """Bring segments (all that are not hot, or these ids) back to the hot tier (admin);
        the same operation handling as `offload`."""
        req, parse = _api.move(collection, "hydrate", segments)
        return self._operation(req, parse, wait, progress, timeout)

    def pin(self, collection: str, segment: Optional[int] = None) -> PinResult:
        """Pin the collection, or one segment, to the hot tier (admin). Moves nothing now."""
        return self._send(_api.pin(collection, segment, True))

    def unpin(self, collection: str, segment: Optional[int] = None) -> PinResult:
        """Undo a pin of the collection, or of one segment (admin)."""
        return self._send(_api.pin(collection, segment, False))

    def get_overrides(self, collection: str) -> TieringOverrides:
        """The collection's tiering policy overrides."""
        return self._send(_api.get_overrides(collection))

    def set_overrides(
        self,
        collection: str,
        *,
        move_to_warm_after: Optional[_api.Duration] = None,
        move_to_cold_after: Optional[_api.Duration] = None,
        max_hot_size_bytes: Optional[_api.SizeArg] = None,
        max_warm_size_bytes: Optional[_api.SizeArg] = None,
        min_residency: Optional[_api.Duration] = None,
    ) -> TieringOverrides:
        """Replace the collection's tiering overrides (admin); those left out are cleared.
        Durations are strings (`"7d"`) or `timedelta`s, sizes strings (`"10GiB"`) or bytes."""
        return self._send(
            _api.set_overrides(
                collection,
                move_to_warm_after=move_to_warm_after,
                move_to_cold_after=move_to_cold_after,
                max_hot_size_bytes=max_hot_size_bytes,
                max_warm_size_bytes=max_warm_size_bytes,
                min_residency=min_residency,
            )
        )

    def tiering_status(self) -> TieringStatus:
        """Where every segment is, what is moving, the last errors and the counters."""
        return self._send(_api.tiering_status())

    @overload
    def maintenance(
        self,
        *,
        wait: Literal[True] = True,
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
    ) -> MaintenanceResult: ...

    @overload
    def maintenance(
        self,
        *,
        wait: Literal[False],
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
    ) -> Operation: ...

    def maintenance(
        self,
        *,
        wait: bool = True,
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
    ) -> Union[MaintenanceResult, Operation]:
        """Run a tiering maintenance pass now (admin); the same operation handling as
        `offload`."""
        req, parse = _api.maintenance()
        return self._operation(req, parse, wait, progress, timeout)

    # Asynchronous operations.

    def operations(self) -> list[Operation]:
        """The operations the server keeps, newest first."""
        return self._send(_api.operations())

    def get_operation(self, id: str) -> Operation:
        """One operation, by id (`op-3`)."""
        return self._send(_api.get_operation(id))

    def wait_operation(
        self,
        operation: Union[Operation, str],
        *,
        progress: OperationProgress = None,
        timeout: Optional[float] = None,
        poll_interval: float = 0.25,
    ) -> Operation:
        """Poll an operation until it has finished and return it (check `.state` and
        `.error`). Raises `Timeout` when `timeout` seconds pass first; the operation goes on."""
        op = operation if isinstance(operation, Operation) else self.get_operation(operation)
        report = OperationReporter(progress, f"{op.kind} {op.collection or ''}".strip())
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        try:
            while True:
                report.update(op)
                if op.done:
                    return op
                if deadline is not None and time.monotonic() >= deadline:
                    raise Timeout(f"operation {op.id} still running after {timeout} s")
                time.sleep(delay)
                delay = min(delay * 2, poll_interval)
                op = self.get_operation(op.id)
        finally:
            report.close()

    def _operation(
        self,
        req: _api.Request[Operation],
        parse: Callable[[Json], T],
        wait: bool,
        progress: OperationProgress,
        timeout: Optional[float],
    ) -> Union[T, Operation]:
        op = self._send(req)
        if not wait:
            return op
        return _api.operation_outcome(
            self.wait_operation(op, progress=progress, timeout=timeout), parse
        )


__all__ = ["Client"]
