"""The API's requests and their answers, shared by `Client` and `AsyncClient` (no I/O here)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Generic,
    Optional,
    TypeVar,
    Union,
)
from urllib.parse import quote

from . import _vectors
from ._errors import BarqError, InvalidArgument, error_from
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
    MoveResult,
    Operation,
    Payload,
    PinResult,
    Segment,
    Stats,
    TieringOverrides,
    TieringStatus,
)

T = TypeVar("T")

PUBLIC, DATA, ADMIN = "public", "data", "admin"

# The server's default --max-body-bytes.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_ID_BYTES = 256
MAX_PAYLOAD_BYTES = 65536

Duration = Union[str, datetime.timedelta]
SizeArg = Union[str, int]


@dataclass(frozen=True)
class Request(Generic[T]):
    """One HTTP request and how to read its JSON answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    body: Optional[bytes] = None
    access: str = DATA
    # Safe to send again after a transport error (the server may have seen it already).
    idempotent: bool = False
    text: bool = False


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def seg(s: str) -> str:
    """A path segment, percent-encoded (a `/` in an id is `%2F`). `.` and `..` are encoded
    too, or URL normalization would remove them as dot segments."""
    if s in (".", ".."):
        return s.replace(".", "%2E")
    return quote(s, safe="")


def col(name: str, *rest: str) -> str:
    return "/".join(["/v1/collections", seg(name), *rest])


def error_of_answer(status: int, body: bytes) -> BarqError:
    """The exception of an error response: `{"error": {"code", "message"}}`, or the raw text."""
    try:
        e = json.loads(body)["error"]
        return error_from(status, str(e["code"]), str(e["message"]))
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip() or f"HTTP {status}"
        return error_from(status, None, text)


def operation_outcome(op: Operation, parse: Callable[[Json], T]) -> T:
    """The result of a finished operation, or its error raised."""
    if op.state == "succeeded":
        return parse(op.result or {})
    err = op.error
    code = err.code if err else "internal"
    message = err.message if err else f"operation {op.id} failed"
    raise error_from(None, code, message)


# Health and metadata.


def healthz() -> Request[Json]:
    return Request("GET", "/healthz", dict, access=PUBLIC, idempotent=True)


def readyz() -> Request[Json]:
    return Request("GET", "/readyz", dict, access=PUBLIC, idempotent=True)


def metrics() -> Request[str]:
    return Request("GET", "/metrics", str, idempotent=True, text=True)


def openapi() -> Request[Json]:
    return Request("GET", "/v1/openapi.json", dict, idempotent=True)


# Collections.


def list_collections() -> Request[list[Collection]]:
    return Request(
        "GET",
        "/v1/collections",
        lambda d: [Collection._parse(c) for c in d["collections"]],
        idempotent=True,
    )


def stats() -> Request[Stats]:
    return Request("GET", "/v1/stats", Stats._parse, idempotent=True)


FieldsArg = Optional[Mapping[str, str]]


def fields_json(fields: FieldsArg) -> list[Json]:
    """`{"lang": "keyword", "year": "integer"}` as the API's indexed fields."""
    return [{"path": p, "type": t} for p, t in (fields or {}).items()]


def create_collection(
    name: str, dimension: int, metric: str, indexed_fields: FieldsArg = None
) -> Request[Collection]:
    body: Json = {"name": name, "dimension": dimension, "metric": metric}
    if indexed_fields:
        body["indexed_fields"] = fields_json(indexed_fields)
    return Request("POST", "/v1/collections", Collection._parse, body=dumps(body))


def add_indexed_fields(collection: str, fields: Mapping[str, str]) -> Request[list[IndexedField]]:
    body = dumps({"indexed_fields": fields_json(fields)})
    return Request(
        "POST",
        col(collection, "indexed-fields"),
        lambda d: [IndexedField._parse(f) for f in d["indexed_fields"]],
        body=body,
        access=ADMIN,
        idempotent=True,
    )


def count(collection: str, filter: Optional[Mapping[str, Any]]) -> Request[int]:
    body = dumps({} if filter is None else {"filter": filter})
    return Request(
        "POST", col(collection, "count"), lambda d: int(d["count"]), body=body, idempotent=True
    )


def get_collection(name: str) -> Request[CollectionStats]:
    return Request("GET", col(name), CollectionStats._parse, idempotent=True)


def drop_collection(name: str) -> Request[None]:
    return Request("DELETE", col(name), lambda _: None, access=ADMIN)


# Documents and search.


def get(collection: str, id: str) -> Request[Document[list[float]]]:
    def parse(d: Json) -> Document[list[float]]:
        return Document(id=d["id"], vector=d["vector"], payload=d.get("payload"))

    return Request("GET", col(collection, "documents", seg(id)), parse, idempotent=True)


