#!/usr/bin/env bash
# A bf16 model (model.dtype=bf16) with separate roles (issue 10): the generators and judges keep
# no fp32 master, the weight broadcast carries learner 0's bf16 compute copy (2 bytes a weight)
# straight into theirs. Checks:
#   - 3 ranks (learner, generator, judge) give the one-process run's rollouts of both
#     iterations and its final weights, bit for bit: the samplers decode with exactly the
#     learner's compute copy (iteration 2 samples M1, whose fp32 master is off the bf16 grid);
#   - the memory plans: the generator and the judge hold master 0, the learner its fp32 master;
#   - ZeRO-1 (train.zero=1) with 2 and 4 learners, where each learner keeps only its range of
#     the fp32 master and the all-gather moves the bf16 compute copy: the same final weights,
#     metrics and iteration-2 rollouts as the same learners unsharded; also with WARP's EMA
#     anchor (train.reference=ema, its master sharded too); the learners' plans say
#     "master ... (ZeRO-1 shard)";
#   - a LEARN checkpoint of 2 ZeRO-1 learners holds the full state (the master gathered):
#     resumed by the same 2 it finishes as the uninterrupted run; resumed by 4 learners with
#     ZeRO-1 it finishes as 4 learners unsharded resuming the same checkpoint.
# (tests/mpi/mpi_comm.c checks the broadcast into a decode-only model at the model level.)
set -u
. "$(dirname "$0")/lib/check.sh"
need_mpirun
cli_setup "$1"
mpi_env
no_leak_checks
base="$tiny_quickstart
  run.iterations=2 task.prompts_per_iteration=24 task.eval_prompts=16 generate.samples_per_prompt=4
  judge.replay_per_verdict=8 train.batch_size=8 train.lr=1e-3 pairs.min_margin=0 roles.shard_prompts=4 roles.threads=1
  model.dtype=bf16"
sep="roles.colocate=false"

layout_timeout=300   # layout (lib/check.sh) allows each run 300 s: 6 ranks of bf16 under ASan

layout one --
layout sep3 -np 3 -- $sep roles.learners=1 roles.generators=1 roles.judges=1
layout lrn2 -np 4 -- $sep roles.learners=2 roles.generators=1 roles.judges=1
layout lrn2z -np 4 -- $sep roles.learners=2 roles.generators=1 roles.judges=1 train.zero=1 train.checkpoint_every=2
layout lrn4 -np 6 -- $sep roles.learners=4 roles.generators=1 roles.judges=1
layout lrn4z -np 6 -- $sep roles.learners=4 roles.generators=1 roles.judges=1 train.zero=1
ema="train.reference=ema train.ema_mu=0.3"
layout ema2 -np 4 -- $sep roles.learners=2 roles.generators=1 roles.judges=1 $ema
layout ema2z -np 4 -- $sep roles.learners=2 roles.generators=1 roles.judges=1 $ema train.zero=1 train.checkpoint_every=2

# kill-and-resume: 2 ZeRO-1 learners stopped right after a mid-iteration checkpoint
zk="$sep roles.learners=2 roles.generators=1 roles.judges=1 train.zero=1 train.checkpoint_every=2"
SRLM_STOP_AT_CHECKPOINT=1:2 setsid mpirun --oversubscribe -np 4 "$srlm" train $base run.name=zk $zk >/dev/null 2>"$tmp/zk.err" &
pid=$!
wait_line "$tmp/zk.err" "learn: checkpoint after step" "$pid" || fail "no learning checkpoint line in $tmp/zk.err"
kill -9 -- -"$pid" 2>/dev/null
wait "$pid" 2>/dev/null
# the checkpoint belongs to this run folder (run.name, run.out_dir): each resume starts from a
# copy of it in place, and its result is moved aside
rm -rf "$tmp/zk.saved" "$tmp/done" && cp -r "$tmp/runs/zk" "$tmp/zk.saved" && mkdir -p "$tmp/done"
resume() { # LOG NP OVERRIDES...
  local log=$1 np=$2; shift 2
  rm -rf "$tmp/runs/zk" && cp -r "$tmp/zk.saved" "$tmp/runs/zk"
  timeout 300 mpirun --oversubscribe -np "$np" "$srlm" train $base run.name=zk "$@" --resume >"$tmp/$log.out" 2>"$tmp/$log.err"
  local rc=$?
  echo "$log (resumed): exit $rc"
  [ $rc -eq 0 ] || { fail "$log exited $rc"; tail -5 "$tmp/$log.err" >&2; }
  grep -q "inside an iteration's learning" "$tmp/$log.err" || fail "$log: did not resume inside the learning"
  mv "$tmp/runs/zk" "$tmp/done/$log"
}
resume zk 4 $zk
resume zk4 6 $zk roles.learners=4
resume zk4u 6 $zk roles.learners=4 train.zero=0

