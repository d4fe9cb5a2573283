"""The typed results of the API. Each has `_parse`, reading the server's JSON; fields the
server adds later are ignored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Optional, TypeVar

Metric = Literal["cosine", "l2", "dot"]
Tier = Literal["hot", "warm", "cold"]
Payload = dict[str, Any]
Json = dict[str, Any]

V = TypeVar("V")


@dataclass(frozen=True)
class Collection:
    """A collection's settings."""

    name: str
    dimension: int
    metric: str
    indexed_fields: tuple[IndexedField, ...] = ()

    @classmethod
    def _parse(cls, d: Json) -> Collection:
        return cls(
            name=d["name"],
            dimension=d["dimension"],
            metric=d["metric"],
            indexed_fields=tuple(IndexedField._parse(f) for f in d.get("indexed_fields", [])),
        )


@dataclass(frozen=True)
class IndexedField:
    """A payload field the collection indexes for filters: `type` is `"keyword"`,
    `"integer"`, `"float"` or `"bool"`."""

    path: str
    type: str

    @classmethod
    def _parse(cls, d: Json) -> IndexedField:
        return cls(path=d["path"], type=d["type"])


@dataclass(frozen=True)
class TierUsage:
    """Segments and bytes in one tier."""

    segments: int
    bytes: int


def _tiers(d: Optional[Json]) -> dict[str, TierUsage]:
    return {t: TierUsage(segments=u["segments"], bytes=u["bytes"]) for t, u in (d or {}).items()}


@dataclass(frozen=True)
class CollectionStats:
    """A collection's settings and statistics (`get_collection`, `stats`)."""

    name: str
    dimension: int
    metric: str
    created_at_ms: int
    documents: int
    segments: int
    segment_bytes: int
    segment_rows: int
    tiers: dict[str, TierUsage]
    memtable_rows: int
    memtable_bytes: int
    wal_bytes: int
    last_seq: int

    @classmethod
    def _parse(cls, d: Json) -> CollectionStats:
        return cls(
            name=d["name"],
            dimension=d["dimension"],
            metric=d["metric"],
            created_at_ms=d.get("created_at_ms", 0),
            documents=d.get("documents", 0),
            segments=d.get("segments", 0),
            segment_bytes=d.get("segment_bytes", 0),
            segment_rows=d.get("segment_rows", 0),
            tiers=_tiers(d.get("tiers")),
            memtable_rows=d.get("memtable_rows", 0),
            memtable_bytes=d.get("memtable_bytes", 0),
            wal_bytes=d.get("wal_bytes", 0),
            last_seq=d.get("last_seq", 0),
        )


@dataclass(frozen=True)
class Stats:
    """Statistics of every collection, and the server's data directory."""

    collections: list[CollectionStats]
    data_dir: str

    @classmethod
    def _parse(cls, d: Json) -> Stats:
        return cls(
            collections=[CollectionStats._parse(c) for c in d.get("collections", [])],
            data_dir=d.get("data_dir", ""),
        )


@dataclass(frozen=True)
class Document(Generic[V]):
    """A stored document. `vector` is a `list[float]`, or a float32 numpy array with
    `get(..., numpy=True)`; `payload` is `None` when the document has none."""

    id: str
    vector: V
    payload: Optional[Payload] = None


@dataclass(frozen=True)
class Hit:
    """One search result. `score` is a similarity for cosine and dot (higher is closer) and
    the Euclidean distance for l2 (lower is closer). `payload` is set only with
    `with_payload=True`, for documents that have one."""

    id: str
    score: float
    payload: Optional[Payload] = None

    @classmethod
    def _parse(cls, d: Json) -> Hit:
        return cls(id=d["id"], score=d["score"], payload=d.get("payload"))


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert wrote: `upserted` documents in `batches` requests."""

    collection: str
    upserted: int
    batches: int


@dataclass(frozen=True)
class DeleteResult:
    """The ids that were deleted and the ids that did not exist."""

    collection: str
    deleted: list[str]
    missing: list[str]

    @classmethod
    def _parse(cls, d: Json) -> DeleteResult:
        return cls(collection=d["collection"], deleted=d["deleted"], missing=d["missing"])


@dataclass(frozen=True)
class Segment:
    """A sealed segment's manifest entry."""

    id: int
    file_name: str
    size_bytes: int
    rows: int
    min_seq: int
    max_seq: int
    created_at_ms: int
    tier: str
    checksum: str
    remote_key: Optional[str] = None
    moved_at_ms: Optional[int] = None
    pinned: bool = False

    @classmethod
    def _parse(cls, d: Json) -> Segment:
        return cls(
            id=d["id"],
            file_name=d.get("file_name", ""),
            size_bytes=d.get("size_bytes", 0),
            rows=d.get("rows", 0),
            min_seq=d.get("min_seq", 0),
            max_seq=d.get("max_seq", 0),
            created_at_ms=d.get("created_at_ms", 0),
            tier=d.get("tier", ""),
            checksum=d.get("checksum", ""),
            remote_key=d.get("remote_key"),
            moved_at_ms=d.get("moved_at_ms"),
            pinned=bool(d.get("pinned", False)),
        )


