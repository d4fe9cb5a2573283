"""Errors: auth failures, bad input (client- and server-side), the code-to-exception mapping,
and retries on transport errors."""

from __future__ import annotations

from typing import Callable

import httpx
import numpy as np
import pytest

import barq
from barq import _api

from conftest import ADMIN_KEY, API_KEY, Server, ServerFactory


def test_auth(server: Server, collection: str) -> None:
    with barq.Client(server.url) as anon:
        assert anon.health() and anon.ready()  # public routes
        with pytest.raises(barq.Unauthorized) as e:
            anon.list_collections()
        assert e.value.status == 401 and e.value.code == "unauthorized"
        assert "needs an API key" in e.value.message
    with barq.Client(server.url, api_key="wrong") as wrong, pytest.raises(barq.Unauthorized):
        wrong.search(collection, [1, 0, 0])
    # The data key on admin routes: 403. The admin key works on data routes too.
    with barq.Client(server.url, api_key=API_KEY) as data:
        data.upsert(collection, ["a"], [[1, 0, 0]])
        for call in (
            lambda: data.drop_collection(collection),
            lambda: data.offload(collection),
            lambda: data.compact(collection),
            lambda: data.pin(collection),
            lambda: data.set_overrides(collection),
            lambda: data.maintenance(),
        ):
            with pytest.raises(barq.Forbidden) as f:
                call()
            assert f.value.status == 403 and "admin API key" in f.value.message
    with barq.Client(server.url, api_key=ADMIN_KEY) as admin:
        assert admin.get(collection, "a").id == "a"
        assert admin.pin(collection).pinned


def test_bad_input_from_the_server(client: barq.Client, collection: str) -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: client.create_collection("Bad/Name", 3, "cosine"), "name"),
        (lambda: client.create_collection("ok-name", 5000, "cosine"), "dimension 5000"),
        (lambda: client.create_collection("ok-name", 3, "L2"), "L2"),  # type: ignore[arg-type]
        (lambda: client.get_collection("UPPER"), "UPPER"),
        (lambda: client.upsert(collection, ["a"], [[1, 0]]), "dimension mismatch"),
        (lambda: client.search(collection, [1, 0]), "dimension"),
        (lambda: client.search(collection, [1, 0, 0], k=0), "invalid k 0"),
        (lambda: client.search(collection, [1, 0, 0], k=1001), "invalid k 1001"),
        (lambda: client.delete(collection, []), '"ids" is empty'),
        (lambda: client.offload(collection, [999]), "no segment 999"),
    ]
    for call, fragment in cases:
        with pytest.raises(barq.BarqError) as e:
            call()
        assert fragment in e.value.message, e.value
        assert isinstance(e.value, (barq.InvalidArgument, barq.NotFound)), e.value
        assert e.value.status in (400, 404)
    assert client.get_collection(collection).documents == 0


def test_bad_input_is_refused_before_anything_is_written(
    client: barq.Client, collection: str
) -> None:
    ids = [str(i) for i in range(1000)]
    good = np.ones((1000, 3), dtype=np.float32)
    nan = good.copy()
    nan[700, 2] = np.nan
    ragged = [[1.0, 0.0, 0.0]] * 999 + [[1.0, 0.0]]
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: client.upsert(collection, ids, ragged, batch_size=10), "row 999"),
        (lambda: client.upsert(collection, ids, nan, batch_size=10), "row 700"),
        (
            lambda: client.upsert(collection, ids, good.astype(np.float64) * 1e39, batch_size=10),
            "float32",
        ),
        (lambda: client.upsert(collection, ids[:-1], good), "999 ids but 1000 vectors"),
        (lambda: client.upsert(collection, ids, good, [{}] * 10), "10 payloads"),
        (lambda: client.upsert(collection, ids, good, [None] * 999 + ["x"]), "'999'"),  # type: ignore[list-item]
        (
            lambda: client.upsert(collection, ids, good, [{"v": float("nan")}] * 1000),
            "not valid JSON",
        ),
        (
            lambda: client.upsert(collection, ids, good, [None] * 999 + [{"x": "y" * 70000}]),
            "limit is 65536",
        ),
        (lambda: client.upsert(collection, [*ids[:-1], ""], good), "row 999"),
        (lambda: client.upsert(collection, [*ids[:-1], "x" * 257], good), "257 bytes"),
        (lambda: client.upsert(collection, "abc", good), "not one string"),
        (lambda: client.upsert(collection, [], []), "empty"),
        (lambda: client.upsert(collection, ids, good.reshape(-1)), "2-D"),
        (lambda: client.upsert(collection, ids, good, batch_size=0), "batch_size"),
        # A dimension mismatch over several requests is found before the first.
        (
            lambda: client.upsert(collection, ids, np.ones((1000, 4)), batch_size=10),
            "expects 3, the vectors have 4",
        ),
        (lambda: client.search(collection, np.ones((2, 3))), "1-D"),
    ]
    for call, fragment in cases:
        with pytest.raises(barq.InvalidArgument) as e:
            call()
        assert fragment in e.value.message, e.value
        assert e.value.status is None and e.value.code == "invalid_argument"
    assert client.get_collection(collection).documents == 0


