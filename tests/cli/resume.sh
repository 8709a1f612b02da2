#!/usr/bin/env bash
# srlm train --resume (issue 4): a run killed at any point and resumed finishes with
# weights bit-identical to an uninterrupted run of the same layout, and the same
# metrics.jsonl (timing fields aside). Kills: SIGKILL at fractions of the reference run's
# time (wherever they land: generation, judging, learning, evaluation, saving), one right
# after the first learning checkpoint (train.checkpoint_every: weights + AdamW moments +
# replay cursor), a kill of a resumed run, and a 3-rank job (mpirun, separate roles)
# killed mid-run (mpirun and every rank). Then the errors: a resume with a different config.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
mpi_env
no_leak_checks
base="$tiny_quickstart
  run.iterations=3 task.prompts_per_iteration=480 task.eval_prompts=64 generate.samples_per_prompt=4
  judge.replay_per_verdict=16 train.batch_size=4 train.lr=1e-3 pairs.min_margin=0 roles.shard_prompts=8
  roles.threads=1 train.checkpoint_every=5"

# same NAME1 NAME2: bit-identical final weights and equal metrics (timing fields aside)
same() {
  same_run "$tmp/runs" 3 "$1" "$2"
}

t0=$(date +%s%N)
"$srlm" train $base run.name=ref >/dev/null 2>"$tmp/ref.err" || { fail "reference run"; tail -3 "$tmp/ref.err" >&2; }
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "reference run: $ms ms"
grep -q "learn: checkpoint after step 5/" "$tmp/ref.err" || fail "no learning checkpoint in the reference run"

# SIGKILL at 15%, 35%, 55%, 75%, 95% of the reference time, then --resume (SRLM_TEST_QUICK,
# the sanitizer stage of tests/run.sh: 35% and 75% only, and no second kill of a resumed
# run; the Release stage runs them all)
pcts="15 35 55 75 95"
[ -z "${SRLM_TEST_QUICK:-}" ] || pcts="35 75"
for pct in $pcts; do
  name=k$pct
  s=$(awk -v ms="$ms" -v p="$pct" 'BEGIN { printf "%.3f", ms * p / 100000 }')
  timeout -s KILL "$s" "$srlm" train $base run.name=$name >/dev/null 2>&1
  "$srlm" train $base run.name=$name --resume >/dev/null 2>"$tmp/$name.err" || { fail "$name: resume"; tail -3 "$tmp/$name.err" >&2; }
  echo "$name (killed at $s s): $(grep -o 'resuming .*' "$tmp/$name.err" | cut -d: -f2 | head -1)"
  same ref $name
done

# kill right after the first learning checkpoint: the resume continues inside the iteration
SRLM_STOP_AT_CHECKPOINT=any "$srlm" train $base run.name=lk >/dev/null 2>"$tmp/lk.err" & # stops itself there
pid=$!
wait_line "$tmp/lk.err" "learn: checkpoint after step" "$pid" || fail "no learning checkpoint line in $tmp/lk.err"
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
"$srlm" train $base run.name=lk --resume >/dev/null 2>"$tmp/lk2.err" || { fail "lk: resume"; tail -3 "$tmp/lk2.err" >&2; }
grep -q "inside an iteration's learning" "$tmp/lk2.err" || fail "lk: did not resume inside the learning: $(grep resuming "$tmp/lk2.err")"
same ref lk

# a resumed run killed again, resumed again
if [ -z "${SRLM_TEST_QUICK:-}" ]; then
s=$(awk -v ms="$ms" 'BEGIN { printf "%.3f", ms * 0.3 / 1000 }')
timeout -s KILL "$s" "$srlm" train $base run.name=kk >/dev/null 2>&1
timeout -s KILL "$s" "$srlm" train $base run.name=kk --resume >/dev/null 2>&1
"$srlm" train $base run.name=kk --resume >/dev/null 2>"$tmp/kk.err" || fail "kk: second resume"
same ref kk
fi

# --resume without a checkpoint starts from the beginning; after the end it only reports
"$srlm" train $base run.name=fresh --resume >/dev/null 2>"$tmp/fresh.err" || fail "fresh --resume"
grep -q "no checkpoint in .* yet: starting from the beginning" "$tmp/fresh.err" || fail "fresh: no start message"
same ref fresh
"$srlm" train $base run.name=fresh --resume >"$tmp/again.out" 2>"$tmp/again.err" || fail "resume of a finished run"
grep -q '^iter 3 ' "$tmp/again.out" || fail "resume of a finished run: no table"
same ref fresh

# a different config on resume: exit 2, naming the line
"$srlm" train $base run.name=ref train.lr=2e-3 --resume >/dev/null 2>"$tmp/cfg.err"
rc=$?
[ $rc -eq 2 ] || fail "resume with another config: exit $rc, want 2"
grep -q "the config differs from the checkpoint's in 1 key that change.*: train.lr (checkpoint 0.001, now 0.002)" "$tmp/cfg.err" \
  || fail "config mismatch message: $(tail -1 "$tmp/cfg.err")"

# 3 ranks, separate roles: reference, then a job stopped mid-run (SIGTERM to mpirun) and resumed
if command -v mpirun >/dev/null 2>&1; then
  sep="roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=1"
  t0=$(date +%s%N)
  timeout 120 mpirun --oversubscribe -np 3 "$srlm" train $base $sep run.name=mref >/dev/null 2>"$tmp/mref.err" \
    || fail "3-rank reference"
  s=$(awk -v ns="$(( $(date +%s%N) - t0 ))" 'BEGIN { printf "%.3f", ns * 0.6 / 1e9 }')
  # the whole job dies at once (mpirun and its ranks: its own process group), like a lost node
  setsid mpirun --oversubscribe -np 3 "$srlm" train $base $sep run.name=mk >/dev/null 2>&1 &
  pid=$!
  sleep "$s"
  kill -9 -- -"$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  timeout 120 mpirun --oversubscribe -np 3 "$srlm" train $base $sep run.name=mk --resume >/dev/null 2>"$tmp/mk.err" \
    || { fail "3-rank resume"; tail -3 "$tmp/mk.err" >&2; }
  echo "mk (stopped at $s s): $(grep -o 'resuming .*' "$tmp/mk.err" | cut -d: -f2 | head -1)"
  same mref mk
  same ref mref # one learner: the layout does not change the result
fi

echo "resume.sh: $fails failed"
[ "$fails" -eq 0 ]
