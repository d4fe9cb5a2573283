"""Every method of `barq.Client` against a real server."""

from __future__ import annotations

import datetime
from typing import Callable

import pytest

import barq

from conftest import Server


def test_health_ready_metrics_openapi(client: barq.Client) -> None:
    assert client.health() is True
    assert client.ready() is True
    assert "barq_http_requests_total" in client.metrics()
    assert "/v1/collections" in client.openapi()["paths"]


def test_collections(client: barq.Client, new_name: Callable[[], str]) -> None:
    name = new_name()
    created = client.create_collection(name, 4, "l2")
    assert created == barq.Collection(name=name, dimension=4, metric="l2")
    assert created in client.list_collections()
    info = client.get_collection(name)
    assert isinstance(info, barq.CollectionStats)
    assert (info.name, info.dimension, info.metric, info.documents) == (name, 4, "l2", 0)
    assert info.created_at_ms > 0
    assert any(c.name == name for c in client.stats().collections)
    with pytest.raises(barq.Conflict) as e:
        client.create_collection(name, 4, "l2")
    assert e.value.status == 409 and e.value.code == "conflict"
    assert name in e.value.message
    client.drop_collection(name)
    assert all(c.name != name for c in client.list_collections())
    with pytest.raises(barq.NotFound):
        client.get_collection(name)
    with pytest.raises(barq.NotFound):
        client.drop_collection(name)


def test_upsert_get_search_delete(client: barq.Client, collection: str) -> None:
    r = client.upsert(
        collection,
        ["a", "b", "c"],
        [[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0]],
        [{"title": "first"}, None, {"n": [1, 2]}],
    )
    assert r == barq.UpsertResult(collection=collection, upserted=3, batches=1)
    assert client.get_collection(collection).documents == 3

    doc = client.get(collection, "a")
    assert doc == barq.Document(id="a", vector=[1.0, 0.0, 0.0], payload={"title": "first"})
    assert client.get(collection, "b").payload is None
    assert client.get(collection, "c").vector == [
        0.6000000238418579,
        0.800000011920929,
        0.0,
    ]

    hits = client.search(collection, [1, 0, 0], k=2)
    assert [h.id for h in hits] == ["a", "c"]
    assert hits[0].score == pytest.approx(1.0)
    assert hits[1].score == pytest.approx(0.6)
    assert all(h.payload is None for h in hits)
    hits = client.search(collection, [1, 0, 0], k=3, with_payload=True)
    assert hits[0] == barq.Hit(id="a", score=1.0, payload={"title": "first"})
    assert [h.payload for h in hits[1:]] == [{"n": [1, 2]}, None]
    assert len(client.search(collection, [0, 0, 1])) == 3  # k defaults to 10

    # Replacing a document replaces it whole.
    client.upsert(collection, ["a"], [[0, 0, 1]])
    assert client.get(collection, "a") == barq.Document("a", [0.0, 0.0, 1.0], None)

    assert client.delete(collection, "a") == barq.DeleteResult(collection, ["a"], [])
    assert client.delete(collection, ["b", "nope"]) == barq.DeleteResult(
        collection, ["b"], ["nope"]
    )
    assert client.delete(collection, "a").missing == ["a"]
    with pytest.raises(barq.NotFound) as e:
        client.get(collection, "a")
    assert e.value.message == f'document "a" not found in collection "{collection}"'
    assert [h.id for h in client.search(collection, [1, 0, 0])] == ["c"]


def test_filtered_search_count_and_indexed_fields(
    client: barq.Client, new_name: Callable[[], str]
) -> None:
    name = new_name()
    created = client.create_collection(name, 2, "l2", indexed_fields={"lang": "keyword"})
    assert created.indexed_fields == (barq.IndexedField("lang", "keyword"),)
    try:
        ids = [f"d{i:02}" for i in range(20)]
        client.upsert(
            name,
            ids,
            [[float(i), 0.0] for i in range(20)],
            [{"lang": "en" if i % 2 else "de", "year": 2000 + i} for i in range(20)],
        )
        english = {"must": [{"key": "lang", "match": {"value": "en"}}]}
        hits = client.search(name, [10.2, 0.0], k=2, filter=english)
        assert [h.id for h in hits] == ["d11", "d09"]
        recent = {"must": [{"key": "year", "range": {"gte": 2015}}], "must_not": [english]}
        assert [h.id for h in client.search(name, [0.0, 0.0], k=3, filter=recent)] == [
            "d16",
            "d18",
        ]
        assert client.count(name) == 20
        assert client.count(name, english) == 10
        with pytest.raises(barq.InvalidArgument) as e:
            client.search(name, [0.0, 0.0], filter={"must": [{"key": "lang", "like": "e%"}]})
        assert "filter.must[0]" in e.value.message
        fields = client.add_indexed_fields(name, {"year": "integer"})
        assert [f.path for f in fields] == ["lang", "year"]
        with pytest.raises(barq.InvalidArgument):
            client.add_indexed_fields(name, {"year": "bool"})
    finally:
        client.drop_collection(name)


