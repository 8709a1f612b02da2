#!/usr/bin/env bash
# End-to-end benchmark (issue 10): the learner's DPO step and the generator's sampling at
# real model shapes with random weights, srlm (bench_e2e) and PyTorch + transformers
# (bench/e2e_torch.py) on the same card in the same run, one table (nccl-tests style) and
# one JSON file.
#
# usage: bench/e2e.sh [BUILD_DIR] [PRESET]
#   PRESET gpu (default with nvidia-smi): bf16 on cuda, the issue's work:
#            DPO step, 64 pairs x (512 prompt + 512 response), at qwen3-0.6b, qwen3-1.7b, llama3.2-3b;
#            generation, 512 prompts x 8 samples x 512 new tokens, at qwen3-0.6b and qwen3-1.7b;
#          gpu-quick: the same shapes with 4 layers and a tenth of the work (a first look in
#            a few minutes);
#          cpu (default without a GPU): fp32 on the CPU, the tiny shape (checks the harness).
#   env PYTHON (default python3, needs torch + transformers), THREADS (CPU, default 2),
#   OUT (default BUILD_DIR/bench), PEAK_TFLOPS (default 989: H100/H200 dense bf16).
# Results: OUT/e2e.json (every row of both sides) and the table on stdout: srlm/PyTorch
# ratio of tokens/s per row, MFU for the DPO step, fraction of the bandwidth bound for
# generation (srlm's; see bench_e2e.c for both formulas).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
PRESET=${2:-$(command -v nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)}
PY=${PYTHON:-python3}
OUT=${OUT:-$BUILD/bench}
PEAK=${PEAK_TFLOPS:-989}
THREADS=${THREADS:-2}
BENCH=$BUILD/bench/bench_e2e
[ -x "$BENCH" ] || { echo "e2e.sh: $BENCH not built (cmake --build $BUILD --target bench_e2e)" >&2; exit 2; }
mkdir -p "$OUT"
have_torch=1
"$PY" -c "import torch, transformers" 2>/dev/null || { have_torch=0; echo "# e2e.sh: no torch/transformers in $PY: srlm side only" >&2; }

case "$PRESET" in
  gpu)
    side=(--backend cuda --dtype bf16); tside=(--device cuda --dtype bf16)
    dpo="--pairs 64 --micro 8 --prompt-len 512 --response-len 512 --steps 3 --warmup 1"
    gen="--gen-prompts 512 --samples 8 --prompt-len 128 --new-tokens 512 --gen-batch 512"
    runs=("qwen3-0.6b dpo" "qwen3-1.7b dpo" "llama3.2-3b dpo" "qwen3-0.6b gen" "qwen3-1.7b gen")
    layers="" ;;
  gpu-quick)
    side=(--backend cuda --dtype bf16); tside=(--device cuda --dtype bf16)
    dpo="--pairs 16 --micro 8 --prompt-len 512 --response-len 512 --steps 2 --warmup 1"
    gen="--gen-prompts 64 --samples 8 --prompt-len 128 --new-tokens 128 --gen-batch 512"
    runs=("qwen3-0.6b dpo" "qwen3-1.7b dpo" "qwen3-0.6b gen")
    layers="--layers 4" ;;
  cpu)
    export OMP_NUM_THREADS=$THREADS
    side=(--backend cpu --dtype fp32); tside=(--device cpu --dtype fp32 --threads "$THREADS")
    dpo="--pairs 8 --micro 4 --prompt-len 32 --response-len 32 --steps 3 --warmup 1"
    gen="--gen-prompts 8 --samples 2 --prompt-len 32 --new-tokens 16 --gen-batch 16"
    runs=("tiny dpo" "tiny gen")
    layers="" ;;
  *) echo "e2e.sh: unknown preset $PRESET (gpu, gpu-quick, cpu)" >&2; exit 2 ;;
esac

status=0
i=0
for r in "${runs[@]}"; do
  set -- $r
  shape=$1 work=$2
  args=$([ "$work" = dpo ] && echo "$dpo" || echo "$gen")
  i=$((i + 1))
  "$BENCH" "${side[@]}" --shape "$shape" --work "$work" $args $layers --peak-tflops "$PEAK" \
    --json "$OUT/e2e_${i}_srlm.json" >"$OUT/e2e_${i}_srlm.txt" 2>&1 || { status=1; tail -3 "$OUT/e2e_${i}_srlm.txt" >&2; }
  if [ $have_torch -eq 1 ]; then
    "$PY" "$SRC/bench/e2e_torch.py" "${tside[@]}" --shape "$shape" --work "$work" $args $layers \
      --json "$OUT/e2e_${i}_torch.json" >"$OUT/e2e_${i}_torch.txt" 2>&1 || { status=1; tail -3 "$OUT/e2e_${i}_torch.txt" >&2; }
  fi
done

"$PY" - "$OUT" "$i" "$PRESET" <<'PY'
import json, os, sys
out, n, preset = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = []
print("# e2e (%s): srlm vs PyTorch, the same shapes and work on the same card" % preset)
print("# %-12s %-3s %-9s %12s %14s %14s %8s %8s %9s" % ("shape", "L", "work", "tokens", "srlm tok/s", "torch tok/s",
                                                      "ratio", "MFU", "BW bound"))
for i in range(1, n + 1):
    def load(side):
        p = os.path.join(out, "e2e_%d_%s.json" % (i, side))
        return json.load(open(p)) if os.path.exists(p) else None
    s, t = load("srlm"), load("torch")
    if not s:
        print("  (run %d: srlm failed, see e2e_%d_srlm.txt)" % (i, i)); continue
    for r in s["results"]:
        tr = next((x for x in (t or {}).get("results", []) if x["work"] == r["work"]), None)
        ratio = r["tokens_per_s"] / tr["tokens_per_s"] if tr else float("nan")
        print("  %-12s %-3d %-9s %12d %14.1f %14s %7.2fx %7s %9s" % (
            s["shape"], s["layers"], r["work"], r["tokens"], r["tokens_per_s"],
            "%.1f" % tr["tokens_per_s"] if tr else "-", ratio,
            "%.1f%%" % (100 * r["mfu"]) if "mfu" in r else "-",
            "%.1f%%" % (100 * r["bandwidth_bound_fraction"]) if "bandwidth_bound_fraction" in r else "-"))
        rows.append({"shape": s["shape"], "layers": s["layers"], "params": s["params"], "work": r["work"], "srlm": r,
                     "torch": tr, "ratio": ratio if tr else None})
json.dump({"preset": preset, "rows": rows}, open(os.path.join(out, "e2e.json"), "w"), indent=1)
PY
exit $status