@dataclass(frozen=True)
class CompactResult:
    """The merged segment ids, the new segment (`None` when no row survived) and the replaced
    versions and tombstones dropped."""

    inputs: list[int]
    output: Optional[Segment]
    dropped_rows: int

    @classmethod
    def _parse(cls, d: Json) -> CompactResult:
        out = d.get("output")
        return cls(
            inputs=list(d.get("inputs", [])),
            output=Segment._parse(out) if out else None,
            dropped_rows=d.get("dropped_rows", 0),
        )


@dataclass(frozen=True)
class Move:
    """One segment move. `bytes` is what was transferred (0 when nothing needed to be)."""

    collection: str
    segment_id: int
    from_tier: str
    to: str
    bytes: int

    @classmethod
    def _parse(cls, d: Json) -> Move:
        return cls(
            collection=d["collection"],
            segment_id=d["segment_id"],
            from_tier=d["from"],
            to=d["to"],
            bytes=d.get("bytes", 0),
        )


@dataclass(frozen=True)
class MoveResult:
    """The answer of offload and hydrate."""

    collection: str
    to: str
    moves: list[Move]
    bytes_moved: int

    @classmethod
    def _parse(cls, d: Json) -> MoveResult:
        return cls(
            collection=d["collection"],
            to=d["to"],
            moves=[Move._parse(m) for m in d.get("moves", [])],
            bytes_moved=d.get("bytes_moved", 0),
        )


@dataclass(frozen=True)
class PinResult:
    """The pin state after pin or unpin; `segment` is `None` for a collection pin."""

    collection: str
    segment: Optional[int]
    pinned: bool

    @classmethod
    def _parse(cls, d: Json) -> PinResult:
        return cls(collection=d["collection"], segment=d.get("segment"), pinned=d["pinned"])


@dataclass(frozen=True)
class TieringOverrides:
    """A collection's tiering policy overrides as stored; `None` = not overridden. Durations
    are shown like `"7days"`, sizes as integers (bytes)."""

    collection: str
    move_to_warm_after: Optional[str] = None
    move_to_cold_after: Optional[str] = None
    max_hot_size_bytes: Optional[int] = None
    max_warm_size_bytes: Optional[int] = None
    min_residency: Optional[str] = None

    @classmethod
    def _parse(cls, d: Json) -> TieringOverrides:
        o = d.get("overrides") or {}
        return cls(
            collection=d["collection"],
            move_to_warm_after=o.get("move_to_warm_after"),
            move_to_cold_after=o.get("move_to_cold_after"),
            max_hot_size_bytes=o.get("max_hot_size_bytes"),
            max_warm_size_bytes=o.get("max_warm_size_bytes"),
            min_residency=o.get("min_residency"),
        )


@dataclass(frozen=True)
class SegmentStatus:
    """A segment in the tiering status."""

    id: int
    tier: str
    size_bytes: int
    rows: int
    remote: bool
    pinned: bool
    sealed_at_ms: int
    last_access_ms: Optional[int]
    access_count: int
    busy: Optional[str]

    @classmethod
    def _parse(cls, d: Json) -> SegmentStatus:
        return cls(
            id=d["id"],
            tier=d["tier"],
            size_bytes=d.get("size_bytes", 0),
            rows=d.get("rows", 0),
            remote=bool(d.get("remote", False)),
            pinned=bool(d.get("pinned", False)),
            sealed_at_ms=d.get("sealed_at_ms", 0),
            last_access_ms=d.get("last_access_ms"),
            access_count=d.get("access_count", 0),
            busy=d.get("busy"),
        )


