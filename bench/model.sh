#!/usr/bin/env bash
# Model speed on the CPU, measured in pairs: srlm (bench_model) and PyTorch + transformers
# (bench/model_torch.py) run alternately on the SAME model (bench_model --save writes it as
# a Hugging Face directory, with its token ids; PyTorch loads both), PAIRS times per size
# and thread count, in the order A B, B A, A B, ... so that drift of the machine (clock,
# other load, page cache) falls on both sides. Per pair: the srlm / PyTorch ratio of the
# training step (forward + backward) tokens/s, prefill and decode tokens/s and peak RSS;
# reported as the median of the pairwise ratios with min and max. Also srlm's decode
# weight-read bandwidth against a STREAM-style copy on the same machine and threads, and
# both sides' training-step model FLOP/s against the threads' multiply-add peak (fp32 fma;
# for DTYPE=bf16 AMX tile products at the amx ISA level, else bf16 dot products) measured
# by bench_model.
#
# Checked (exit 1 when not): both sides report the same shape and parameter count, and
# the same training loss on the same tokens (|difference| <= 1e-3 x max(1, loss) in fp32,
# 2e-2 x max(1, loss) in bf16, where each side rounds its own activations);
# bench_model's own checks (greedy tokens equal the full forward's argmax).
#
# usage: bench/model.sh [BUILD_DIR] [THREADS] [SIZES]
#   BUILD_DIR default build; THREADS a list, default "2"; SIZES default "10M 100M 0.6B"
#     10M   llama: hidden 256, 6 layers, 8/4 heads, ff 768, vocab 10000; train 4 x 256
#     100M  llama: hidden 768, 12 layers, 12/4 heads, ff 2048, vocab 16000; train 4 x 256
#     0.6B  Qwen3-0.6B's shape: hidden 1024, 28 layers, 16/8 heads x 128, ff 3072,
#           vocab 151936, tied embeddings, q/k norm; train 2 x 128 (a short sequence)
#     tiny  a 0.1M model, seconds per pair: checks the harness itself
#   env DTYPE (fp32, the default, or bf16: both sides store weights and activations in bf16;
#   PyTorch casts the model, oneDNN's bf16 kernels; srlm's AVX-512 BF16 kernel where the CPU
#   has it), PAIRS (default 5), STEPS (timed training steps per run, default 3), DECODE_BATCH
#   (default 8), DECODE_TOKENS (default 32), PYTHON (default python3; needs torch and
#   transformers), OUT (default BUILD_DIR/bench/model-<date>)
# Results: OUT/<size>_t<threads>/{pair<i>_srlm.json, pair<i>_torch.json}, OUT/summary.json,
# and the tables (markdown) on stdout and in OUT/summary.md. Without torch only the srlm
# side runs (and says so); the ratios are then absent.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
THREADS=${2:-2}
SIZES=${3:-"10M 100M 0.6B"}
PY=${PYTHON:-python3}
PAIRS=${PAIRS:-5}
DTYPE=${DTYPE:-fp32}
case "$DTYPE" in
  fp32) torch_dtype=float32 ;;
  bf16) torch_dtype=bfloat16 ;;
  *) echo "model.sh: DTYPE must be fp32 or bf16, got '$DTYPE'" >&2; exit 2 ;;
esac
STEPS=${STEPS:-3}
DECODE_BATCH=${DECODE_BATCH:-8}
DECODE_TOKENS=${DECODE_TOKENS:-32}
OUT=${OUT:-$BUILD/bench/model-$(date +%Y%m%d-%H%M%S)}
BENCH=$BUILD/bench/bench_model
[ -x "$BENCH" ] || { echo "model.sh: $BENCH not built (cmake --build $BUILD --target bench_model)" >&2; exit 2; }
case "$PAIRS" in '' | *[!0-9]* | 0) echo "model.sh: PAIRS must be a positive integer, got '$PAIRS'" >&2; exit 2 ;; esac
mkdir -p "$OUT"
have_torch=1
"$PY" -c "import torch, transformers" 2>/dev/null || {
  have_torch=0
  echo "# model.sh: $PY has no torch/transformers: srlm side only (set PYTHON to a Python that has them)" >&2
}