[ -s "$tmp/one.r1" ] && [ "$(grep -c '"shard"' "$tmp/one.r1")" -eq 96 ] || fail "one: expected 96 responses in iteration 1"
for t in 1 2; do
  cmp -s "$tmp/one.r$t" "$tmp/sep3.r$t" || fail "sep3: iteration $t rollouts differ from one process"
done
cmp -s "$tmp/runs/one/iter_2/model/model.safetensors" "$tmp/runs/sep3/iter_2/model/model.safetensors" \
  || fail "sep3: final weights are not bit-identical to one process"
# M1's fp32 master is off the bf16 grid (else the broadcast's dtype could not matter)
python3 - "$tmp/runs/one/iter_1/model/model.safetensors" <<'PY' || fail "M1's saved master is on the bf16 grid"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
off = tot = 0
for k, v in h.items():
    if k == "__metadata__": continue
    assert v["dtype"] == "F32", v["dtype"]
    a, e = v["data_offsets"]
    for (u,) in struct.iter_unpack("<I", b[8 + n + a:8 + n + e]):
        tot += 1
        off += (u & 0xffff) != 0
print("M1: %d of %d fp32 master weights off the bf16 grid" % (off, tot))
sys.exit(0 if off > tot // 2 else 1)
PY
for r in "r1 generator" "r2 judge"; do
  grep -F "[srlm $r] memory plan" "$tmp/sep3.err" | grep -q "master 0.0 KiB" \
    || fail "sep3: the ${r#* }'s memory plan counts a master: $(grep -F "[srlm $r] memory plan" "$tmp/sep3.err")"
done
grep -F "[srlm r0 learner] memory plan" "$tmp/sep3.err" | grep -q "master 83.0 KiB" \
  || fail "sep3: the learner's memory plan should count its fp32 master: $(grep -F "[srlm r0 learner] memory plan" "$tmp/sep3.err")"
for z in lrn2 lrn4 ema2; do
  same_run "$tmp/runs" 2 "$z" "${z}z"
  cmp -s "$tmp/$z.r2" "$tmp/${z}z.r2" || fail "${z}z: iteration 2 rollouts differ from $z (the same learners, unsharded)"
  grep -F "learner] memory plan" "$tmp/${z}z.err" | grep -q "(ZeRO-1 shard), gradients" \
    || fail "${z}z: the learners' plans do not count a master shard: $(grep -F "learner] memory plan" "$tmp/${z}z.err" | head -1)"
done
grep -q "checkpoint after step 2" "$tmp/lrn2z.err" "$tmp/lrn2z.out" || fail "lrn2z: no mid-iteration checkpoint"
grep -q "checkpoint after step 2" "$tmp/ema2z.err" "$tmp/ema2z.out" || fail "ema2z: no mid-iteration checkpoint"
grep -q '"anchor_distance":[0-9]' "$tmp/runs/ema2z/metrics.jsonl" || fail "ema2z: no anchor distance in metrics.jsonl"
mv "$tmp/done/zk" "$tmp/runs/zk" && same_run "$tmp/runs" 2 lrn2z zk
same_run "$tmp/done" 2 zk4u zk4
cmp -s "$tmp/done/zk4/iter_1/model/model.safetensors" "$tmp/runs/lrn2z/iter_1/model/model.safetensors" \
  && fail "zk4: iteration 1 finished by 4 learners is bit-identical to 2 learners' (the check cannot tell layouts apart)"

echo "bf16_roles.sh: $fails failed"
[ "$fails" -eq 0 ]
