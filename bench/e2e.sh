#!/usr/bin/env bash
# End-to-end benchmark (issue 10): the learner's DPO step and the generator's sampling at
# real model shapes with random weights, srlm (bench_e2e) and PyTorch + transformers
# (bench/e2e_torch.py) on the same card in the same run; one full self-rewarding iteration
# (`srlm train`, seconds per phase from metrics.jsonl); and the comm layer's weight
# broadcast and gradient all-reduce per bucket size (bench_comm, algbw/busbw). One table
# (nccl-tests style) and one JSON file.
#
# usage: bench/e2e.sh [BUILD_DIR] [PRESET]
#   PRESET gpu (default with nvidia-smi): bf16 on cuda, the issue's work:
#            DPO step, 64 pairs x (512 prompt + 512 response), at qwen3-0.6b, qwen3-1.7b, llama3.2-3b;
#            generation, 512 prompts x 8 samples x 512 new tokens, at qwen3-0.6b and qwen3-1.7b;
#            one iteration of the quickstart's sign puzzle at the qwen3-0.6b shape (4096
#            prompts x 4 samples, J = 1 judgment each, DPO on the pairs; the vocabulary is the
#            task's characters, so the 0.6B's LM head of 151936 rows is not in it);
#            broadcast and all-reduce of 256 MiB in buckets of 4 to 256 MiB: one rank on NCCL
#            (one GPU: NCCL's own copy, no link) and 3 ranks sharing the GPU over MPI (the
#            single-GPU roles layout: pinned host staging); NCCL between GPUs needs several;
#          gpu-quick: the same shapes with 4 layers and a tenth of the work (a first look in
#            a few minutes; the iteration at 512 prompts);
#          cpu (default without a GPU): fp32 on the CPU, the tiny shape, the iteration at 16
#            prompts, 2 MPI ranks for the comm rows (checks the harness; not a measurement).
#   env PYTHON (default python3, needs torch + transformers), THREADS (CPU, default 2),
#   OUT (default BUILD_DIR/bench), PEAK_TFLOPS (default 989: H100/H200 dense bf16),
#   MPIRUN (default mpirun; without it the comm rows run as one rank), PARTS (default
#   "compare iteration comm": which of the three to run; bench/gpu_check.sh runs them apart).
# Results: OUT/e2e.json (every row of both sides; the iteration's phases and the comm rows
# are srlm's alone, torch null) and the table on stdout: srlm/PyTorch ratio of tokens/s per
# row, MFU for the DPO step, fraction of the bandwidth bound for generation (srlm's; see
# bench_e2e.c for both formulas); then the iteration's seconds per phase and the comm sweep.
# Without torch the srlm side still runs (and says so); exit 1 when any srlm part failed.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
PRESET=${2:-$(command -v nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)}
PY=${PYTHON:-python3}
OUT=${OUT:-$BUILD/bench}
PEAK=${PEAK_TFLOPS:-989}
THREADS=${THREADS:-2}
BENCH=$BUILD/bench/bench_e2e COMM=$BUILD/bench/bench_comm SRLM=$BUILD/srlm
for b in "$BENCH" "$COMM" "$SRLM"; do
  [ -x "$b" ] || { echo "e2e.sh: $b not built (cmake --build $BUILD --target srlm bench_e2e bench_comm)" >&2; exit 2; }
done
MPIRUN=${MPIRUN:-mpirun}
PARTS=${PARTS:-compare iteration comm}
part() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
mkdir -p "$OUT"
rm -f "$OUT"/e2e_*.json "$OUT"/e2e_*.txt # a part that fails now must not show an older run's rows
have_torch=1
if part compare; then
  "$PY" -c "import torch, transformers" 2>/dev/null || { have_torch=0; echo "# e2e.sh: no torch/transformers in $PY: srlm side only" >&2; }
fi