shape() { # size -> bench_model's shape and batch options (model_torch.py reads the shape from the saved model)
  case "$1" in
    tiny) echo "--hidden 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --vocab 500 --seq 32 --batch 2" ;;
    10M) echo "--hidden 256 --layers 6 --heads 8 --kv-heads 4 --ff 768 --vocab 10000 --seq 256 --batch 4" ;;
    100M) echo "--hidden 768 --layers 12 --heads 12 --kv-heads 4 --ff 2048 --vocab 16000 --seq 256 --batch 4" ;;
    0.6B) echo "--family qwen3 --hidden 1024 --layers 28 --heads 16 --kv-heads 8 --head-dim 128 --ff 3072 --vocab 151936 --tie --seq 128 --batch 2" ;;
    *) echo "model.sh: unknown size $1 (tiny, 10M, 100M, 0.6B)" >&2; exit 2 ;;
  esac
}
batch_args() { # size -> the options both sides take
  local s
  s=$(shape "$1")
  echo "--seq $(echo "$s" | sed 's/.*--seq \([0-9]*\).*/\1/') --batch $(echo "$s" | sed 's/.*--batch \([0-9]*\).*/\1/')" \
    "--steps $STEPS --warmup 1 --decode-batch $DECODE_BATCH --decode-tokens $DECODE_TOKENS --prompt-len 16"
}

# the machine and the software, once
{
  echo "# model.sh $(date -u +%Y-%m-%dT%H:%MZ): $PAIRS pairs per size and thread count, A/B order alternating;" \
    "weights and activations $DTYPE on both sides"
  echo "# machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs online," \
    "$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) memory, load $(cut -d' ' -f1-3 /proc/loadavg)"
  # both sides run under the same OpenMP settings, libgomp's defaults unless set here
  echo "# OpenMP: OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset (default)}, GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-unset (default)}," \
    "OMP_PROC_BIND=${OMP_PROC_BIND:-unset}; OMP_NUM_THREADS set per run to the thread count, for both"
  echo "# srlm: $("$BUILD/srlm" version 2>/dev/null | tr '\n' ';' | sed 's/;/; /g; s/  */ /g; s/; $//')"
  # (the measured binary's own commit: srlm's above may be of another build if only
  # bench_model was rebuilt)
  echo "# $("$BENCH" --version)"
  if [ "$have_torch" = 1 ]; then
    echo "# PyTorch: $("$PY" -c 'import re, torch, transformers; b = re.search(r"BLAS_INFO=([^,]*)", torch.__config__.show()); print("torch", torch.__version__, "transformers", transformers.__version__, "BLAS", b.group(1) if b else "?", "oneDNN" if torch.backends.mkldnn.is_available() else "no oneDNN")')"
  fi
} | tee "$OUT/header.txt"

