#!/usr/bin/env bash
# Backend ops: times each op of the CPU backend (and the CUDA one when built and a GPU
# is present) on a table of shapes, checking results against the CPU op first.
# usage: bench/backend.sh [BUILD_DIR]    Results: BUILD_DIR/bench/backend_<name>.json
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
BENCH=$BUILD/bench/bench_backend
[ -x "$BENCH" ] || { echo "backend.sh: $BENCH not built" >&2; exit 2; }
mkdir -p "$BUILD/bench"
"$BENCH" --backend cpu --json "$BUILD/bench/backend_cpu.json"
if "$BENCH" --help 2>&1 | grep -q cuda && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$BENCH" --backend cuda --json "$BUILD/bench/backend_cuda.json"
fi