case "$PRESET" in
  gpu)
    side=(--backend cuda --dtype bf16); tside=(--device cuda --dtype bf16)
    dpo="--pairs 64 --micro 8 --prompt-len 512 --response-len 512 --steps 3 --warmup 1"
    gen="--gen-prompts 512 --samples 8 --prompt-len 128 --new-tokens 512 --gen-batch 512"
    runs=("qwen3-0.6b dpo" "qwen3-1.7b dpo" "llama3.2-3b dpo" "qwen3-0.6b gen" "qwen3-1.7b gen")
    layers=""
    iter_shape=qwen3-0.6b iter_prompts=4096 iter_run=(run.backend=cuda model.dtype=bf16)
    comm="--bytes 268435456 --min-bucket 4194304 --max-bucket 268435456 --iters 5 --warmup 1"
    comm_runs=("1 cuda nccl" "3 cuda mpi") ;;
  gpu-quick)
    side=(--backend cuda --dtype bf16); tside=(--device cuda --dtype bf16)
    dpo="--pairs 16 --micro 8 --prompt-len 512 --response-len 512 --steps 2 --warmup 1"
    gen="--gen-prompts 64 --samples 8 --prompt-len 128 --new-tokens 128 --gen-batch 512"
    runs=("qwen3-0.6b dpo" "qwen3-1.7b dpo" "qwen3-0.6b gen")
    layers="--layers 4"
    iter_shape=qwen3-0.6b iter_prompts=512 iter_run=(run.backend=cuda model.dtype=bf16)
    comm="--bytes 67108864 --min-bucket 1048576 --max-bucket 67108864 --iters 5 --warmup 1"
    comm_runs=("1 cuda nccl" "3 cuda mpi") ;;
  cpu)
    export OMP_NUM_THREADS=$THREADS
    side=(--backend cpu --dtype fp32); tside=(--device cpu --dtype fp32 --threads "$THREADS")
    dpo="--pairs 8 --micro 4 --prompt-len 32 --response-len 32 --steps 3 --warmup 1"
    gen="--gen-prompts 8 --samples 2 --prompt-len 32 --new-tokens 16 --gen-batch 16"
    runs=("tiny dpo" "tiny gen")
    layers=""
    iter_shape=tiny iter_prompts=16 iter_run=(run.backend=cpu model.dtype=fp32)
    comm="--bytes 1048576 --min-bucket 65536 --max-bucket 1048576 --iters 3 --warmup 1"
    comm_runs=("2 cpu mpi") ;;
  *) echo "e2e.sh: unknown preset $PRESET (gpu, gpu-quick, cpu)" >&2; exit 2 ;;
esac

status=0
i=0
part compare || runs=()
for r in ${runs[@]+"${runs[@]}"}; do
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

# one self-rewarding iteration of the quickstart's task at the shape, colocated in one
# process (generate, judge, learn in turn: each phase timed alone), random weights
it_dir=$OUT/e2e_iteration
rm -rf "$it_dir"
# shellcheck disable=SC2046
if part iteration; then
  (cd "$SRC" && "$SRLM" train -c configs/quickstart.yaml $("$BENCH" --shape "$iter_shape" $layers --arch-overrides) \
    "${iter_run[@]}" run.out_dir="$it_dir" run.name=it run.iterations=1 roles.colocate=true \
    task.prompts_per_iteration="$iter_prompts" generate.samples_per_prompt=4 judge.samples=1 task.eval_prompts=0 \
    pairs.min_margin=0) >"$OUT/e2e_iteration.txt" 2>&1 || { status=1; tail -3 "$OUT/e2e_iteration.txt" >&2; }
fi