status=0
for size in $SIZES; do
  sargs="$(shape "$size") --dtype $DTYPE"
  bargs=$(batch_args "$size")
  model="$OUT/model_$size"
  echo "######## $size: bench_model $sargs"
  # shellcheck disable=SC2086
  # the saved token ids hold the decode prompts too: the same decode batch and prompt length as the runs
  "$BENCH" $sargs --decode-batch "$DECODE_BATCH" --decode-tokens "$DECODE_TOKENS" --prompt-len 16 --save "$model" \
    --save-only >/dev/null || { echo "model.sh: bench_model --save failed" >&2; exit 1; }
  for t in $THREADS; do
    dir="$OUT/${size}_t$t"
    mkdir -p "$dir"
    for i in $(seq 1 "$PAIRS"); do
      for side in $( [ $((i % 2)) = 1 ] && echo "srlm torch" || echo "torch srlm"); do
        if [ "$side" = srlm ]; then
          # shellcheck disable=SC2086
          OMP_NUM_THREADS=$t "$BENCH" $sargs $bargs --threads "$t" --json "$dir/pair${i}_srlm.json" \
            >"$dir/pair${i}_srlm.log" 2>&1 || { echo "model.sh: srlm run $i failed: $(tail -3 "$dir/pair${i}_srlm.log")" >&2; status=1; }
        elif [ "$have_torch" = 1 ]; then
          # shellcheck disable=SC2086
          OMP_NUM_THREADS=$t "$PY" "$SRC/bench/model_torch.py" --model "$model" --ids "$model/bench_ids.json" $bargs \
            --dtype "$torch_dtype" --threads "$t" >"$dir/pair${i}_torch.json" 2>"$dir/pair${i}_torch.log" \
            || { echo "model.sh: torch run $i failed: $(tail -3 "$dir/pair${i}_torch.log")" >&2; status=1; }
        fi
      done
      echo "  $t threads: pair $i of $PAIRS done"
    done
  done
done

"$PY" - "$OUT" "$PAIRS" "$have_torch" "$SIZES" "$THREADS" "$DTYPE" <<'EOF' || status=1
import json, os, statistics, sys
out, pairs, have_torch = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
sizes, threads, dtype = sys.argv[4].split(), sys.argv[5].split(), sys.argv[6]
loss_tol = 1e-3 if dtype == "fp32" else 2e-2
metrics = [("fwd_bwd_tokens_per_s", "train fwd+bwd tokens/s"), ("prefill_tokens_per_s", "prefill tokens/s"),
           ("decode_tokens_per_s", "decode tokens/s"), ("peak_rss_mb", "peak RSS MB (lower is better)")]
def load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
def rng(xs, fmt):
    return (fmt + " (" + fmt + " .. " + fmt + ")") % (statistics.median(xs), min(xs), max(xs)) if xs else "-"
