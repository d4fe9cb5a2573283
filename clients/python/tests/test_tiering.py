"""Tiering through the client: offload (and a search after it), hydrate, pin, status,
maintenance, and the polling of asynchronous operations with progress."""

from __future__ import annotations

from typing import Callable

import numpy as np

import barq


def test_offload_search_hydrate(client: barq.Client, collection: str) -> None:
    client.upsert(collection, ["a", "b", "c"], [[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0]])
    first = client.flush(collection)[0]
    client.upsert(collection, ["d"], [[0, 0, 1]], [{"k": "v"}])
    second = client.flush(collection)[0]

    ops: list[barq.Operation] = []
    moved = client.offload(collection, [first.id], progress=ops.append)
    assert isinstance(moved, barq.MoveResult)
    assert (moved.collection, moved.to) == (collection, "cold")
    assert [(m.segment_id, m.from_tier, m.to) for m in moved.moves] == [(first.id, "hot", "cold")]
    assert moved.bytes_moved == first.size_bytes
    # Progress: every poll reported, the last one complete.
    assert ops and ops[-1].state == "succeeded"
    assert ops[-1].bytes_done == ops[-1].bytes_total == first.size_bytes

    info = client.get_collection(collection)
    assert set(info.tiers) == {"hot", "cold"} and info.tiers["cold"].segments == 1
    # Reads and searches go through the cold tier transparently.
    hits = client.search(collection, [1, 0, 0], k=4, with_payload=True)
    assert [h.id for h in hits][:2] == ["a", "c"]
    assert client.get(collection, "b").vector == [0.0, 1.0, 0.0]

    # Everything that is not cold; a second offload has nothing left to move.
    rest = client.offload(collection)
    assert [m.segment_id for m in rest.moves] == [second.id]
    assert client.offload(collection).moves == []
    assert {s.tier for s in client.segments(collection)} == {"cold"}
    assert [h.id for h in client.search(collection, [0, 0, 1], k=1)] == ["d"]

    back = client.hydrate(collection, wait=False)
    assert isinstance(back, barq.Operation) and back.kind == "hydrate"
    assert back.bytes_total == first.size_bytes + second.size_bytes
    done = client.wait_operation(back, timeout=60)
    assert done.state == "succeeded" and done.result is not None
    assert done.result["to"] == "hot"
    assert {s.tier for s in client.segments(collection)} == {"hot"}
    # The cold copy is kept: offloading again uploads nothing.
    again = client.offload(collection, progress=True)
    assert again.bytes_moved == 0 and len(again.moves) == 2
    assert client.hydrate(collection).to == "hot"


def test_pin_status_maintenance(client: barq.Client, collection: str) -> None:
    client.upsert(collection, ["a"], [[1, 0, 0]])
    seg = client.flush(collection)[0]
    assert client.pin(collection) == barq.PinResult(collection, None, True)
    assert client.pin(collection, seg.id) == barq.PinResult(collection, seg.id, True)

    status = client.tiering_status()
    assert isinstance(status, barq.TieringStatus)
    assert status.cold_store_reachable is True and status.cold_store_error is None
    (mine,) = [c for c in status.collections if c.name == collection]
    assert mine.pinned
    assert [(s.id, s.tier, s.pinned, s.rows) for s in mine.segments] == [(seg.id, "hot", True, 1)]
    assert "moves_done" in status.counters

    assert client.unpin(collection) == barq.PinResult(collection, None, False)
    assert client.unpin(collection, seg.id).pinned is False
    (mine,) = [c for c in client.tiering_status().collections if c.name == collection]
    assert not mine.pinned and not mine.segments[0].pinned

    result = client.maintenance()
    assert isinstance(result, barq.MaintenanceResult)
    assert result.moves_failed == [] and result.gc_error is None
    op = client.maintenance(wait=False)
    assert op.kind == "maintenance" and op.collection is None
    assert client.wait_operation(op.id).state == "succeeded"
    assert client.tiering_status().last_maintenance_ms is not None


def test_offload_of_a_bigger_collection_reports_progress(
    client: barq.Client, new_name: Callable[[], str]
) -> None:
    name = new_name()
    client.create_collection(name, 256, "dot")
    vectors = np.random.default_rng(0).standard_normal((5000, 256), dtype=np.float32)
    client.upsert(name, [str(i) for i in range(5000)], vectors)
    client.flush(name)
    seen: list[tuple[int, int]] = []
    moved = client.offload(name, progress=lambda op: seen.append((op.bytes_done, op.bytes_total)))
    total = moved.bytes_moved
    assert total > 5000 * 256 * 4
    assert seen[-1] == (total, total)
    assert all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    hit = client.search(name, vectors[4321], k=1)[0]
    assert hit.id == "4321"
    client.drop_collection(name)