def test_ids_are_percent_encoded(client: barq.Client, collection: str) -> None:
    ids = ["a b/é?", "x%2Fy", "..", ".", "#frag", "?q=1"]
    client.upsert(collection, ids, [[1, 0, 0]] * len(ids))
    for i in ids:
        assert client.get(collection, i).id == i
    assert client.delete(collection, "a b/é?").deleted == ["a b/é?"]


def test_flush_segments_compact(client: barq.Client, collection: str) -> None:
    assert client.flush(collection) == []
    client.upsert(collection, ["a", "b"], [[1, 0, 0], [0, 1, 0]])
    (seg,) = client.flush(collection)
    assert isinstance(seg, barq.Segment)
    assert (seg.rows, seg.tier) == (2, "hot")
    assert seg.checksum.startswith("crc32c:")
    client.upsert(collection, ["a"], [[0, 0, 1]])
    client.delete(collection, "b")
    client.flush(collection)
    assert len(client.segments(collection)) == 2

    result = client.compact(collection)
    assert isinstance(result, barq.CompactResult)
    assert len(result.inputs) == 2
    assert result.output is not None and result.output.rows == 1
    assert result.dropped_rows == 3
    assert [s.id for s in client.segments(collection)] == [result.output.id]
    assert client.get(collection, "a").vector == [0.0, 0.0, 1.0]

    # Without waiting: the running (or finished) operation.
    op = client.compact(collection, wait=False)
    assert isinstance(op, barq.Operation)
    assert (op.kind, op.collection) == ("compact", collection)
    done = client.wait_operation(op.id, timeout=30)
    assert done.state == "succeeded" and done.finished_at_ms is not None
    assert done.id in [o.id for o in client.operations()]
    assert client.get_operation(done.id) == done


def test_overrides(client: barq.Client, collection: str) -> None:
    assert client.get_overrides(collection) == barq.TieringOverrides(collection)
    o = client.set_overrides(
        collection,
        move_to_cold_after="7d",
        max_hot_size_bytes="10GiB",
        min_residency=datetime.timedelta(minutes=90),
    )
    assert o == barq.TieringOverrides(
        collection,
        move_to_cold_after="7days",
        max_hot_size_bytes=10 * 2**30,
        min_residency="1h 30m",
    )
    assert client.get_overrides(collection) == o
    assert client.set_overrides(collection, max_hot_size_bytes=1234567).max_hot_size_bytes == (
        1234567
    )
    assert client.set_overrides(collection) == barq.TieringOverrides(collection)
    with pytest.raises(barq.InvalidArgument, match="warm"):
        client.set_overrides(collection, move_to_warm_after="1h")
    with pytest.raises(barq.InvalidArgument):
        client.set_overrides(collection, move_to_cold_after="soon")


def test_batches_follow_the_body_limit(server: Server, collection: str) -> None:
    seen: list[tuple[int, int]] = []
    with server.client(max_body_bytes=500) as c:
        ids = [f"d{i}" for i in range(100)]
        r = c.upsert(
            collection,
            ids,
            [[i, 1, 0] for i in range(100)],
            progress=lambda done, total: seen.append((done, total)),
        )
        assert r.upserted == 100 and r.batches > 5
        assert seen[-1] == (100, 100) and len(seen) == r.batches
        assert c.get(collection, "d42").vector == [42.0, 1.0, 0.0]
    with server.client() as c:
        r = c.upsert(collection, ids, [[i, 2, 0] for i in range(100)], batch_size=30)
        assert r.batches == 4
        assert c.get(collection, "d99").vector == [99.0, 2.0, 0.0]


def test_a_shared_client_reuses_its_connection(client: barq.Client, collection: str) -> None:
    for _ in range(20):
        client.search(collection, [1, 0, 0])
    # httpx keeps the connection alive: one open connection in the pool.
    pool = client._http._transport._pool  # type: ignore[attr-defined]
    assert len(pool.connections) == 1


def test_a_progress_bar(
    client: barq.Client, collection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    r = client.upsert(collection, ["a", "b"], [[1, 0, 0], [0, 1, 0]], progress=True)
    assert r.upserted == 2
    assert "upsert " + collection in capsys.readouterr().err  # tqdm writes to stderr


def test_sync_and_async_clients_have_the_same_methods() -> None:
    def public(cls: type) -> set[str]:
        return {m for m in dir(cls) if not m.startswith("_")}

    assert public(barq.Client) - {"close"} == public(barq.AsyncClient) - {"aclose"}