summary, lines, bad = {}, [open(os.path.join(out, "header.txt")).read().rstrip()], False
for size in sizes:
    for t in threads:
        d = os.path.join(out, f"{size}_t{t}")
        S = [load(os.path.join(d, f"pair{i}_srlm.json")) for i in range(1, pairs + 1)]
        T = [load(os.path.join(d, f"pair{i}_torch.json")) for i in range(1, pairs + 1)] if have_torch else [None] * pairs
        ok = [(s, x) for s, x in zip(S, T) if s and (x or not have_torch)]
        if not ok:
            lines.append(f"\n{size}, {t} threads: no complete pair"); bad = True; continue
        s0 = ok[0][0]
        sh = s0["shape"]
        lines.append(f"\n### {size} ({s0['family']}: hidden {sh['hidden']}, {sh['layers']} layers, heads {sh['heads']}/"
                     f"{sh['kv_heads']} x {s0['head_dim']}, ff {sh['ff']}, vocab {sh['vocab']}{', tied' if s0['tie'] else ''}; "
                     f"{s0['params'] / 1e6:.1f}M params; train {s0['batch']} x {s0['seq']}, decode batch "
                     f"{s0['decode_batch']}), {dtype}, {t} threads, {len(ok)} pairs")
        row = {"pairs": len(ok), "dtype": dtype, "srlm": {}, "torch": {}, "ratio": {}}
        if have_torch:
            x0 = ok[0][1]
            for s, x in ok:
                if s["params"] != x["params"] or any(s["shape"][k] != x["shape"][k] for k in s["shape"]):
                    lines.append(f"MISMATCH: shapes or parameter counts differ: srlm {s['shape']} {s['params']}, "
                                 f"torch {x['shape']} {x['params']}"); bad = True
                if abs(s["loss"] - x["loss"]) > loss_tol * max(1.0, abs(s["loss"])):
                    lines.append(f"MISMATCH: training loss srlm {s['loss']:.5f} vs torch {x['loss']:.5f}"); bad = True
            lines.append(f"same model checked: loss srlm {s0['loss']:.5f}, PyTorch {x0['loss']:.5f}; PyTorch "
                         f"{x0['torch']}, transformers {x0['transformers']}, attention {x0['attn']}")
            lines.append("")
            lines.append("| | srlm (median, min .. max) | PyTorch | srlm / PyTorch, median of pairs (min .. max) |")
            lines.append("|---|---|---|---|")
        else:
            lines.append("")
            lines.append("| | srlm (median, min .. max) |")
            lines.append("|---|---|")
        for key, what in metrics:
            sv = [s[key] for s, _ in ok]
            row["srlm"][key] = sv
            if have_torch:
                tv = [x[key] for _, x in ok]
                r = [a / b for a, b in zip(sv, tv)]
                row["torch"][key], row["ratio"][key] = tv, r
                lines.append(f"| {what} | {rng(sv, '%.1f')} | {rng(tv, '%.1f')} | {rng(r, '%.2fx')} |")
            else:
                lines.append(f"| {what} | {rng(sv, '%.1f')} |")
        bw = [s["decode_weight_gb_per_s"] for s, _ in ok]
        cp = [s["copy_gb_per_s"] for s, _ in ok]
        fr = [a / b for a, b in zip(bw, cp)]
        row["srlm"]["decode_weight_gb_per_s"], row["srlm"]["copy_gb_per_s"] = bw, cp
        lines.append(f"\nsrlm decode reads its weights at {rng(bw, '%.1f')} GB/s; STREAM-style copy {rng(cp, '%.1f')} GB/s: "
                     f"{rng([100 * f for f in fr], '%.0f')} % of it (batch {s0['decode_batch']})")
        if all("train_gflop_per_token" in s for s, _ in ok):
            gt = ok[0][0]["train_gflop_per_token"]
            def peak_of(s):  # the level's bf16 products: the tile unit at amx, else vdpbf16ps, else fma
                kind = s.get("bf16_kernel")  # absent before it was recorded: amx or dot by the peaks
                if dtype == "bf16" and kind in (None, "amx") and s.get("amx_peak_gflops", 0) > 0:
                    return s["amx_peak_gflops"], "AMX tile"
                if dtype == "bf16" and kind in (None, "dot") and s["bf16_dot_peak_gflops"] > 0:
                    return s["bf16_dot_peak_gflops"], "bf16 dot"
                return s["fma_peak_gflops"], "fp32 fma"
            pk = [peak_of(s)[0] for s, _ in ok]
            sf = [s["fwd_bwd_tokens_per_s"] * gt for s, _ in ok]
            line = (f"training step model FLOP/s ({gt:.3f} GFLOP a token): srlm {rng(sf, '%.1f')} GFLOP/s = "
                    f"{rng([100 * a / b for a, b in zip(sf, pk)], '%.0f')} % of the threads' "
                    f"{peak_of(ok[0][0])[1]} peak ({rng(pk, '%.1f')} GFLOP/s)")
            if have_torch:
                tf = [x["fwd_bwd_tokens_per_s"] * gt for _, x in ok]
                line += f"; PyTorch {rng(tf, '%.1f')} = {rng([100 * a / b for a, b in zip(tf, pk)], '%.0f')} %"
            lines.append(line)
            row["train_gflop_per_token"], row["peak_gflops"] = gt, pk
        summary[f"{size}_t{t}"] = row
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
text = "\n".join(lines) + "\n"
open(os.path.join(out, "summary.md"), "w").write(text)
print(text.split("\n", 1 + text.count("\n# ", 0, text.find("\n\n")))[-1])  # the header is on the screen already
sys.exit(1 if bad else 0)
EOF
echo "model.sh: results in $OUT"
exit $status