# the comm sweep: RANKS BACKEND TRANSPORT per run
j=0
have_mpirun=1
part comm || comm_runs=()
[ ${#comm_runs[@]} -eq 0 ] || command -v "$MPIRUN" >/dev/null 2>&1 || { have_mpirun=0; echo "# e2e.sh: no $MPIRUN: the comm rows run as one rank" >&2; }
for r in ${comm_runs[@]+"${comm_runs[@]}"}; do
  set -- $r
  np=$1 be=$2 tr=$3
  [ $have_mpirun -eq 1 ] || np=1
  j=$((j + 1))
  launch=()
  [ "$np" -gt 1 ] && launch=("$MPIRUN" --oversubscribe -np "$np")
  "${launch[@]}" "$COMM" --backend "$be" --transport "$tr" $comm --json "$OUT/e2e_comm_$j.json" \
    >"$OUT/e2e_comm_$j.txt" 2>&1 || { status=1; tail -3 "$OUT/e2e_comm_$j.txt" >&2; }
done

"$PY" - "$OUT" "$i" "$PRESET" "$iter_shape" "$iter_prompts" "$j" "$PARTS" <<'PY'
import json, os, sys
out, n, preset, parts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[7].split()
rows = []
if "compare" in parts:
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
# the iteration: seconds per phase from metrics.jsonl's iteration line (rest: saving, evaluating)
shape, prompts, ncomm = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
it = None
mp = os.path.join(out, "e2e_iteration", "it", "metrics.jsonl")
if os.path.exists(mp):
    it = next((json.loads(l) for l in open(mp) if '"event":"iteration"' in l), None)
if "iteration" in parts:
    print("# one iteration, %s shape, %d prompts x 4 samples, J = 1, DPO on the pairs: seconds per phase" % (shape, prompts))
    print("# %-12s %10s %10s %10s %10s %10s %10s %8s" % ("shape", "rollout", "generate", "judge", "learn", "rest", "total",
                                                         "pairs"))
    if it:
        ph = {k: it.get(k + "_seconds") for k in ("rollout", "generate", "judge", "learn")}
        ph["rest"] = it["seconds"] - (ph["rollout"] or 0) - (ph["learn"] or 0)
        ph["total"] = it["seconds"]
        f = lambda x: "%10.3f" % x if x is not None else "%10s" % "-"
        print("  %-12s %s %s %s %s %s %s %8d" % (shape, f(ph["rollout"]), f(ph["generate"]), f(ph["judge"]), f(ph["learn"]),
                                                  f(ph["rest"]), f(ph["total"]), it.get("pairs", 0)))
        rows.append({"shape": shape, "work": "iteration", "srlm": dict(ph, prompts=prompts, samples=it.get("samples"),
                     pairs=it.get("pairs")), "torch": None, "ratio": None})
    else:
        print("  (the iteration failed, see e2e_iteration.txt)")
if "comm" in parts:
    print("# comm: broadcast (busbw = algbw) and all-reduce (busbw = algbw x 2(P-1)/P) per bucket size")
    print("# %-16s %5s %-8s %-5s %12s %12s %12s %10s %10s %6s" % ("op", "ranks", "backend", "via", "bytes", "bucket",
                                                                  "time_us", "algbw GB/s", "busbw GB/s", "check"))
    for j in range(1, ncomm + 1):
        p = os.path.join(out, "e2e_comm_%d.json" % j)
        if not os.path.exists(p):
            print("  (comm run %d failed, see e2e_comm_%d.txt)" % (j, j)); continue
        c = json.load(open(p))
        for r in c["results"]:
            via = c["transport"]["broadcast" if r["work"] == "bcast_weights" else "learners"]
            print("  %-16s %5d %-8s %-5s %12d %12d %12.1f %10.3f %10.3f %6s" % (r["work"], c["ranks"], c["backend"], via,
                  r["bytes"], r["bucket"], r["time_us"], r["algbw"], r["busbw"], "ok" if r["check"] else "WRONG"))
            rows.append({"work": r["work"], "srlm": dict(r, ranks=c["ranks"], backend=c["backend"], transport=via),
                         "torch": None, "ratio": None})
json.dump({"preset": preset, "rows": rows}, open(os.path.join(out, "e2e.json"), "w"), indent=1)
PY
exit $status
