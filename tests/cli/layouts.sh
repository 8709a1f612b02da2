#!/usr/bin/env bash
# `srlm train` over MPI layouts (issue 4): the same 2 iterations of the sign puzzle, from
# the same fresh tiny model and seed, run as one process, mpirun -np 1, 2 ranks colocated,
# 3 ranks with separate roles, 4 ranks with 2 generators forced onto TCP (--mca btl
# self,tcp: a stand-in for several nodes) and 4 ranks with 2 learners. Checks:
#   - iteration 1's rollouts and judgments (srlm rollouts dump) are identical in every
#     layout: randomness is keyed by prompt and sample, not by rank;
#   - with one learner, iteration 2's rollouts and the final weights are bit-identical;
#   - with two learners (colocated 2, separate 2+1+1), the final weights agree within
#     float re-association tolerance (the gradient sum is split over learners);
#   - ZeRO-1 (train.zero=1) with 2 and 4 learners: final weights and iteration 2's
#     rollouts bit-identical to the same learners unsharded (with a mid-iteration
#     checkpoint, whose moments are gathered from the learners);
#   - shard bytes by the clear-to-send handshake in NCCL's order (SRLM_COMM_P2P=inorder), two
#     judges to two learners: rollouts and final weights bit-identical to the inline MPI path;
#   - failures end every rank, with the message, non-zero, no hang: a non-lead rank with a
#     bad model.path, and a judge rank killed with SIGKILL mid-iteration (also with the handshake).
set -u
. "$(dirname "$0")/lib/check.sh"
need_mpirun
cli_setup "$1"
mpi_env
no_leak_checks
base="$tiny_quickstart
  run.iterations=2 task.prompts_per_iteration=24 task.eval_prompts=16 generate.samples_per_prompt=4
  judge.replay_per_verdict=8 train.batch_size=8 train.lr=1e-3 pairs.min_margin=0 roles.shard_prompts=4 roles.threads=1"
sep="roles.colocate=false"

layout one --
layout np1 -np 1 --
layout col2 -np 2 -- roles.colocate=true
layout sep3 -np 3 -- $sep roles.learners=1 roles.generators=1 roles.judges=1
layout tcp4 -np 4 --mca btl self,tcp -- $sep roles.learners=1 roles.generators=2 roles.judges=1
layout lrn2 -np 4 -- $sep roles.learners=2 roles.generators=1 roles.judges=1
# ZeRO-1 (train.zero=1): AdamW moments sharded over the learners, the same bits as unsharded
layout lrn2z -np 4 -- $sep roles.learners=2 roles.generators=1 roles.judges=1 train.zero=1 train.checkpoint_every=2
layout lrn4 -np 6 -- $sep roles.learners=4 roles.generators=1 roles.judges=1
layout lrn4z -np 6 -- $sep roles.learners=4 roles.generators=1 roles.judges=1 train.zero=1
# shard bytes by the clear-to-send handshake, moved in NCCL's order (SRLM_COMM_P2P=inorder: what
# run.comm auto does between GPUs of their own), two judges crossing to two learners
layout p2p5 -np 5 -x SRLM_COMM_P2P=inorder -- $sep roles.learners=2 roles.generators=1 roles.judges=2

[ -s "$tmp/one.r1" ] && [ "$(grep -c '"shard"' "$tmp/one.r1")" -eq 96 ] || fail "one: expected 96 responses in iteration 1"
for name in np1 col2 sep3 tcp4 lrn2 p2p5; do
  cmp -s "$tmp/one.r1" "$tmp/$name.r1" || fail "$name: iteration 1 rollouts differ from one process"
done
for name in np1 sep3 tcp4; do
  cmp -s "$tmp/one.r2" "$tmp/$name.r2" || fail "$name: iteration 2 rollouts differ from one process (one learner)"
  cmp -s "$tmp/runs/one/iter_2/model/model.safetensors" "$tmp/runs/$name/iter_2/model/model.safetensors" \
    || fail "$name: final weights are not bit-identical to one process (one learner)"
done
for z in lrn2 lrn4; do
  cmp -s "$tmp/runs/$z/iter_2/model/model.safetensors" "$tmp/runs/${z}z/iter_2/model/model.safetensors" \
    || fail "${z}z: ZeRO-1 final weights are not bit-identical to $z (the same learners, unsharded)"
  cmp -s "$tmp/$z.r2" "$tmp/${z}z.r2" || fail "${z}z: iteration 2 rollouts differ from $z"
done
grep -q "shard-payload group (5 ranks): headers on MPI, bytes on MPI in NCCL's order" "$tmp/p2p5.err" \
  || fail "p2p5: the shard-payload group does not use the handshake"
