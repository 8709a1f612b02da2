#!/usr/bin/env bash
# srlm benchmark harness: builds the bench targets (Release) and runs every bench/<name>.sh
# in turn (or the ones named), each printing its tables and writing JSON under BUILD/bench.
# Exit status is non-zero when any benchmark fails or finds a wrong result.
#   bench/run.sh                 all benchmarks
#   bench/run.sh tokenizer model only those
#   env BUILD (default: build)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in "$SRC"/bench/*.sh; do
    n=$(basename "$f" .sh)
    # gpu_check runs on a lent GPU machine; methods (the methods comparison) takes hours: by name only
    case "$n" in run | gpu_check | methods) ;; *) names+=("$n") ;; esac
  done
fi
status=0
for n in "${names[@]}"; do
  [ -f "$SRC/bench/$n.sh" ] || { echo "bench/run.sh: no bench/$n.sh" >&2; status=2; continue; }
  echo "######## $n"
  bash "$SRC/bench/$n.sh" "$BUILD" || { echo "######## $n FAILED" >&2; status=1; }
  echo
done
exit $status
