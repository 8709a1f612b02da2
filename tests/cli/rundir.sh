#!/usr/bin/env bash
# The run folder is never lost or mixed (issue 12, item 5). Each case lost data before (exit
# 0 with spliced metrics, mixed iter_* folders, temp files piling up, or a run that could
# not be extended):
#   - a second job, or a --resume, while a job runs on the folder: refused naming the
#     holder's host and pid (RUN_DIR/.lock, an fcntl lock); the first job's files stay
#     whole; once the holder is killed (SIGKILL) the lock is gone and a new job takes it;
#   - srlm train without --resume on a folder that holds a run: exit 2 naming --resume and
#     --overwrite, nothing touched; --overwrite clears srlm's files (no old iter_* left),
#     other files stay;
#   - *.tmp.<pid> files of killed writers: removed at start and on resume;
#   - --resume with run.iterations, the layout, threads and log level changed: allowed (the
#     extended run equals a run made that long at once); other keys: exit 2 naming each.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
mpi_env
no_leak_checks
base="$tiny_quickstart
  task.prompts_per_iteration=240 task.eval_prompts=32 generate.samples_per_prompt=4
  judge.replay_per_verdict=16 train.batch_size=4 train.lr=1e-3 pairs.min_margin=0 roles.shard_prompts=8
  roles.threads=1 train.checkpoint_every=5"
# rc NAME WANT ACTUAL
rc_is() { [ "$3" -eq "$2" ] || fail "$1: exit $3, want $2"; }
metrics_ok() { # every line of metrics.jsonl is one JSON object
  python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$1" 2>/dev/null || fail "$1: not whole JSON lines"
}

# ---- the lock: a second job and a --resume while the first runs
"$srlm" train $base run.name=a run.iterations=20 >"$tmp/a.out" 2>"$tmp/a.err" &
pid=$!
for _ in $(seq 1 500); do grep -q "iteration 1 learn: step" "$tmp/a.err" 2>/dev/null && break; sleep 0.02; done
host=$(hostname)
grep -q "^host $host pid $pid\$" "$tmp/runs/a/.lock" || fail "the lock file does not name host $host pid $pid: $(cat "$tmp/runs/a/.lock")"
# hold the first job still (its lock stays held) so that it cannot finish while the second
# jobs try the folder: on a fast machine 20 tiny iterations end within seconds
kill -STOP $pid
"$srlm" train $base run.name=a run.iterations=20 >/dev/null 2>"$tmp/a2.err"
rc=$?
rc_is "second job" 1 $rc
grep -q "run folder is in use by another srlm job (host $host, pid $pid, " "$tmp/a2.err" \
  || fail "second job: $(tail -1 "$tmp/a2.err")"
"$srlm" train $base run.name=a run.iterations=20 --resume >/dev/null 2>"$tmp/a3.err"
rc_is "--resume while running" 1 $?
grep -q "in use by another srlm job (host $host, pid $pid" "$tmp/a3.err" || fail "--resume while running: $(tail -1 "$tmp/a3.err")"
if command -v mpirun >/dev/null 2>&1; then # a second job of 3 ranks: every rank stops, exit 1
  timeout 60 mpirun --oversubscribe -np 3 "$srlm" train $base run.name=a run.iterations=20 roles.colocate=false \
    roles.learners=1 roles.generators=1 roles.judges=1 >/dev/null 2>"$tmp/a4.err"
  rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "3-rank second job: exit $rc"
  grep -q "in use by another srlm job (host $host, pid $pid" "$tmp/a4.err" || fail "3-rank second job: $(tail -1 "$tmp/a4.err")"
fi
# the holder dies: the kernel drops its lock; the folder is free again (a --dry-run sees no
# holder, a new job takes the lock)
kill -9 $pid
wait $pid 2>/dev/null
metrics_ok "$tmp/runs/a/metrics.jsonl"
"$srlm" train $base run.name=a run.iterations=20 --resume --dry-run >"$tmp/a5.out" 2>"$tmp/a5.err" \
  || fail "--resume --dry-run after the holder was killed: $(tail -1 "$tmp/a5.err")"
grep -q "IN USE" "$tmp/a5.out" && fail "the lock of a killed holder is still held"
timeout 300 "$srlm" train $base run.name=a run.iterations=1 --overwrite >/dev/null 2>"$tmp/a6.err" \
  || fail "a new job after the holder was killed: $(tail -1 "$tmp/a6.err")"
metrics_ok "$tmp/runs/a/metrics.jsonl"

# ---- a new run over an existing one: refused; --overwrite clears srlm's files only
"$srlm" train $base run.name=b run.iterations=2 >/dev/null 2>"$tmp/b.err" || fail "run b: $(tail -1 "$tmp/b.err")"
echo "my notes" >"$tmp/runs/b/notes.txt"
sum=$(cat "$tmp/runs/b/metrics.jsonl" "$tmp/runs/b/checkpoint.h5" | md5sum)
"$srlm" train $base run.name=b run.iterations=1 >/dev/null 2>"$tmp/b2.err"
rc_is "new run over an existing one" 2 $?
grep -q "already holds a run .*continue it with --resume, start it again with --overwrite" "$tmp/b2.err" \
  || fail "new run over an existing one: $(tail -1 "$tmp/b2.err")"
