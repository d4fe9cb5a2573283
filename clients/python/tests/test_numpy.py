"""Numpy in and out: byte-exact round trips, the pure-Python path, a 100k-vector upsert."""

from __future__ import annotations

import base64
import struct
import time
from typing import Callable

import numpy as np
import pytest

import barq
from barq import _vectors


def test_float32_round_trip_is_byte_exact(client: barq.Client, new_name: Callable[[], str]) -> None:
    name = new_name()
    client.create_collection(name, 64, "l2")
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((50, 64)).astype(np.float32)
    # Values with no short decimal form, and the extremes of float32.
    vectors[0, :4] = [np.float32(1) / 3, np.finfo(np.float32).max, np.finfo(np.float32).tiny, -0.0]
    vectors[1, :2] = [np.float32(1e-45), np.float32(-3.4e38)]  # a subnormal
    ids = [f"v{i}" for i in range(50)]
    client.upsert(name, ids, vectors)
    for i in (0, 1, 2, 49):
        doc = client.get(name, ids[i], numpy=True)
        assert isinstance(doc.vector, np.ndarray) and doc.vector.dtype == np.float32
        assert doc.vector.tobytes() == vectors[i].tobytes()
    # A float64 array is sent as float32 (rounded once, to the nearest float32).
    as64 = rng.standard_normal((3, 64))
    client.upsert(name, ["d0", "d1", "d2"], as64)
    got = client.get(name, "d1", numpy=True).vector
    assert got.tobytes() == as64[1].astype(np.float32).tobytes()
    # A search by a stored vector finds it first, at distance 0.
    hit = client.search(name, vectors[5], k=1)[0]
    assert (hit.id, hit.score) == ("v5", 0.0)
    client.drop_collection(name)


def test_other_inputs(client: barq.Client, collection: str) -> None:
    # Integers, a Fortran-ordered array, a non-contiguous slice, a list of arrays.
    client.upsert(collection, ["i"], np.array([[1, 2, 3]], dtype=np.int64))
    assert client.get(collection, "i").vector == [1.0, 2.0, 3.0]
    f = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    client.upsert(collection, ["f0", "f1"], f)
    assert client.get(collection, "f1").vector == [3.0, 4.0, 5.0]
    strided = np.arange(12, dtype=np.float32).reshape(2, 6)[:, ::2]
    client.upsert(collection, ["s0", "s1"], strided)
    assert client.get(collection, "s1").vector == [6.0, 8.0, 10.0]
    client.upsert(collection, ["l"], [np.array([0.5, 0.25, 0.125])])
    assert client.get(collection, "l", numpy=True).vector.tolist() == [0.5, 0.25, 0.125]


def test_without_numpy(
    client: barq.Client, collection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_vectors, "_np", None)
    client.upsert(collection, ["a", "b"], [[1, 0, 0], (0.1, 0.2, 0.3)])
    assert client.get(collection, "b").vector == [
        float(np.float32(0.1)),
        float(np.float32(0.2)),
        float(np.float32(0.3)),
    ]
    assert client.search(collection, [0.1, 0.2, 0.3], k=1)[0].id == "b"
    with pytest.raises(barq.InvalidArgument, match="row 1"):
        client.upsert(collection, ["c", "d"], [[1, 0, 0], [1, 0]])
    with pytest.raises(barq.InvalidArgument, match="component 2 is inf"):
        client.upsert(collection, ["c", "d"], [[1, 0, 0], [1, 0, float("inf")]])
    with pytest.raises(barq.InvalidArgument, match="row 0"):
        client.upsert(collection, ["c"], [[1, 0, 1e39]])
    with pytest.raises(ImportError, match="numpy"):
        client.get(collection, "a", numpy=True)


def test_wire_format() -> None:
    m = _vectors.matrix([[1.0]], ["a"])
    assert m.row_b64(0) == b"AACAPw=="  # docs/api.md's example
    assert _vectors.vector_b64([1, 0, 0]) == "AACAPwAAAAAAAAAA"
    v = np.array([0.1, -2.5, 3e-20], dtype=np.float32)
    assert base64.b64decode(_vectors.vector_b64(v)) == struct.pack("<3f", *v.tolist())


def test_100k_vectors(client: barq.Client, new_name: Callable[[], str]) -> None:
    name = new_name()
    client.create_collection(name, 128, "cosine")
    n = 100_000
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((n, 128), dtype=np.float32)
    ids = [f"doc-{i}" for i in range(n)]
    payloads = [{"i": i} if i % 10 == 0 else None for i in range(n)]
    seen: list[int] = []
    t = time.monotonic()
    r = client.upsert(name, ids, vectors, payloads, progress=lambda d, _: seen.append(d))
    elapsed = time.monotonic() - t
    assert r.upserted == n
    assert seen[-1] == n
    print(f"100k x 128 upserted in {elapsed:.2f} s, {r.batches} requests")
    assert client.get_collection(name).documents == n
    for i in (0, 12345, n - 1):
        doc = client.get(name, ids[i], numpy=True)
        assert doc.vector.tobytes() == vectors[i].tobytes()
        assert doc.payload == payloads[i]
    hit = client.search(name, vectors[777], k=1, with_payload=True)[0]
    assert hit.id == "doc-777" and hit.score == pytest.approx(1.0, abs=1e-5)
    assert hit.payload is None
    client.drop_collection(name)
