#!/usr/bin/env bash
# A bf16 model (model.dtype=bf16) with separate roles (issue 10): the generators and judges keep
# no fp32 master, the weight broadcast carries learner 0's bf16 compute copy (2 bytes a weight)
# straight into theirs. Checks:
#   - 3 ranks (learner, generator, judge) give the one-process run's rollouts of both
#     iterations and its final weights, bit for bit: the samplers decode with exactly the
#     learner's compute copy (iteration 2 samples M1, whose fp32 master is off the bf16 grid);
#   - the memory plans: the generator and the judge hold master 0, the learner its fp32 master;
#   - 2 learners with ZeRO-1 (train.zero=1, a mid-iteration checkpoint) give the same final
#     weights and iteration-2 rollouts as the same 2 learners unsharded.
# (tests/mpi/mpi_comm.c checks the broadcast into a decode-only model at the model level.)
set -u
srlm=$1
src=${SRLM_SOURCE_DIR:?}
tmp=${SRLM_TMP:?}
if ! command -v mpirun >/dev/null 2>&1; then
  echo "skipped: no mpirun"
  exit 0
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" # Open MPI's own allocations (see comm_mpi.sh)
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
cd "$src"
rm -rf "$tmp/runs" && mkdir -p "$tmp/runs"
base="-c configs/quickstart.yaml run.out_dir=$tmp/runs model.path= model.arch.hidden_size=32
  model.arch.intermediate_size=64 model.arch.num_layers=2 model.arch.num_heads=2 model.arch.max_seq_len=64
  run.iterations=2 task.prompts_per_iteration=24 task.eval_prompts=16 generate.samples_per_prompt=4
  judge.replay_per_verdict=8 train.batch_size=8 train.lr=1e-3 pairs.min_margin=0 roles.shard_prompts=4 roles.threads=1
  model.dtype=bf16"
sep="roles.colocate=false"

# layout NAME MPIRUN_ARGS... -- OVERRIDES...
layout() {
  local name=$1; shift
  local mpi=()
  while [ "$1" != "--" ]; do mpi+=("$1"); shift; done
  shift
  local t0=$(date +%s%N)
  if [ ${#mpi[@]} -eq 0 ]; then
    timeout 300 "$srlm" train $base run.name="$name" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  else
    timeout 300 mpirun --oversubscribe "${mpi[@]}" "$srlm" train $base run.name="$name" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  fi
  local rc=$?
  echo "$name: exit $rc in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  [ $rc -eq 0 ] || { fail "$name exited $rc"; tail -5 "$tmp/$name.err" >&2; return; }
  for t in 1 2; do
    "$srlm" rollouts "$tmp/runs/$name/iter_$t/rollouts.h5" >"$tmp/$name.r$t" || fail "$name: srlm rollouts iter_$t"
  done
}

layout one --
layout sep3 -np 3 -- $sep roles.learners=1 roles.generators=1 roles.judges=1
layout lrn2 -np 4 -- $sep roles.learners=2 roles.generators=1 roles.judges=1
layout lrn2z -np 4 -- $sep roles.learners=2 roles.generators=1 roles.judges=1 train.zero=1 train.checkpoint_every=2

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
cmp -s "$tmp/runs/lrn2/iter_2/model/model.safetensors" "$tmp/runs/lrn2z/iter_2/model/model.safetensors" \
  || fail "lrn2z: ZeRO-1 final weights are not bit-identical to lrn2 (the same learners, unsharded)"
cmp -s "$tmp/lrn2.r2" "$tmp/lrn2z.r2" || fail "lrn2z: iteration 2 rollouts differ from lrn2"
grep -q "checkpoint after step 2" "$tmp/lrn2z.err" "$tmp/lrn2z.out" || fail "lrn2z: no mid-iteration checkpoint"

echo "bf16_roles.sh: $fails failed"
[ "$fails" -eq 0 ]
