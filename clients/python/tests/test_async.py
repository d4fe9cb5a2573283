"""`barq.AsyncClient`: the same methods, awaited."""

from __future__ import annotations

import asyncio
from typing import Callable

import numpy as np
import pytest

import barq

from conftest import ADMIN_KEY, API_KEY, Server


async def test_async_client(server: Server, new_name: Callable[[], str]) -> None:
    name = new_name()
    async with barq.AsyncClient(server.url, api_key=API_KEY, admin_key=ADMIN_KEY) as c:
        assert await c.health() and await c.ready()
        assert await c.create_collection(name, 8, "cosine") == barq.Collection(name, 8, "cosine")
        assert name in [x.name for x in await c.list_collections()]
        vectors = np.random.default_rng(5).standard_normal((300, 8), dtype=np.float32)
        ids = [f"a{i}" for i in range(300)]
        r = await c.upsert(name, ids, vectors, [{"i": i} for i in range(300)], batch_size=100)
        assert (r.upserted, r.batches) == (300, 3)
        assert (await c.get_collection(name)).documents == 300
        doc = await c.get(name, "a7", numpy=True)
        assert doc.vector.tobytes() == vectors[7].tobytes() and doc.payload == {"i": 7}
        assert (await c.get(name, "a7")).vector == vectors[7].tolist()

        # Concurrent searches over one client.
        hits = await asyncio.gather(*(c.search(name, vectors[i], k=1) for i in range(20)))
        assert [h[0].id for h in hits] == [f"a{i}" for i in range(20)]
        top = (await c.search(name, vectors[3], k=2, with_payload=True))[0]
        assert top.payload == {"i": 3}

        assert (await c.delete(name, ["a0", "zz"])) == barq.DeleteResult(name, ["a0"], ["zz"])
        with pytest.raises(barq.NotFound):
            await c.get(name, "a0")

        (seg,) = await c.flush(name)
        assert [s.id for s in await c.segments(name)] == [seg.id]
        ops: list[barq.Operation] = []
        moved = await c.offload(name, progress=ops.append)
        assert moved.moves[0].to == "cold" and ops[-1].state == "succeeded"
        assert (await c.search(name, vectors[9], k=1))[0].id == "a9"  # search after offload
        op = await c.hydrate(name, wait=False)
        assert (await c.wait_operation(op, timeout=60)).state == "succeeded"
        assert (await c.compact(name)).output is not None
        assert (await c.pin(name)).pinned and not (await c.unpin(name)).pinned
        assert (await c.set_overrides(name, move_to_cold_after="1d")).move_to_cold_after == "1day"
        assert (await c.get_overrides(name)).move_to_cold_after == "1day"
        assert any(x.name == name for x in (await c.tiering_status()).collections)
        assert (await c.maintenance()).moves_failed == []
        assert (await c.operations())[0].kind == "maintenance"
        assert any(x.name == name for x in (await c.stats()).collections)
        assert "barq_" in await c.metrics()
        assert "paths" in await c.openapi()
        await c.drop_collection(name)
        with pytest.raises(barq.NotFound):
            await c.get_collection(name)

    async with barq.AsyncClient(server.url, api_key=API_KEY) as data:
        with pytest.raises(barq.Forbidden):
            await data.drop_collection(name)
    async with barq.AsyncClient(server.url) as anon:
        with pytest.raises(barq.Unauthorized):
            await anon.list_collections()
