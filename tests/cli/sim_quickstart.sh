#!/usr/bin/env bash
# The CUDA kernels on the job itself: an SFT run and one self-rewarding DPO iteration of the
# quickstart, each run twice, on the CPU and on cuda-sim (the CUDA kernels executed by the
# CUDA simulator), in fp32, compared.
#
# Tolerances (fp32; the two backends differ only in the summation order of reductions:
# attention, norms, the LM head's chunks, the gradient sums):
#   SFT (configs/sft-tiny.yaml, 40 steps): every step's loss within 1e-4 relative and the
#     final weights within 1e-4 relative L2 (measured: 3.1e-5 and 3.7e-6; the first steps
#     agree to ~1e-7 and the difference grows as training amplifies it).
#   The iteration (generate 4 samples for 32 prompts, judge, pair, DPO + NLL + replay, from
#     the CPU's SFT model): the rollouts' token ids and judgment texts identical (sampling
#     keys every draw by (seed, sequence, step) and both backends sample with the same
#     integer-exact rule, so only a logit within ~1e-7 of a cut could flip a draw), and the
#     weights after the iteration within 1e-3 of the CPU's relative to the iteration's
#     update ||w_sim - w_cpu|| / ||w_cpu - w_M1|| (measured: 1.9e-5).
# The same script checks a real GPU (bench/gpu_check.sh job, and the ctest gpu.quickstart*
# registered where a GPU is): SRLM_QS_BACKEND=cuda (default cuda-sim) names the backend
# compared with the CPU, SRLM_QS_RANKS=3 runs the device's iteration as the quickstart does,
# three ranks (learner, generator, judge) sharing the device under SRLM_QS_MPIRUN (default
# mpirun). Layouts do not change rollouts or, with one learner, the weights (cli.layouts), so
# the same rules hold.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
be_dev=${SRLM_QS_BACKEND:-cuda-sim}
ranks=${SRLM_QS_RANKS:-1}

case "$ranks" in
  1) launch=() layout="" ;;
  3) launch=(${SRLM_QS_MPIRUN:-mpirun} --oversubscribe --bind-to none -np 3)
     layout="roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=1"
     export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive ;;
  *) echo "SRLM_QS_RANKS=$ranks: expected 1 or 3" >&2; exit 2 ;;
esac
echo "sim_quickstart: cpu against $be_dev, the iteration on $ranks rank(s)"

for be in cpu "$be_dev"; do
  "$srlm" sft -c configs/sft-tiny.yaml run.out_dir="$tmp/runs" run.name="sft-$be" train.epochs=40 --backend "$be" \
    >/dev/null 2>"$tmp/sft-$be.err" || { fail "sft on $be"; tail -3 "$tmp/sft-$be.err" >&2; }
done
m1=$tmp/runs/sft-cpu/model
small="run.out_dir=$tmp/runs model.path=$m1 run.iterations=1 task.prompts_per_iteration=32
  generate.samples_per_prompt=4 task.eval_prompts=16 judge.replay_per_verdict=8 train.batch_size=8 pairs.min_margin=0"
for be in cpu "$be_dev"; do
  if [ "$be" = cpu ]; then l=() lay=""; else l=("${launch[@]}") lay=$layout; fi
  "${l[@]}" "$srlm" train -c configs/quickstart.yaml $small $lay run.name="it-$be" run.backend="$be" >"$tmp/it-$be.out" \
    2>"$tmp/it-$be.err" || { fail "train on $be ($ranks rank(s))"; tail -3 "$tmp/it-$be.err" >&2; }
  "$srlm" rollouts "$tmp/runs/it-$be/iter_1/rollouts.h5" >"$tmp/rollouts-$be.jsonl" 2>/dev/null \
    || fail "rollouts of $be"
done

python3 - "$tmp/runs" "$tmp" "$be_dev" <<'PY' || fails=$((fails + 1))
import json, struct, sys
runs, tmp, dev = sys.argv[1], sys.argv[2], sys.argv[3]
bad = []

def weights(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr, data = json.loads(b[8:8 + n]), b[8 + n:]
    out = {}
    for k, v in hdr.items():
        if k != "__metadata__":
            s, e = v["data_offsets"]
            out[k] = struct.unpack("<%df" % ((e - s) // 4), data[s:e])
    return out

def rel(a, b, base=None):
    num = den = 0.0
    for k in b:
        for i, (x, y) in enumerate(zip(a[k], b[k])):
            r = y - (base[k][i] if base else 0.0)
            num += (x - y) ** 2
            den += r * r
    return (num / den) ** 0.5 if den else float("inf")

def steps(path):
    return [json.loads(l) for l in open(path) if '"loss"' in l]

# SFT
sc, ss = steps(f"{runs}/sft-cpu/metrics.jsonl"), steps(f"{runs}/sft-{dev}/metrics.jsonl")
if len(sc) != len(ss) or not sc:
    bad.append(f"sft: {len(sc)} cpu vs {len(ss)} {dev} logged steps")
worst = max((abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(sc, ss)), default=0.0)
print(f"sim_quickstart: sft losses {dev} vs cpu: worst relative difference {worst:.2e} (rule 1e-4)")
if not worst <= 1e-4:
    bad.append(f"sft losses differ by {worst:.2e} relative (rule 1e-4)")
wc, ws = weights(f"{runs}/sft-cpu/model/model.safetensors"), weights(f"{runs}/sft-{dev}/model/model.safetensors")
e = rel(ws, wc)
print(f"sim_quickstart: sft weights {dev} vs cpu: relative L2 {e:.2e} (rule 1e-4)")
if not e <= 1e-4:
    bad.append(f"sft weights differ by {e:.2e} (rule 1e-4)")

# the iteration
ra = [json.loads(l) for l in open(f"{tmp}/rollouts-cpu.jsonl") if '"ids"' in l]
rb = [json.loads(l) for l in open(f"{tmp}/rollouts-{dev}.jsonl") if '"ids"' in l]
diff = sum(a["ids"] != b["ids"] or a.get("judgments") != b.get("judgments") for a, b in zip(ra, rb))
print(f"sim_quickstart: iteration rollouts: {len(ra)} responses, {diff} differ in tokens or judgments")
if len(ra) != len(rb) or not ra or diff:
    bad.append(f"rollouts: {len(ra)} cpu vs {len(rb)} {dev} responses, {diff} differ")
w0 = weights(f"{runs}/sft-cpu/model/model.safetensors")
ic = weights(f"{runs}/it-cpu/iter_1/model/model.safetensors")
iz = weights(f"{runs}/it-{dev}/iter_1/model/model.safetensors")
e = rel(iz, ic, w0)
print(f"sim_quickstart: iteration 1 weights {dev} vs cpu: {e:.2e} of the update (rule 1e-3)")
if not e <= 1e-3:
    bad.append(f"iteration weights differ by {e:.2e} of the update (rule 1e-3)")
for b in bad:
    print("FAIL: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY

echo "sim_quickstart.sh: $fails failed"
[ "$fails" -eq 0 ]
