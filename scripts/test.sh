#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: starts the object-storage servers the
# cloud tests need (scripts/test-services.sh), runs `cargo test --workspace`, and stops the
# servers whatever happened. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-services.sh start
trap 'bash scripts/test-services.sh stop' EXIT
eval "$(bash scripts/test-services.sh env)"

cargo test --workspace "$@"
