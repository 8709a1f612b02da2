#!/usr/bin/env bash
# Wall time of the self-rewarding iterations per layout of MPI ranks (issue 4): the
# quickstart's stage 2 (configs/quickstart.yaml) from a given M1, 2 iterations, one thread
# per rank, as one process and under mpirun with separate roles and colocated.
#   bench/roles.sh [BUILD|SRLM] [M1_DIR] [CORES]
# BUILD is a build folder (its srlm is used) or the srlm binary itself (default: build);
# without M1_DIR, M1 is made first as the quickstart makes it (seed data + SFT, about a
# minute on 2 cores). Results and logs go to BUILD/bench/roles (or ./roles-bench).
# Prints one line per layout (seconds, samples/s over the run) and checks the final
# weights: bit-identical across the one-learner layouts, and how far the several-learner
# layouts are (float re-association of the gradient sum). Layouts that need more ranks
# than CORES are skipped (default: nproc).
set -u
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-build}
if [ -d "$build" ]; then srlm=$(cd "$build" && pwd)/srlm; out=$(cd "$build" && pwd)/bench/roles; else
  srlm=$(cd "$(dirname "$build")" && pwd)/$(basename "$build"); out=$PWD/roles-bench; fi
m1=${2:-}
cores=${3:-$(nproc)}
cd "$root"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
mkdir -p "$out"
if [ -z "$m1" ]; then
  echo "making M1 (seed data + SFT) in $out"
  "$srlm" task sft-data --seed 1234 --instructions 2000 --judge 16000 --out "$out/sft.jsonl" >/dev/null 2>&1 &&
    OMP_NUM_THREADS=1 "$srlm" sft -c configs/quickstart-m1.yaml data.sft="$out/sft.jsonl" run.out_dir="$out" \
      >/dev/null 2>"$out/sft.err" || { echo "roles.sh: making M1 failed:"; tail -3 "$out/sft.err"; exit 1; }
  m1=$out/quickstart-m1/model
fi
base="-c configs/quickstart.yaml model.path=$m1 run.out_dir=$out run.iterations=2 roles.threads=1"
samples=$((2 * 4000 * 8))
ref=""
# name ranks [overrides...]; ranks 0 = one process without mpirun
layout() {
  local name=$1 np=$2; shift 2
  if [ "$np" -gt "$cores" ]; then echo "$name: skipped ($np ranks > $cores cores)"; return; fi
  rm -rf "${out:?}/$name"
  local t0=$(date +%s%N) rc
  if [ "$np" -eq 0 ]; then
    "$srlm" train $base run.name="$name" "$@" >"$out/$name.out" 2>"$out/$name.err"
  else
    mpirun --oversubscribe --bind-to none -np "$np" "$srlm" train $base run.name="$name" "$@" >"$out/$name.out" 2>"$out/$name.err"
  fi
  rc=$?
  local s=$(awk -v ns="$(( $(date +%s%N) - t0 ))" 'BEGIN { printf "%.1f", ns / 1e9 }')
  local w="$out/$name/iter_2/model/model.safetensors" same="-"
  if [ $rc -ne 0 ]; then
    echo "$name: FAILED (exit $rc)"; tail -3 "$out/$name.err"; return
  fi
  if [ -z "$ref" ]; then ref=$w; same="reference"; elif cmp -s "$ref" "$w"; then same="bit-identical"; else
    same=$(python3 - "$ref" "$w" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); o = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        a, e = v["data_offsets"]; o[k] = struct.unpack("<%df" % ((e - a) // 4), b[8 + n + a:8 + n + e])
    return o
a, b = load(sys.argv[1]), load(sys.argv[2])
print("max |dw| %.2g" % max(max(abs(x - y) for x, y in zip(a[k], b[k])) for k in a))
PY
)
  fi
  printf "%-8s %3s ranks %7.1f s %8.0f samples/s   weights vs one: %s\n" "$name" "$np" "$s" \
    "$(awk -v n=$samples -v s=$s 'BEGIN { print n / s }')" "$same"
}
echo "layout   ranks    wall    throughput   final weights (2 iterations, 4000 prompts x 8 samples each)"
layout one 0
layout sep3 3 roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=1
layout sep8 8 roles.colocate=false roles.learners=1 roles.generators=4 roles.judges=3
layout sep16 16 roles.colocate=false roles.learners=1 roles.generators=8 roles.judges=7
layout sepL4 16 roles.colocate=false roles.learners=4 roles.generators=7 roles.judges=5
layout col16 16 roles.colocate=true
