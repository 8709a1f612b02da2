#!/usr/bin/env bash
# ZeRO-1 (train.zero=1, issue 10) over MPI: 2 learners + a generator + a judge.
#   - the sharded run's final weights and metrics equal the unsharded 2-learner run's, bit for
#     bit (the gradient norm is chained along the learners in rank order);
#   - killed right after a learning checkpoint (the moments gathered from both learners)
#     and resumed (each learner takes its shard back), it finishes with the same bits.
# (tests/cli/layouts.sh also compares 2 and 4 learners with and without ZeRO-1.)
set -u
. "$(dirname "$0")/lib/check.sh"
need_mpirun
cli_setup "$1"
mpi_env
no_leak_checks
base="$tiny_quickstart
  run.iterations=2 task.prompts_per_iteration=240 task.eval_prompts=32 generate.samples_per_prompt=4
  judge.replay_per_verdict=8 train.batch_size=4 train.lr=1e-3 pairs.min_margin=0 roles.shard_prompts=8
  roles.threads=1 train.checkpoint_every=3 roles.colocate=false roles.learners=2 roles.generators=1 roles.judges=1"
run() { # NAME OVERRIDES...
  local name=$1; shift
  local t0=$(date +%s%N)
  timeout 300 mpirun --oversubscribe -np 4 "$srlm" train $base run.name="$name" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  local rc=$?
  echo "$name: exit $rc in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  [ $rc -eq 0 ] || { fail "$name exited $rc"; tail -5 "$tmp/$name.err" >&2; }
}
# same NAME1 NAME2: bit-identical final weights and equal metrics (timing fields aside)
same() {
  same_run "$tmp/runs" 2 "$1" "$2"
}

run plain
run zref train.zero=1
grep -q "learn: checkpoint after step 3/" "$tmp/zref.err" || fail "zref: no learning checkpoint"
same plain zref

SRLM_STOP_AT_CHECKPOINT=any setsid mpirun --oversubscribe -np 4 "$srlm" train $base run.name=zk train.zero=1 >/dev/null 2>"$tmp/zk.err" &
pid=$!
wait_line "$tmp/zk.err" "learn: checkpoint after step" "$pid" || fail "no learning checkpoint line in $tmp/zk.err"
kill -9 -- -"$pid" 2>/dev/null
wait "$pid" 2>/dev/null
run zk train.zero=1 --resume
grep -q "inside an iteration's learning" "$tmp/zk.err" || fail "zk: did not resume inside the learning: $(grep resuming "$tmp/zk.err")"
same zref zk

echo "zero.sh: $fails failed"
[ "$fails" -eq 0 ]
