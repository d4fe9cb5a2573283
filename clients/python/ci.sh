#!/usr/bin/env bash
# CI of the Python client: a virtual environment with the package and its pinned test tools,
# then ruff (format and lint), mypy --strict and pytest against a real `barq serve`.
#
#   BARQ_BIN=target/debug/barq bash clients/python/ci.sh [VENV_DIR]
#
# The caller builds the binary (`cargo build -p barq-cli`); BARQ_BIN defaults to the
# repository's target/debug/barq. Under CI=true a missing binary fails the tests.
# PYTHON picks the interpreter (default python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$here/.venv-ci}"
python="${PYTHON:-python3}"
export BARQ_BIN="${BARQ_BIN:-$repo/target/debug/barq}"
case "$BARQ_BIN" in /*) ;; *) BARQ_BIN="$repo/$BARQ_BIN" ;; esac

echo "== python client: $("$python" --version), barq binary $BARQ_BIN"
if [[ "${CI:-}" == "true" && ! -x "$BARQ_BIN" ]]; then
  echo "error: no barq binary at $BARQ_BIN (build it with: cargo build -p barq-cli)" >&2
  exit 1
fi

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$here[test]"

cd "$here"
echo "== ruff format --check"
"$venv/bin/ruff" format --check .
echo "== ruff check"
"$venv/bin/ruff" check .
echo "== mypy --strict"
"$venv/bin/mypy" --strict
echo "== pytest"
# Tests run from the source tree but import the installed package.
"$venv/bin/python" -m pytest -p no:cacheprovider -ra tests