def delete(collection: str, ids: Union[str, Sequence[str]]) -> Request[DeleteResult]:
    if isinstance(ids, str):
        return Request("DELETE", col(collection, "documents", seg(ids)), DeleteResult._parse)
    body = dumps({"ids": list(ids)})
    return Request("POST", col(collection, "delete-documents"), DeleteResult._parse, body=body)


def search(
    collection: str,
    vector: _vectors.VectorLike,
    k: int,
    with_payload: bool,
    filter: Optional[Mapping[str, Any]] = None,
) -> Request[list[Hit]]:
    body: Json = {"vector": _vectors.vector_b64(vector), "k": k}
    if with_payload:
        body["with_payload"] = True
    if filter is not None:
        body["filter"] = filter
    return Request(
        "POST",
        col(collection, "search"),
        lambda d: [Hit._parse(h) for h in d["results"]],
        body=dumps(body),
        idempotent=True,
    )


# Flush, compaction, tiering.


def flush(collection: str) -> Request[list[Segment]]:
    return Request(
        "POST",
        col(collection, "flush"),
        lambda d: [Segment._parse(s) for s in d["segments"]],
        idempotent=True,
    )


def segments(collection: str) -> Request[list[Segment]]:
    return Request(
        "GET",
        col(collection, "segments"),
        lambda d: [Segment._parse(s) for s in d["segments"]],
        idempotent=True,
    )


def start(path: str, body: Optional[Json] = None) -> Request[Operation]:
    """Start a long route as an asynchronous operation (the answer is 202 and the operation)."""
    return Request(
        "POST", path, Operation._parse, body=dumps({**(body or {}), "async": True}), access=ADMIN
    )


def compact(collection: str) -> tuple[Request[Operation], Callable[[Json], CompactResult]]:
    return start(col(collection, "compact")), CompactResult._parse


def move(
    collection: str, kind: str, segment_ids: Optional[Sequence[int]]
) -> tuple[Request[Operation], Callable[[Json], MoveResult]]:
    body: Json = {} if segment_ids is None else {"segments": [int(s) for s in segment_ids]}
    return start(col(collection, kind), body), MoveResult._parse


def maintenance() -> tuple[Request[Operation], Callable[[Json], MaintenanceResult]]:
    return start("/v1/tiering/maintenance"), MaintenanceResult._parse


def pin(collection: str, segment: Optional[int], pinned: bool) -> Request[PinResult]:
    body = b"" if segment is None else dumps({"segment": int(segment)})
    path = col(collection, "pin" if pinned else "unpin")
    return Request("POST", path, PinResult._parse, body=body, access=ADMIN, idempotent=True)


def get_overrides(collection: str) -> Request[TieringOverrides]:
    return Request("GET", col(collection, "tiering"), TieringOverrides._parse, idempotent=True)


def _duration(name: str, d: Duration) -> str:
    if isinstance(d, datetime.timedelta):
        ms = round(d.total_seconds() * 1000)
        if ms <= 0:
            raise InvalidArgument(f"{name} must be a positive duration, got {d}")
        return f"{ms}ms"
    return d


def set_overrides(
    collection: str,
    *,
    move_to_warm_after: Optional[Duration],
    move_to_cold_after: Optional[Duration],
    max_hot_size_bytes: Optional[SizeArg],
    max_warm_size_bytes: Optional[SizeArg],
    min_residency: Optional[Duration],
) -> Request[TieringOverrides]:
    body: Json = {}
    for key, dur in (
        ("move_to_warm_after", move_to_warm_after),
        ("move_to_cold_after", move_to_cold_after),
        ("min_residency", min_residency),
    ):
        if dur is not None:
            body[key] = _duration(key, dur)
    for key, size in (
        ("max_hot_size_bytes", max_hot_size_bytes),
        ("max_warm_size_bytes", max_warm_size_bytes),
    ):
        if size is not None:
            body[key] = size
    return Request(
        "PUT",
        col(collection, "tiering"),
        TieringOverrides._parse,
        body=dumps(body),
        access=ADMIN,
        idempotent=True,
    )


def tiering_status() -> Request[TieringStatus]:
    return Request("GET", "/v1/tiering/status", TieringStatus._parse, idempotent=True)


def operations() -> Request[list[Operation]]:
    return Request(
        "GET",
        "/v1/operations",
        lambda d: [Operation._parse(o) for o in d["operations"]],
        idempotent=True,
    )


def get_operation(id: str) -> Request[Operation]:
    return Request("GET", "/v1/operations/" + seg(id), Operation._parse, idempotent=True)


