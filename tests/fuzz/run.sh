#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang + ASan + UBSan in a build
# folder of their own and runs each for a bounded time, starting from a scratch copy of
# its seed corpus (tests/fuzz/corpus_<name>/, left untouched) and using
# tests/fuzz/<name>.dict when there is one.
#
#   usage: tests/fuzz/run.sh BUILD_DIR SECONDS_PER_TARGET
#
# Prints per target: executions, executions per second, coverage, corpus size, result.
# A crash, sanitizer report, leak, timeout (> 10 s on one input) or out-of-memory
# (> 2048 MB) fails the target; its reproducer is in BUILD_DIR/fuzz-artifacts/<name>/
# and can be replayed with: BUILD_DIR/tests/fuzz/fuzz_<name> <reproducer file>.
# Exit status: 0 when every target ran clean, 1 when one failed, 2 on usage or build errors.
set -uo pipefail

die() {
  echo "fuzz/run.sh: error: $*" >&2
  exit 2
}

[[ $# -eq 2 ]] || die "usage: tests/fuzz/run.sh BUILD_DIR SECONDS_PER_TARGET"
[[ $2 =~ ^[1-9][0-9]*$ ]] || die "SECONDS_PER_TARGET must be a positive integer, got '$2'"
secs=$2
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || die "cannot find the source folder"
mkdir -p "$1" || die "cannot create build folder $1"
build=$(cd "$1" && pwd)
command -v clang >/dev/null || die "clang not found (libFuzzer needs it): apt-get install clang"
cmake_bin=${CMAKE_COMMAND:-cmake}

# ---- configure and build (logs kept in the build folder) ----
log_cfg=$build/fuzz-configure.log
log_build=$build/fuzz-build.log
echo "fuzz: configuring $build (clang, ASan+UBSan, CPU only)"
if ! CC=clang "$cmake_bin" -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSRLM_FUZZ=ON -DSRLM_SANITIZE=ON -DSRLM_CUDA=OFF -DSRLM_BUILD_TESTS=OFF >"$log_cfg" 2>&1; then
  tail -n 30 "$log_cfg" >&2
  die "configure failed (full log: $log_cfg)"
fi
echo "fuzz: building the fuzz targets"
if ! "$cmake_bin" --build "$build" --target srlm_fuzz -j2 >"$log_build" 2>&1; then
  grep -E "error|Error" "$log_build" | head -n 40 >&2
  die "build failed (full log: $log_build)"
fi

shopt -s nullglob
sources=("$src"/tests/fuzz/fuzz_*.c)
((${#sources[@]} > 0)) || die "no fuzz targets: tests/fuzz/fuzz_*.c matched nothing"

# Leak detection stays on (libFuzzer reports leaks found while fuzzing as failures).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=0
declare -a rows
for s in "${sources[@]}"; do
  target=$(basename "$s" .c)
  name=${target#fuzz_}
  exe=$build/tests/fuzz/$target
  [[ -x $exe ]] || die "$target was not built ($exe missing; see $log_build)"
  corpus=$build/fuzz-corpus/$name
  artifacts=$build/fuzz-artifacts/$name
  log=$build/fuzz-logs/$name.log
  rm -rf "$corpus" "$artifacts"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  seeds=$src/tests/fuzz/corpus_$name
  nseeds=0
  if [[ -d $seeds ]]; then
    cp -R "$seeds"/. "$corpus"/
    nseeds=$(find "$seeds" -type f | wc -l)
  else
    echo "fuzz: warning: $target has no seed corpus ($seeds); starting from nothing" >&2
  fi
  extra=()
  [[ -f $src/tests/fuzz/$name.dict ]] && extra+=("-dict=$src/tests/fuzz/$name.dict")
  echo "fuzz: running $target for ${secs}s ($nseeds seeds)"
  "$exe" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "${extra[@]}" "$corpus" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
  ncorpus=$(find "$corpus" -type f | wc -l)
  result=ok
  if ((rc != 0)); then
    failed=1
    result="FAILED (exit $rc)"
    echo "---- $target failed; last lines of $log:" >&2
    tail -n 60 "$log" >&2
    for a in "$artifacts"/*; do
      echo "reproducer: $a  (replay: $exe $a)" >&2
    done
  fi
  rows+=("$(printf '%-24s %12s %10s %8s %8s  %s' "$target" "${execs:-?}" "${speed:-?}" "${cov:-?}" "$ncorpus" "$result")")
done

echo
printf '%-24s %12s %10s %8s %8s  %s\n' "# target" "executions" "exec/s" "cov" "corpus" "result"
printf '%s\n' "${rows[@]}"
if ((failed)); then
  echo "fuzz: FAILED: a target crashed, leaked, timed out or ran out of memory (logs in $build/fuzz-logs)"
  exit 1
fi
echo "fuzz: all ${#sources[@]} targets ran ${secs}s each without a failure"
