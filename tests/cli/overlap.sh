#!/usr/bin/env bash
# The gradient reduce overlapped with the backward (train.overlap_reduce, issue 10 item 4)
# over MPI: 2 and 4 learners (+ a generator + a judge), grad_accum 1, 2 and 8 (8: several
# micro-batches per learner, only the last one's backward starts buckets), with and without
# ZeRO-1. Each run with the overlap on, in buckets of 2 KiB (a tiny model's gradient cut in
# dozens of buckets, more than are in flight at once), must end with final weights and
# metrics bit-identical to the same run with the reduce after the backward (overlap off).
set -u
. "$(dirname "$0")/lib/check.sh"
need_mpirun
cli_setup "$1"
mpi_env
no_leak_checks
base="$tiny_quickstart
  run.iterations=2 task.prompts_per_iteration=24 task.eval_prompts=16 generate.samples_per_prompt=4
  judge.replay_per_verdict=8 train.lr=1e-3 pairs.min_margin=0 roles.shard_prompts=4 roles.threads=1
  roles.colocate=false roles.generators=1 roles.judges=1"
run() { # NAME LEARNERS OVERRIDES...
  local name=$1 learners=$2; shift 2
  local t0=$(date +%s%N)
  timeout 300 mpirun --oversubscribe -np $((learners + 2)) "$srlm" train $base run.name="$name" \
    roles.learners="$learners" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  local rc=$?
  echo "$name: exit $rc in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  [ $rc -eq 0 ] || { fail "$name exited $rc"; tail -5 "$tmp/$name.err" >&2; }
}

for L in 2 4; do
  for acc in 1 2 8; do
    batch=$([ "$acc" = 8 ] && echo 2 || echo 8)
    for z in 0 1; do
      name="l${L}a${acc}z${z}"
      run "${name}off" "$L" train.batch_size="$batch" train.grad_accum="$acc" train.zero="$z" train.overlap_reduce=false
      run "${name}on" "$L" train.batch_size="$batch" train.grad_accum="$acc" train.zero="$z" train.overlap_reduce=true \
        train.reduce_bucket_mb=0.002
      same_run "$tmp/runs" 2 "${name}off" "${name}on"
    done
  done
done

echo "overlap.sh: $fails failed"
[ "$fails" -eq 0 ]
