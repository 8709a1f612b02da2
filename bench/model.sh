#!/usr/bin/env bash
# Model speed: srlm (bench_model) against PyTorch + transformers on the CPU
# (bench/model_torch.py), the same llama-style shapes, batch and thread count: training
# step (forward + backward) tokens/s, batched decode tokens/s with a KV cache, prefill,
# peak RSS; prints the srlm/PyTorch ratios. bench_model exits 1 (and so does this) when
# its greedy tokens disagree with its full forward or the loss is off.
#
# usage: bench/model.sh [BUILD_DIR] [THREADS] [SIZES]
#   BUILD_DIR default build; THREADS default 2; SIZES default "10M 100M"
#   env PYTHON (default python3; needs torch and transformers, e.g. the venv that
#   tests/fixtures/make_hf_fixtures.py makes: PYTHON=/tmp/srlm-fixtures-venv/bin/python),
#   STEPS (training steps timed, default 3), OUT (default BUILD_DIR/bench)
# Results: OUT/model_<size>_{srlm,torch}.json and the table on stdout. Without torch only
# the srlm side runs (and says so).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
THREADS=${2:-2}
SIZES=${3:-"10M 100M"}
PY=${PYTHON:-python3}
STEPS=${STEPS:-3}
OUT=${OUT:-$BUILD/bench}
BENCH=$BUILD/bench/bench_model
[ -x "$BENCH" ] || { echo "model.sh: $BENCH not built (cmake --build $BUILD --target bench_model)" >&2; exit 2; }
mkdir -p "$OUT"
have_torch=1
"$PY" -c "import torch, transformers" 2>/dev/null || {
  have_torch=0
  echo "# model.sh: $PY has no torch/transformers: srlm side only (set PYTHON to a Python that has them)" >&2
}

shape() { # size -> the common shape options
  case "$1" in
    10M) echo "--hidden 256 --layers 6 --heads 8 --kv-heads 4 --ff 768 --vocab 10000" ;;
    100M) echo "--hidden 768 --layers 12 --heads 12 --kv-heads 4 --ff 2048 --vocab 16000" ;;
    *) echo "model.sh: unknown size $1 (10M, 100M)" >&2; exit 2 ;;
  esac
}

status=0
for size in $SIZES; do
  args="$(shape "$size") --seq 256 --batch 4 --threads $THREADS --steps $STEPS --warmup 1 --decode-batch 8 --decode-tokens 32 --prompt-len 16"
  echo "######## $size, $THREADS threads"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=$THREADS "$BENCH" $args --json "$OUT/model_${size}_srlm.json" || status=1
  if [ "$have_torch" = 1 ]; then
    # shellcheck disable=SC2086
    "$PY" "$SRC/bench/model_torch.py" $args >"$OUT/model_${size}_torch.json" || status=1
    "$PY" - "$OUT/model_${size}_srlm.json" "$OUT/model_${size}_torch.json" "$size" "$THREADS" <<'EOF'
import json, sys
s, t = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print("| %s, %s threads | srlm | PyTorch %s | srlm / PyTorch |" % (sys.argv[3], sys.argv[4], t.get("torch", "")))
print("|---|---|---|---|")
for key, what, better in [("fwd_bwd_tokens_per_s", "train fwd+bwd tokens/s", "higher"),
                          ("prefill_tokens_per_s", "prefill tokens/s", "higher"),
                          ("decode_tokens_per_s", "decode tokens/s (batch %d)" % s["decode_batch"], "higher"),
                          ("peak_rss_mb", "peak RSS MB", "lower")]:
    print("| %s | %.1f | %.1f | %.2fx |" % (what, s[key], t[key], s[key] / t[key]))
EOF
  fi
  echo
done
exit $status