@dataclass(frozen=True)
class CollectionTiering:
    """A collection in the tiering status. `overrides` is the JSON object of
    `TieringOverrides` (durations like `"7days"`, sizes as integers)."""

    name: str
    pinned: bool
    overrides: Json
    tiers: dict[str, TierUsage]
    segments: list[SegmentStatus]

    @classmethod
    def _parse(cls, d: Json) -> CollectionTiering:
        return cls(
            name=d["name"],
            pinned=bool(d.get("pinned", False)),
            overrides=d.get("overrides") or {},
            tiers=_tiers(d.get("tiers")),
            segments=[SegmentStatus._parse(s) for s in d.get("segments", [])],
        )


@dataclass(frozen=True)
class MoveFailure:
    """The last failed move of a segment."""

    collection: str
    segment_id: int
    to: str
    error: str
    at_ms: int

    @classmethod
    def _parse(cls, d: Json) -> MoveFailure:
        return cls(
            collection=d["collection"],
            segment_id=d["segment_id"],
            to=d["to"],
            error=d.get("error", ""),
            at_ms=d.get("at_ms", 0),
        )


@dataclass(frozen=True)
class TieringStatus:
    """The tiering state of the whole database (`tiering_status`)."""

    cold_store: str
    cold_store_reachable: Optional[bool]
    cold_store_error: Optional[str]
    warm_dir: Optional[str]
    tiers: dict[str, TierUsage]
    collections: list[CollectionTiering]
    in_progress: list[tuple[str, int, str]]
    last_errors: list[MoveFailure]
    last_maintenance_ms: Optional[int]
    counters: dict[str, int]

    @classmethod
    def _parse(cls, d: Json) -> TieringStatus:
        return cls(
            cold_store=d.get("cold_store", ""),
            cold_store_reachable=d.get("cold_store_reachable"),
            cold_store_error=d.get("cold_store_error"),
            warm_dir=d.get("warm_dir"),
            tiers=_tiers(d.get("tiers")),
            collections=[CollectionTiering._parse(c) for c in d.get("collections", [])],
            in_progress=[(p[0], p[1], p[2]) for p in d.get("in_progress", [])],
            last_errors=[MoveFailure._parse(e) for e in d.get("last_errors", [])],
            last_maintenance_ms=d.get("last_maintenance_ms"),
            counters=dict(d.get("counters") or {}),
        )


@dataclass(frozen=True)
class MaintenanceResult:
    """The outcome of a maintenance pass."""

    planned: int
    moves_done: list[Move]
    moves_failed: list[MoveFailure]
    bytes_moved: int
    orphans_deleted: int
    gc_error: Optional[str]

    @classmethod
    def _parse(cls, d: Json) -> MaintenanceResult:
        return cls(
            planned=d.get("planned", 0),
            moves_done=[Move._parse(m) for m in d.get("moves_done", [])],
            moves_failed=[MoveFailure._parse(m) for m in d.get("moves_failed", [])],
            bytes_moved=d.get("bytes_moved", 0),
            orphans_deleted=d.get("orphans_deleted", 0),
            gc_error=d.get("gc_error"),
        )


@dataclass(frozen=True)
class ErrorInfo:
    """The error of a failed operation."""

    code: str
    message: str


@dataclass(frozen=True)
class Operation:
    """An asynchronous operation of the server (offload, hydrate, compact, maintenance).

    `result` is the raw body the synchronous request would have returned (once `succeeded`),
    `error` why it failed (once `failed`). `bytes_total` is 0 when unknown.
    """

    id: str
    kind: str
    state: str
    bytes_done: int
    bytes_total: int
    started_at_ms: int
    collection: Optional[str] = None
    finished_at_ms: Optional[int] = None
    result: Optional[Json] = field(default=None, repr=False)
    error: Optional[ErrorInfo] = None

    @property
    def done(self) -> bool:
        """Whether it has finished, successfully or not."""
        return self.state != "running"

    @classmethod
    def _parse(cls, d: Json) -> Operation:
        err = d.get("error")
        return cls(
            id=d["id"],
            kind=d["kind"],
            state=d["state"],
            bytes_done=d.get("bytes_done", 0),
            bytes_total=d.get("bytes_total", 0),
            started_at_ms=d.get("started_at_ms", 0),
            collection=d.get("collection"),
            finished_at_ms=d.get("finished_at_ms"),
            result=d.get("result"),
            error=ErrorInfo(code=err["code"], message=err["message"]) if err else None,
        )
