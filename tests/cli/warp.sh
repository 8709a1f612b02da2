#!/usr/bin/env bash
# WARP's EMA anchor through srlm train (train.reference: ema): DPO and GRPO runs on a tiny
# random model write anchor_distance into their iteration lines; the anchor changes the
# result (against train.reference: iteration); it is saved in checkpoint.h5 and restored,
# so a run killed right after a learning checkpoint, and a run resumed after a complete
# iteration, end bit-identical to the uninterrupted run; two learners with train.zero 0
# and 1 give the same bits (not under SRLM_TEST_QUICK); a loss without a reference is
# refused; bench/warp_merge.sh merges two runs and evaluates them.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
mpi_env
no_leak_checks
base="$tiny_quickstart
  run.iterations=2 task.prompts_per_iteration=96 task.eval_prompts=16 generate.samples_per_prompt=4
  judge.replay_per_verdict=16 train.batch_size=4 train.lr=1e-3 pairs.min_margin=0 roles.shard_prompts=8
  roles.threads=1 train.checkpoint_every=5 train.reference=ema train.ema_mu=0.1"

"$srlm" train $base run.name=ref >/dev/null 2>"$tmp/ref.err" || { fail "reference run"; tail -3 "$tmp/ref.err" >&2; }
grep -q "EMA anchor (mu 0.1) at relative distance" "$tmp/ref.err" || fail "no anchor line in the log"
python3 - "$tmp/runs/ref/metrics.jsonl" <<'PY' || fail "ref: anchor_distance / learn lines"
import json, sys
its = [json.loads(l) for l in open(sys.argv[1]) if '"event":"iteration"' in l]
d = [l.get("anchor_distance") for l in its]
print("anchor_distance per iteration:", d, file=sys.stderr)
# the anchor trails the weights (> 0) and, kept over the run, is further behind after 2 iterations
sys.exit(0 if len(d) == 2 and all(isinstance(x, float) and x > 0 for x in d) and d[1] > d[0] else 1)
PY

# the anchor is the reference: the iteration reference trains other weights
"$srlm" train $base run.name=iter train.reference=iteration >/dev/null 2>"$tmp/iter.err" || fail "iteration-reference run"
cmp -s "$tmp/runs/ref/iter_2/model/model.safetensors" "$tmp/runs/iter/iter_2/model/model.safetensors" &&
  fail "train.reference ema and iteration gave the same weights"
grep -q anchor_distance "$tmp/runs/iter/metrics.jsonl" && fail "anchor_distance without an anchor"

# killed right after the first learning checkpoint: the anchor of that step comes back
SRLM_STOP_AT_CHECKPOINT=any "$srlm" train $base run.name=lk >/dev/null 2>"$tmp/lk.err" & # stops itself there
pid=$!
wait_line "$tmp/lk.err" "learn: checkpoint after step" "$pid" || fail "no learning checkpoint line in $tmp/lk.err"
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
"$srlm" train $base run.name=lk --resume >/dev/null 2>"$tmp/lk2.err" || { fail "lk: resume"; tail -3 "$tmp/lk2.err" >&2; }
grep -q "inside an iteration's learning" "$tmp/lk2.err" || fail "lk: did not resume inside the learning: $(grep resuming "$tmp/lk2.err")"
same_run "$tmp/runs" 2 ref lk

# one iteration, then --resume to two: the anchor of the ITERATION checkpoint comes back
"$srlm" train $base run.name=it1 run.iterations=1 >/dev/null 2>"$tmp/it1.err" || fail "it1 run"
"$srlm" train $base run.name=it1 --resume >/dev/null 2>"$tmp/it1b.err" || { fail "it1: resume"; tail -3 "$tmp/it1b.err" >&2; }
grep -q "after a complete iteration" "$tmp/it1b.err" || fail "it1: not resumed after an iteration"
same_run "$tmp/runs" 2 ref it1

# GRPO with a KL to the anchor (beta > 0)
"$srlm" train $base run.name=grpo run.iterations=1 train.loss=grpo train.beta=0.04 >/dev/null 2>"$tmp/grpo.err" ||
  { fail "grpo run"; tail -3 "$tmp/grpo.err" >&2; }
python3 - "$tmp/runs/grpo/metrics.jsonl" <<'PY' || fail "grpo: kl to the anchor"
import json, sys
learn = [json.loads(l) for l in open(sys.argv[1]) if '"event":"learn"' in l]
its = [json.loads(l) for l in open(sys.argv[1]) if '"event":"iteration"' in l]
kl = [l.get("kl") for l in learn]
print("grpo kl to the anchor per logged step:", kl, file=sys.stderr)
# step 1: the anchor is the weights (KL 0); later steps: the weights moved away from it
sys.exit(0 if kl and abs(kl[0]) < 1e-6 and any(x > 0 for x in kl[1:]) and its[0].get("anchor_distance", 0) > 0 else 1)
PY

# WARP's stages 2 and 3 on two runs' final models: slerp, liti, evaluation (bench/warp_merge.sh)
SRLM="$srlm" bash bench/warp_merge.sh --n 16 --init "$tmp/runs/ref/iter_0/model" --out "$tmp/wm" \
  "$tmp/runs/ref/iter_2/model" "$tmp/runs/iter/iter_2/model" >"$tmp/wm.out" 2>"$tmp/wm.err" ||
  { fail "bench/warp_merge.sh"; tail -3 "$tmp/wm.err" >&2; }
[ "$(wc -l <"$tmp/wm/eval.jsonl" 2>/dev/null)" = 4 ] && [ -f "$tmp/wm/merged/model.safetensors" ] &&
  grep -q '"rule":"liti"' "$tmp/wm/merge.jsonl" || fail "warp_merge.sh: outputs $(cat "$tmp/wm.out")"

# refused: a loss without a reference
"$srlm" train $base run.name=bad train.loss=sft >/dev/null 2>"$tmp/bad.err"
rc=$?
[ $rc -eq 2 ] && grep -q "train.reference: ema anchors a loss's reference" "$tmp/bad.err" ||
  fail "ema with train.loss sft: exit $rc: $(tail -1 "$tmp/bad.err")"

# two learners, each with the full anchor: ZeRO-1 gives the same bits as plain data parallel
if command -v mpirun >/dev/null 2>&1 && [ -z "${SRLM_TEST_QUICK:-}" ]; then
  for z in 0 1; do
    timeout 300 mpirun --oversubscribe -np 2 "$srlm" train $base run.name=dp$z run.iterations=1 train.zero=$z roles.colocate=true \
      >/dev/null 2>"$tmp/dp$z.err" || { fail "2 learners, zero $z"; tail -3 "$tmp/dp$z.err" >&2; }
  done
  same_run "$tmp/runs" 1 dp0 dp1
fi

echo "warp.sh: $fails failed"
[ "$fails" -eq 0 ]
