"""Benchmark of the Python client against raw HTTP, on a `barq serve` it starts.

- upsert: N x D random float32 vectors through `Client.upsert` (base64 vectors, batches cut
  to the body limit, or --batch-size) against raw `httpx` POSTs of JSON-number vectors in
  batches of --raw-batch-size; both times include building the request bodies.
- search: the latency of `Client.search` (k=10) against the same query as a raw `httpx` POST
  with a JSON vector and `json.loads` of the answer, over a small collection so that the
  server's own time does not hide the difference; runs alternate, medians are compared.

Prints one JSON object per result on stdout and a summary on stderr.

    python bench/bench.py --bin target/release/barq
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

import barq
from barq import _api

KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(binary: str, data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BARQ_")}
    env["BARQ_API_KEY"] = KEY
    proc = subprocess.Popen(
        [binary, "--data-dir", str(data), "serve", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    sys.exit("barq serve did not start")


def raw_upsert(
    http: httpx.Client, name: str, ids: list[str], vectors: np.ndarray, batch: int
) -> None:
    for s in range(0, len(ids), batch):
        docs = [
            {"id": i, "vector": v}
            for i, v in zip(ids[s : s + batch], vectors[s : s + batch].tolist())
        ]
        body = json.dumps({"documents": docs}).encode()
        r = http.post(f"/v1/collections/{name}/documents", content=body)
        r.raise_for_status()


def emit(result: dict[str, object]) -> None:
    print(json.dumps(result), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default_bin = os.environ.get("BARQ_BIN") or str(
        Path(__file__).resolve().parents[3] / "target" / "release" / "barq"
    )
    ap.add_argument("--bin", default=default_bin, help="the barq binary (default: %(default)s)")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3, help="upsert runs of each kind")
    ap.add_argument("--batch-size", type=int, default=None, help="client batch (default: auto)")
    ap.add_argument("--raw-batch-size", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--search-rows", type=int, default=1000)
    args = ap.parse_args()

    rng = np.random.default_rng(42)
    vectors = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    ids = [f"doc-{i}" for i in range(args.rows)]

    with tempfile.TemporaryDirectory(prefix="barq-bench-") as tmp:
        proc, url = start(args.bin, Path(tmp) / "data")
        try:
            client = barq.Client(url, api_key=KEY)
            http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"})
            client.health()

            # Upserts, alternating, each into a fresh collection.
            times: dict[str, list[float]] = {"client": [], "raw_json": []}
            batches = 0
            for run in range(args.repeat):
                for kind in ("raw_json", "client"):
                    name = f"up-{kind.replace('_', '-')}-{run}"
                    client.create_collection(name, args.dim, "cosine")
                    t = time.perf_counter()
                    if kind == "client":
                        batches = client.upsert(
                            name, ids, vectors, batch_size=args.batch_size
                        ).batches
                    else:
                        raw_upsert(http, name, ids, vectors, args.raw_batch_size)
                    times[kind].append(time.perf_counter() - t)
                    assert client.get_collection(name).documents == args.rows
                    client.drop_collection(name)
            rate = {k: args.rows / statistics.median(v) for k, v in times.items()}
            for kind, v in times.items():
                emit(
                    {
                        "bench": "upsert",
                        "kind": kind,
                        "rows": args.rows,
                        "dim": args.dim,
                        "batch": (args.batch_size or f"auto ({batches} requests)")
                        if kind == "client"
                        else args.raw_batch_size,
                        "seconds": [round(x, 3) for x in v],
                        "vectors_per_s": round(rate[kind]),
                    }
                )
            speedup = rate["client"] / rate["raw_json"]

            # Search latency.
            name = "search"
            client.create_collection(name, args.dim, "cosine")
            client.upsert(name, ids[: args.search_rows], vectors[: args.search_rows])
            client.flush(name)
            queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
            qlists = queries.tolist()
            path = f"/v1/collections/{name}/search"
            lat: dict[str, list[float]] = {"client": [], "raw_httpx": []}
            for q in range(min(50, args.queries)):  # warm-up
                client.search(name, queries[q])
                http.post(path, json={"vector": qlists[q], "k": 10}).json()
            for q in range(args.queries):
                t = time.perf_counter()
                hits = client.search(name, queries[q], k=10)
                lat["client"].append(time.perf_counter() - t)
                t = time.perf_counter()
                r = http.post(path, json={"vector": qlists[q], "k": 10})
                r.raise_for_status()
                raw = json.loads(r.content)["results"]
                lat["raw_httpx"].append(time.perf_counter() - t)
                assert [h.id for h in hits] == [h["id"] for h in raw]
            p50 = {k: statistics.median(v) * 1e3 for k, v in lat.items()}
            for kind, v in lat.items():
                s = sorted(v)
                emit(
                    {
                        "bench": "search",
                        "kind": kind,
                        "rows": args.search_rows,
                        "dim": args.dim,
                        "k": 10,
                        "queries": args.queries,
                        "p50_ms": round(p50[kind], 3),
                        "p99_ms": round(s[int(len(s) * 0.99)] * 1e3, 3),
                        "mean_ms": round(statistics.fmean(v) * 1e3, 3),
                    }
                )
            overhead = p50["client"] - p50["raw_httpx"]

            # The client's own work per search, without the network and the server: build
            # the request (base64 vector) and read the answer into `Hit`s, against
            # json.dumps of the JSON vector and json.loads of the answer.
            answer = http.post(path, json={"vector": qlists[0], "k": 10}).content
            cpu: dict[str, float] = {}
            t = time.perf_counter()
            for q in range(args.queries):
                req = _api.search(name, queries[q], 10, False)
                req.parse(json.loads(answer))
            cpu["client"] = (time.perf_counter() - t) / args.queries * 1e6
            t = time.perf_counter()
            for q in range(args.queries):
                json.dumps({"vector": qlists[q], "k": 10}).encode()
                json.loads(answer)
            cpu["raw_httpx"] = (time.perf_counter() - t) / args.queries * 1e6
            emit(
                {
                    "bench": "search_client_cpu",
                    "us_per_search": {k: round(v, 1) for k, v in cpu.items()},
                }
            )
            client.close()
            http.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)

    print(
        f"upsert {args.rows} x {args.dim}: client {rate['client']:,.0f} vectors/s "
        f"(median of {args.repeat}), raw JSON {rate['raw_json']:,.0f} vectors/s: "
        f"{speedup:.2f}x\n"
        f"search {args.search_rows} x {args.dim}, k=10: client p50 {p50['client']:.3f} ms, "
        f"raw httpx p50 {p50['raw_httpx']:.3f} ms: overhead {overhead:+.3f} ms per search; "
        f"client-side work {cpu['client']:.1f} us per search (raw: {cpu['raw_httpx']:.1f} us)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
