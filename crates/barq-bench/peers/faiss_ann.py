#!/usr/bin/env python3
"""The in-process peer of `barq-bench ann`: faiss IVF-RaBitQ with an exact f32 re-rank
(IndexRefineFlat) and faiss HNSW, on the same vectors, one query at a time on one thread.

    pip install faiss-cpu numpy
    barq-bench ann --rows 1000000 --dump /tmp/gauss-1m.f32     # or a scripts/embeddings.py file
    python3 crates/barq-bench/peers/faiss_ann.py /tmp/gauss-1m.f32 --queries 200 --metric l2

The file holds the data rows and then --queries query rows (the format of scripts/embeddings.py).
Prints one JSON object per setting on stdout: recall@10 against exact search, p50 and p99
latency, build time.
"""
import argparse
import json
import sys
import time

import faiss
import numpy as np


def load(path, queries):
    with open(path, "rb") as f:
        rows, dim = np.frombuffer(f.read(8), dtype="<u4")
        x = np.fromfile(f, dtype="<f4").reshape(int(rows), int(dim))
    return np.ascontiguousarray(x[:-queries]), np.ascontiguousarray(x[-queries:])


def timed(index, qs, k):
    lat, out = [], []
    for q in qs:
        t = time.perf_counter()
        _, ids = index.search(q[None], k)
        lat.append((time.perf_counter() - t) * 1000)
        out.append(ids[0])
    lat.sort()
    return np.array(out), lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--metric", choices=["l2", "cosine", "dot"], default="l2")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--lists", type=int, default=0, help="IVF lists (default rows / 1000)")
    ap.add_argument("--rerank", type=int, default=10, help="re-rank k_factor")
    ap.add_argument("--bits", type=int, default=1, help="RaBitQ bits per coordinate (nb_bits)")
    ap.add_argument("--hnsw", action="store_true", help="also HNSW32 (efSearch 16..128)")
    args = ap.parse_args()
    data, qs = load(args.file, args.queries)
    if args.metric == "cosine":
        faiss.normalize_L2(data)
        faiss.normalize_L2(qs)
    mt = faiss.METRIC_L2 if args.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    n, dim = data.shape
    k = args.k
    flat = faiss.IndexFlat(dim, mt)
    flat.add(data)
    _, truth = flat.search(qs, k)

    def recall(got):
        return float(np.mean([len(set(g) & set(t)) / k for g, t in zip(got, truth)]))

    def emit(v):
        v.update(peer="faiss " + faiss.__version__, rows=n, dim=dim, metric=args.metric, k=k)
        print(json.dumps(v), flush=True)
        print(v, file=sys.stderr)

    lists = args.lists or max(1, n // 1000)
    faiss.omp_set_num_threads(2)
    t = time.time()
    coarse = faiss.IndexFlat(dim, mt)
    ivf = faiss.IndexIVFRaBitQ(coarse, dim, lists, mt, True, args.bits)
    index = faiss.IndexRefineFlat(ivf)
    index.k_factor = args.rerank
    index.train(data)
    index.add(data)
    build_s = time.time() - t
    faiss.omp_set_num_threads(1)
    for nprobe in [1, 2, 4, 8, 16, 32, 64, 128]:
        if nprobe > lists:
            break
        ivf.nprobe = nprobe
        got, p50, p99 = timed(index, qs, k)
        emit({"index": f"IVF{lists},RaBitQ{args.bits}+refine{args.rerank}", "nprobe": nprobe, "recall": recall(got),
              "p50_ms": p50, "p99_ms": p99, "build_s_2_threads": build_s})
    if args.hnsw:
        faiss.omp_set_num_threads(2)
        t = time.time()
        h = faiss.IndexHNSWFlat(dim, 32, mt)
        h.add(data)
        build_s = time.time() - t
        faiss.omp_set_num_threads(1)
        for ef in [16, 32, 64, 128]:
            h.hnsw.efSearch = ef
            got, p50, p99 = timed(h, qs, k)
            emit({"index": "HNSW32", "efSearch": ef, "recall": recall(got), "p50_ms": p50, "p99_ms": p99,
                  "build_s_2_threads": build_s})


if __name__ == "__main__":
    main()
