#!/usr/bin/env bash
# The one prepared script a lent GPU machine runs: card facts, the CUDA backend's GPU
# test against its CPU twins, the op timings of bench_backend for the CUDA and the CPU
# backend on the same machine, and a compute-sanitizer memcheck pass over the test.
# Every step has its own time limit, so a hang in one still leaves the others' logs; a
# short summary is printed last (the tool returns only the tail of the output).
#
# usage (on the GPU machine, from the project root, with .devroot and BUILD carried):
#   bash bench/gpu_check.sh [BUILD_DIR] [OUT_DIR]     defaults: build-gpu, $OUT or ./gpu-check-out
# Build and pack first, here:
#   cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DSRLM_CUDA=ON
#   cmake --build build-gpu -j2 --target gpu_test_backend_ops bench_backend
#   bash ../shared/tools/device-pack.sh build-gpu/tests/gpu_test_backend_ops build-gpu/bench/bench_backend
# Never changes the card's settings: nvidia-smi is only queried.
set -uo pipefail
BUILD=${1:-build-gpu}
LOG=${2:-${OUT:-$PWD/gpu-check-out}}
TEST=$BUILD/tests/gpu_test_backend_ops
BENCH=$BUILD/bench/bench_backend
mkdir -p "$LOG"
[ -f .devroot/env.sh ] || { echo "gpu_check: .devroot/env.sh missing (run device-pack.sh and carry .devroot)" >&2; exit 2; }
# shellcheck disable=SC1091
source .devroot/env.sh
for b in "$TEST" "$BENCH"; do [ -x "$b" ] || { echo "gpu_check: $b not built or not carried" >&2; exit 2; }; done

status=()
step() { # step NAME LIMIT_S LOGFILE CMD...: runs CMD with a time limit, output to LOGFILE
  local name=$1 limit=$2 file=$3
  shift 3
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" >"$LOG/$file" 2>&1
  local rc=$?
  status+=("$(printf '%-22s rc=%-3d %4ds  %s' "$name" "$rc" $((SECONDS - t0)) "$file")")
  return $rc
}

# 1. the card and the software, read only
{
  date -u +"date %Y-%m-%dT%H:%M:%SZ"
  uname -r
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu,persistence_mode,compute_mode,mig.mode.current --format=csv
  nvidia-smi
  command -v nvcc >/dev/null && nvcc --version | tail -2
  echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
  # the kernels carry sm_90 machine code (not only PTX compiled at load)
  command -v cuobjdump >/dev/null && cuobjdump --list-elf "$TEST" && cuobjdump --list-ptx "$TEST"
  ldd "$TEST" "$BENCH" | grep -E 'not found|cudart|gomp'
} >"$LOG/device.txt" 2>&1
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)

# 2. the GPU test: every CUDA op against its CPU twin on random inputs
step test_backend_ops 150 test_backend_ops.log "$TEST" cuda

# 3. timings: the CUDA backend (many calls, launch gaps pipelined) and the CPU backend
#    on this machine's cores, the same shapes; each checks its results first
step bench_cuda 90 bench_cuda.txt "$BENCH" --backend cuda --iters 200 --warmup 20
step bench_cpu 90 bench_cpu.txt "$BENCH" --backend cpu --iters 10 --warmup 2

# 4. memcheck over the test (out-of-bounds and misaligned accesses, API errors)
if command -v compute-sanitizer >/dev/null; then
  step memcheck 100 memcheck.log compute-sanitizer --tool memcheck --error-exitcode 99 "$TEST" cuda
else
  status+=("memcheck               skipped: no compute-sanitizer")
fi

{
  echo "== gpu_check on ${card:-unknown card}, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '%s\n' "${status[@]}"
  echo "== test: $(tail -1 "$LOG/test_backend_ops.log")"
  grep -E 'FAIL|exceeds|differs|error' "$LOG/test_backend_ops.log" | head -20
  echo "== memcheck: $(grep -E 'ERROR SUMMARY' "$LOG/memcheck.log" 2>/dev/null | tail -1)"
  echo "== bench cuda"; cat "$LOG/bench_cuda.txt"
  echo "== bench cpu"; cat "$LOG/bench_cpu.txt"
} | tee "$LOG/summary.txt"
grep -q ' 0 failed' "$LOG/test_backend_ops.log"
