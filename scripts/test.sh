#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: starts the object-storage servers the
# cloud tests need (scripts/test-services.sh), makes the real text embeddings the recall tests
# use (scripts/test-embeddings.sh), runs `cargo test --workspace`, then the Python
# client's checks and tests against the `barq` binary just built (clients/python/ci.sh), and
# stops the servers whatever happened. Extra arguments go to `cargo test` (`--locked` to `cargo build` too).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-services.sh start
trap 'bash scripts/test-services.sh stop' EXIT
eval "$(bash scripts/test-services.sh env)"
# Real text embeddings for the recall tests, made offline (scripts/test-embeddings.sh).
BARQ_TEST_EMBEDDINGS="$(bash scripts/test-embeddings.sh)"
export BARQ_TEST_EMBEDDINGS

cargo test --workspace "$@"

# The debug `barq` binary (cargo test built it for the CLI's tests; this makes sure).
locked=()
for a in "$@"; do [[ "$a" == --locked ]] && locked=(--locked); done
cargo build -p barq-cli "${locked[@]}"
BARQ_BIN="$PWD/target/debug/barq" bash clients/python/ci.sh