def test_payload_too_large(server_factory: ServerFactory, new_name: Callable[[], str]) -> None:
    small = server_factory(args=("--max-body-bytes", "4KiB"))
    name = new_name()
    ids = [f"doc-{i}" for i in range(200)]
    vectors = np.random.default_rng(1).random((200, 8), dtype=np.float32)
    # A client that believes the default limit sends too much at once.
    with small.client() as c:
        c.create_collection(name, 8, "dot")
        with pytest.raises(barq.PayloadTooLarge) as e:
            c.upsert(name, ids, vectors)
        assert e.value.status == 413 and "--max-body-bytes" in e.value.message
    # One told the server's limit cuts its batches to fit.
    with small.client(max_body_bytes=4096) as c:
        r = c.upsert(name, ids, vectors)
        assert r.batches > 1 and c.get_collection(name).documents == 200


def test_no_server(new_name: Callable[[], str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with barq.Client(f"http://127.0.0.1:{port}", retries=1) as c:
        with pytest.raises(barq.TransportError) as e:
            c.list_collections()
        assert isinstance(e.value, barq.Unavailable) and e.value.status is None
        assert f"127.0.0.1:{port}" in e.value.message
    with pytest.raises(barq.InvalidArgument):
        barq.Client("localhost:6464")


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_argument", barq.InvalidArgument),
        (401, "unauthorized", barq.Unauthorized),
        (403, "forbidden", barq.Forbidden),
        (403, "read_only", barq.ReadOnly),
        (404, "not_found", barq.NotFound),
        (405, "method_not_allowed", barq.MethodNotAllowed),
        (409, "conflict", barq.Conflict),
        (413, "payload_too_large", barq.PayloadTooLarge),
        (503, "unavailable", barq.Unavailable),
        (503, "closed", barq.Closed),
        (503, "timeout", barq.Timeout),
        (500, "data_corruption", barq.DataCorruption),
        (500, "internal", barq.InternalError),
        (502, "bad_gateway", barq.BarqError),
        (418, None, barq.BarqError),
    ],
)
def test_every_code_maps_to_its_exception(status: int, code: str, cls: type) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if code is None:
            return httpx.Response(status, text="I'm a teapot")
        return httpx.Response(status, json={"error": {"code": code, "message": "the reason"}})

    c = barq.Client("http://barq.test")
    c._http = httpx.Client(base_url=c.url, transport=httpx.MockTransport(answer))
    with pytest.raises(barq.BarqError) as e:
        c.list_collections()
    assert type(e.value) is cls
    assert e.value.status == status and e.value.code == code
    assert e.value.message == ("the reason" if code else "I'm a teapot")
    assert issubclass(cls, barq.BarqError)


def test_a_failed_operation_raises_its_error() -> None:
    op = barq.Operation._parse(
        {
            "id": "op-3",
            "kind": "offload",
            "state": "failed",
            "bytes_done": 0,
            "bytes_total": 10,
            "started_at_ms": 1,
            "error": {"code": "unavailable", "message": "cold store down"},
        }
    )
    with pytest.raises(barq.Unavailable) as e:
        _api.operation_outcome(op, barq.MoveResult._parse)
    assert (e.value.status, e.value.code, e.value.message) == (
        503,
        "unavailable",
        "cold store down",
    )


def test_retries_only_what_is_safe() -> None:
    calls: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) % 2 == 1:
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return httpx.Response(200, json={"collections": []})

    c = barq.Client("http://barq.test", retries=2)
    c._http = httpx.Client(base_url=c.url, transport=httpx.MockTransport(flaky))
    assert c.list_collections() == []  # a GET: retried
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(barq.TransportError):
        c.create_collection("x", 3, "cosine")  # a POST that may have been applied: not retried
    assert len(calls) == 1

    def refused(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    calls.clear()
    c._http = httpx.Client(base_url=c.url, transport=httpx.MockTransport(refused))
    with pytest.raises(barq.TransportError):
        c.create_collection("x", 3, "cosine")  # never sent: retried even so
    assert len(calls) == 3
