#!/usr/bin/env bash
# No silent hang (issue 12, item 6): a rank that stops answering (SIGSTOP, like a frozen
# node) ends the job after run.rank_timeout seconds, naming the late rank, its role and its
# last phase, instead of hanging forever (before: every other rank waited for it without
# end). Busy ranks are not late: a full run with a short timeout finishes (exit 0).
set -u
. "$(dirname "$0")/lib/check.sh"
need_mpirun
cli_setup "$1"
mpi_env
no_leak_checks
base="$tiny_quickstart
  run.iterations=3 task.prompts_per_iteration=480 task.eval_prompts=64 generate.samples_per_prompt=4
  judge.replay_per_verdict=16 train.batch_size=4 train.lr=1e-3 pairs.min_margin=0 roles.shard_prompts=8
  roles.threads=1 roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=1"
rank_pid() {
  local p
  for p in $(pgrep -P "$1"); do
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$p"
  done
}

# a full run with a short timeout: busy ranks keep beating
timeout 120 mpirun --oversubscribe -np 3 "$srlm" train $base run.name=ok run.rank_timeout=4 >/dev/null 2>"$tmp/ok.err" \
  || fail "a run with run.rank_timeout=4 failed: $(grep -m1 'answered' "$tmp/ok.err")"

# SIGSTOP one rank once iteration 1's model is saved: the job ends naming it
for case in "2 judge" "0 learner"; do
  set -- $case
  r=$1 role=$2
  name=stop$r
  t0=$(date +%s)
  setsid timeout -s KILL 90 mpirun --oversubscribe -np 3 "$srlm" train $base run.name=$name run.rank_timeout=5 \
    >/dev/null 2>"$tmp/$name.err" &
  pid=$!
  for _ in $(seq 1 6000); do [ -e "$tmp/runs/$name/iter_1/model/model.safetensors" ] && break; sleep 0.02; done
  mp=$(pgrep -P $pid -x mpirun)
  victim=$(rank_pid "$mp" "$r")
  kill -STOP "$victim"
  wait $pid
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  kill -KILL "$victim" 2>/dev/null
  [ $rc -ne 0 ] && [ $rc -ne 137 ] || fail "$name: exit $rc (137: it hung until the test's 90 s limit)"
  grep -q "srlm: rank $r ($role) has not answered for [0-9]* s (run.rank_timeout: 5 s; its last phase: [a-z]" "$tmp/$name.err" \
    || fail "$name: no message naming rank $r ($role): $(grep -m1 -i 'answered\|abort' "$tmp/$name.err")"
  echo "$name: exit $rc after $secs s: $(grep -o 'rank [0-9] ([a-z]*) has not answered.*phase: [^)]*' "$tmp/$name.err" | head -1)"
done

echo "watchdog.sh: $fails failed"
[ "$fails" -eq 0 ]
