#!/usr/bin/env bash
# Backend ops: bench_backend times every op of the backend op list on a table of model-like
# shapes, each op checked against the CPU op and rerun bit-identical first: the CPU backend
# at the small shapes in fp32 and bf16, and, when this build has the CUDA backend and a GPU
# is present, the CUDA backend at the full shapes in bf16 and fp32.
# usage: bench/backend.sh [BUILD_DIR]    Results: BUILD_DIR/bench/backend_<backend>_<dtype>.json
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
BENCH=$BUILD/bench/bench_backend
[ -x "$BENCH" ] || { echo "backend.sh: $BENCH not built" >&2; exit 2; }
mkdir -p "$BUILD/bench"
for dt in fp32 bf16; do
  "$BENCH" --backend cpu --dtype $dt --size small --json "$BUILD/bench/backend_cpu_$dt.json"
done
if "$BENCH" --list | grep -qw cuda && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  for dt in bf16 fp32; do
    "$BENCH" --backend cuda --dtype $dt --size full --json "$BUILD/bench/backend_cuda_$dt.json"
  done
fi