cmp -s "$tmp/lrn2.r2" "$tmp/p2p5.r2" || fail "p2p5: iteration 2 rollouts differ from lrn2 (the same two learners)"
cmp -s "$tmp/runs/lrn2/iter_2/model/model.safetensors" "$tmp/runs/p2p5/iter_2/model/model.safetensors" \
  || fail "p2p5: final weights are not bit-identical to lrn2 (the same two learners, shards on MPI)"
grep -q "checkpoint after step 2" "$tmp/lrn2z.err" "$tmp/lrn2z.out" || fail "lrn2z: no mid-iteration checkpoint (moments gathered)"
# two learners: weights within re-association tolerance of one learner's
python3 - "$tmp/runs/one/iter_2/model/model.safetensors" "$tmp/runs/col2/iter_2/model/model.safetensors" \
  "$tmp/runs/lrn2/iter_2/model/model.safetensors" "$tmp/runs/one/iter_0/model/model.safetensors" <<'PY' || fails=$((fails + 1))
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        a, e = v["data_offsets"]
        out[k] = struct.unpack("<%df" % ((e - a) // 4), b[8 + n + a:8 + n + e])
    return out
ref, m0 = load(sys.argv[1]), load(sys.argv[4])
bad = 0
for p in sys.argv[2:4]:
    w = load(p)
    moved = max(max(abs(x - y) for x, y in zip(ref[k], m0[k])) for k in ref)
    diff = max(max(abs(x - y) for x, y in zip(ref[k], w[k])) for k in ref)
    print("%s: max |w - w_one| = %.3g (training moved weights by up to %.3g)" % (p.split("/")[-4], diff, moved))
    if not (diff <= 1e-4 * max(1.0, moved) and moved > 1e-4):
        print("FAIL: %s is not within tolerance of one learner" % p, file=sys.stderr); bad += 1
sys.exit(bad)
PY

# a non-lead rank that fails (its own bad override) ends the job with its message
timeout 60 mpirun --oversubscribe -np 2 "$srlm" train $base run.name=bad1 $sep roles.learners=1 roles.generators=1 \
  roles.judges=1 : -np 1 "$srlm" train $base run.name=bad1 $sep roles.learners=1 roles.generators=1 roles.judges=1 \
  model.path=/nonexistent-m >"$tmp/bad1.out" 2>"$tmp/bad1.err"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "failing judge rank: exit $rc (want non-zero, no timeout)"
grep -q "/nonexistent-m" "$tmp/bad1.err" || { fail "the failing rank's message is missing"; tail -5 "$tmp/bad1.err" >&2; }

# a judge rank killed mid-iteration: the job ends, non-zero, no hang
t0=$(date +%s)
timeout 90 mpirun --oversubscribe -np 2 "$srlm" train $base run.name=kill1 $sep roles.learners=1 roles.generators=1 \
  roles.judges=1 task.prompts_per_iteration=4000 : -np 1 timeout -s KILL 3 "$srlm" train $base run.name=kill1 $sep \
  roles.learners=1 roles.generators=1 roles.judges=1 task.prompts_per_iteration=4000 >"$tmp/kill.out" 2>"$tmp/kill.err"
rc=$?
el=$(( $(date +%s) - t0 ))
echo "killed judge: exit $rc after $el s"
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "killed judge: exit $rc (want non-zero, no timeout)"
[ $el -lt 60 ] || fail "killed judge: the job took $el s to end"
# the same with the shard bytes by the handshake: a learner waiting for a dead judge's bytes ends too
t0=$(date +%s)
timeout 90 mpirun --oversubscribe -x SRLM_COMM_P2P=inorder -np 2 "$srlm" train $base run.name=kill2 $sep \
  roles.learners=1 roles.generators=1 roles.judges=1 task.prompts_per_iteration=4000 : -np 1 timeout -s KILL 3 "$srlm" \
  train $base run.name=kill2 $sep roles.learners=1 roles.generators=1 roles.judges=1 task.prompts_per_iteration=4000 \
  >"$tmp/kill2.out" 2>"$tmp/kill2.err"
rc=$?
el=$(( $(date +%s) - t0 ))
echo "killed judge, handshake: exit $rc after $el s"
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "killed judge, handshake: exit $rc (want non-zero, no timeout)"
[ $el -lt 60 ] || fail "killed judge, handshake: the job took $el s to end"
# (only mpirun's first app context has the variable: rank 0's setting decides for every rank)
grep -q "shard-payload group (3 ranks): headers on MPI, bytes on MPI in NCCL's order" "$tmp/kill2.err" \
  || fail "killed judge, handshake: the handshake was not used"

echo "layouts.sh: $fails failed"
[ "$fails" -eq 0 ]