# Upserts.


class UpsertPlan:
    """A checked upsert, cut into request bodies that fit the body limit.

    Everything is validated here, before the first request, so bad input writes nothing.
    """

    def __init__(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: _vectors.Vectors,
        payloads: Optional[Sequence[Optional[Payload]]],
        batch_size: Optional[int],
        max_body_bytes: int,
    ) -> None:
        if isinstance(ids, str):
            raise InvalidArgument("ids must be a sequence of strings, not one string")
        ids = list(ids)
        if not ids:
            raise InvalidArgument("nothing to upsert: ids is empty")
        self.collection = collection
        self.ids = ids
        self.id_json = [_id_json(i, n) for n, i in enumerate(ids)]
        self.matrix = _vectors.matrix(vectors, ids)
        if self.matrix.rows != len(ids):
            raise InvalidArgument(f"{len(ids)} ids but {self.matrix.rows} vectors")
        self.payload_json: list[bytes] = []
        if payloads is not None:
            payloads = list(payloads)
            if len(payloads) != len(ids):
                raise InvalidArgument(f"{len(ids)} ids but {len(payloads)} payloads")
            self.payload_json = [_payload_json(p, i) for p, i in zip(payloads, ids)]
        if batch_size is not None and batch_size < 1:
            raise InvalidArgument(f"batch_size must be at least 1, got {batch_size}")
        self.path = col(collection, "documents")
        self.batches = self._cut(batch_size, max_body_bytes)

    def _cut(self, batch_size: Optional[int], max_body_bytes: int) -> list[tuple[int, int]]:
        envelope = len(b'{"documents":[]}')
        # {"id":…,"vector":"…"} plus ,"payload":… plus the comma between documents.
        fixed = len(b'{"id":,"vector":""}') + self.matrix.b64_len + 1
        limit = batch_size or len(self.ids)
        batches: list[tuple[int, int]] = []
        start, size = 0, envelope
        for i in range(len(self.ids)):
            doc = fixed + len(self.id_json[i])
            if self.payload_json and self.payload_json[i]:
                doc += len(b',"payload":') + len(self.payload_json[i])
            if envelope + doc > max_body_bytes:
                raise InvalidArgument(
                    f"document {self.ids[i]!r} alone is {doc} bytes, over the body limit of "
                    f"{max_body_bytes} bytes"
                )
            if i > start and (size + doc > max_body_bytes or i - start >= limit):
                batches.append((start, i))
                start, size = i, envelope
            size += doc
        batches.append((start, len(self.ids)))
        return batches

    def body(self, batch: tuple[int, int]) -> bytes:
        start, end = batch
        m, ids, payloads = self.matrix, self.id_json, self.payload_json
        parts = []
        for i in range(start, end):
            doc = b'{"id":' + ids[i] + b',"vector":"' + m.row_b64(i) + b'"'
            if payloads and payloads[i]:
                doc += b',"payload":' + payloads[i]
            parts.append(doc + b"}")
        return b'{"documents":[' + b",".join(parts) + b"]}"

    def request(self, batch: tuple[int, int]) -> Request[int]:
        # An upsert replaces whole documents, so sending it again is harmless.
        return Request(
            "POST",
            self.path,
            lambda d: int(d["upserted"]),
            body=self.body(batch),
            idempotent=True,
        )

    def check_dimension(self, info: CollectionStats) -> None:
        """Before a multi-request upsert: a wrong dimension would fail only after the first."""
        if info.dimension != self.matrix.dim:
            raise InvalidArgument(
                f"dimension mismatch: collection {self.collection!r} expects "
                f"{info.dimension}, the vectors have {self.matrix.dim}"
            )


def _id_json(id: Any, row: int) -> bytes:
    if not isinstance(id, str):
        raise InvalidArgument(f"id of row {row} must be a string, got {type(id).__name__}")
    n = len(id.encode())
    if not 1 <= n <= MAX_ID_BYTES:
        raise InvalidArgument(
            f"invalid document id at row {row}: {n} bytes, expected 1 to {MAX_ID_BYTES}"
        )
    return dumps(id)


def _payload_json(payload: Optional[Mapping[str, Any]], id: str) -> bytes:
    if payload is None:
        return b""
    if not isinstance(payload, Mapping):
        raise InvalidArgument(
            f"payload of document {id!r} must be a dict or None, got {type(payload).__name__}"
        )
    try:
        raw = json.dumps(
            payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"payload of document {id!r} is not valid JSON: {e}") from None
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument(
            f"payload of document {id!r} is {len(raw)} bytes, the limit is {MAX_PAYLOAD_BYTES}"
        )
    return raw