[ "$(cat "$tmp/runs/b/metrics.jsonl" "$tmp/runs/b/checkpoint.h5" | md5sum)" = "$sum" ] || fail "the refused run changed files"
"$srlm" train $base run.name=b run.iterations=1 --overwrite --resume >/dev/null 2>"$tmp/b3.err"
rc_is "--overwrite --resume" 2 $?
"$srlm" train $base run.name=b run.iterations=1 --overwrite >/dev/null 2>"$tmp/b4.err" || fail "--overwrite: $(tail -1 "$tmp/b4.err")"
grep -q -- "--overwrite: removed [0-9]* of srlm's files and folders" "$tmp/b4.err" || fail "--overwrite: no message"
[ -d "$tmp/runs/b/iter_2" ] && fail "--overwrite left the old run's iter_2"
[ -f "$tmp/runs/b/notes.txt" ] || fail "--overwrite removed a file that is not srlm's"
[ "$(grep -c '"event":"iteration"' "$tmp/runs/b/metrics.jsonl")" = 1 ] || fail "--overwrite: metrics.jsonl is not the new run's"

# ---- stale temporary files: removed at start and on resume
head -c 100000 /dev/zero >"$tmp/runs/b/checkpoint.h5.tmp.999999"
head -c 1000 /dev/zero >"$tmp/runs/b/iter_1/model/model.safetensors.tmp.12345"
touch "$tmp/runs/b/keep.tmp.txt"
"$srlm" train $base run.name=b run.iterations=1 --resume >/dev/null 2>"$tmp/b5.err" || fail "resume b: $(tail -1 "$tmp/b5.err")"
grep -q "removed 2 stale temporary files" "$tmp/b5.err" || fail "stale temp files: $(grep -i "temporary" "$tmp/b5.err")"
[ -e "$tmp/runs/b/checkpoint.h5.tmp.999999" ] && fail "checkpoint.h5.tmp.999999 is still there"
[ -e "$tmp/runs/b/iter_1/model/model.safetensors.tmp.12345" ] && fail "model.safetensors.tmp.12345 is still there"
[ -e "$tmp/runs/b/keep.tmp.txt" ] || fail "keep.tmp.txt (not a temp name) was removed"

# ---- --resume with safe differences: extend a finished run, change layout, threads, log level
"$srlm" train $base run.name=r3 run.iterations=3 >/dev/null 2>"$tmp/r3.err" || fail "3-iteration reference"
"$srlm" train $base run.name=r2 run.iterations=2 >/dev/null 2>"$tmp/r2.err" || fail "2-iteration run"
"$srlm" train $base run.name=r2 run.iterations=3 roles.threads=2 run.log_level=warn --resume >/dev/null \
  2>"$tmp/r2b.err" || fail "extending run.iterations: $(tail -1 "$tmp/r2b.err")"
cmp -s "$tmp/runs/r3/iter_3/model/model.safetensors" "$tmp/runs/r2/iter_3/model/model.safetensors" \
  || fail "a run extended from 2 to 3 iterations differs from a 3-iteration run"
if command -v mpirun >/dev/null 2>&1; then # and on 3 ranks of separate roles
  "$srlm" train $base run.name=r2m run.iterations=2 >/dev/null 2>&1 || fail "2-iteration run (r2m)"
  timeout 120 mpirun --oversubscribe -np 3 "$srlm" train $base run.name=r2m run.iterations=3 roles.colocate=false \
    roles.learners=1 roles.generators=1 roles.judges=1 --resume >/dev/null 2>"$tmp/r2m.err" \
    || fail "resume on another layout: $(tail -1 "$tmp/r2m.err")"
  cmp -s "$tmp/runs/r3/iter_3/model/model.safetensors" "$tmp/runs/r2m/iter_3/model/model.safetensors" \
    || fail "a run resumed on 3 ranks differs from a 3-iteration run on one"
fi
"$srlm" train $base run.name=r3 run.iterations=3 train.lr=2e-3 generate.temperature=0.5 --resume >/dev/null 2>"$tmp/r3b.err"
rc_is "resume with other train.lr and generate.temperature" 2 $?
grep -q "differs from the checkpoint's in 2 keys that change the results: generate.temperature (checkpoint 1.0, now 0.5), train.lr (checkpoint 0.001, now 0.002)" "$tmp/r3b.err" \
  || fail "resume with other keys: $(tail -1 "$tmp/r3b.err")"

echo "rundir.sh: $fails failed"
[ "$fails" -eq 0 ]
