#!/usr/bin/env bash
# TensorBoard events files (run.tensorboard, srlm/tfevents.h): a short `srlm train` writes
# one events.out.tfevents.* in the run folder whose tags, steps and values are exactly
# metrics.jsonl's (learn/*, eval/*, iteration/*); run.tensorboard=false writes none; a run
# killed inside an iteration's learning (after a LEARN checkpoint) and resumed leaves two
# files that still hold exactly metrics.jsonl's numbers, steps continuing (the old file is
# cut back to the checkpoint); `srlm sft` writes sft/* scalars, and a second sft into the
# same folder (metrics.jsonl rewritten) cuts the first one's events away.
# The files are read by tests/fixtures/check_tfevents.py with srlm's C reader
# (test_tfevents --dump: framing and both CRCs) or, given --tensorboard, with the
# tensorboard package's own reader (ctest fixtures.tfevents, where it is installed).
# usage: bash tensorboard.sh SRLM_BIN [--tensorboard]
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
no_leak_checks
build=${SRLM_BUILD_DIR:?}
reader=(--c-reader "$build/tests/test_tfevents")
[ "${2:-}" = "--tensorboard" ] && reader=()
check() { # RUN: the events files agree with metrics.jsonl
  python3 "$src/tests/fixtures/check_tfevents.py" "$1" "${reader[@]}" || fail "$1: events files disagree with metrics.jsonl"
}
base="$tiny_quickstart
  task.eval_prompts=16 generate.samples_per_prompt=4 judge.replay_per_verdict=8 train.batch_size=4 pairs.min_margin=0
  roles.colocate=true roles.learners=0 roles.generators=0 roles.judges=0 roles.threads=1 run.iterations=2"

# 1. a short run: one file, the expected tags, the same numbers as metrics.jsonl
"$srlm" train $base run.name=a task.prompts_per_iteration=16 >"$tmp/a.out" 2>"$tmp/a.err" \
  || { fail "train a exited non-zero"; tail -5 "$tmp/a.err" >&2; }
files=("$tmp"/runs/a/events.out.tfevents.*)
[ ${#files[@]} -eq 1 ] && [ -s "${files[0]}" ] || fail "run a: ${#files[@]} events files, want 1: ${files[*]}"
grep -q "TensorBoard: $tmp/runs/a/events.out.tfevents" "$tmp/a.err" || fail "run a: no 'TensorBoard:' line on stderr"
"$build/tests/test_tfevents" --dump "${files[0]}" >"$tmp/a.tags" || fail "run a: the C reader rejects ${files[0]}"
for tag in learn/loss learn/margin learn/reward_accuracy learn/len_chosen learn/len_rejected learn/tokens_per_s \
           eval/accuracy eval/judge_agreement iteration/mean_score iteration/loss_last iteration/pairs; do
  grep -q "^$tag	" "$tmp/a.tags" || fail "run a: no $tag scalar in the events file"
done
# eval at iterations 0..2, iteration lines at 1..2; learn steps run on across iterations (4 pairs batches each)
[ "$(grep -c '^eval/accuracy	' "$tmp/a.tags")" -eq 3 ] || fail "run a: eval/accuracy $(grep '^eval/accuracy' "$tmp/a.tags" | tr '\n' ' ')"
grep -q "^learn/loss	8	" "$tmp/a.tags" || fail "run a: no learn/loss at learner step 8: $(grep '^learn/loss' "$tmp/a.tags" | tr '\n' ' ')"
check "$tmp/runs/a"

# 2. run.tensorboard=false: no file
"$srlm" train $base run.name=off task.prompts_per_iteration=16 run.tensorboard=false >/dev/null 2>"$tmp/off.err" \
  || fail "train off exited non-zero"
ls "$tmp/runs/off" | grep -q tfevents && fail "run.tensorboard=false wrote $(ls "$tmp/runs/off" | grep tfevents)"

# 3. killed inside iteration 1's learning, after a LEARN checkpoint and some logged steps
# beyond it (which the resume cuts from metrics.jsonl and so must cut from the events file);
# a kill that lands right on a checkpoint tests nothing: then again (3 tries)
big="task.prompts_per_iteration=240 roles.shard_prompts=8 train.checkpoint_every=20 train.log_every=1"
for try in 1 2 3; do
  rm -rf "$tmp/runs/r"
  "$srlm" train $base $big run.name=r >"$tmp/r.out" 2>"$tmp/r.err" &
  pid=$!
  for _ in $(seq 1 1200); do
    grep -q "iteration 1 learn: step 23/" "$tmp/r.err" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
  done
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  ck=$(grep -o "learn: checkpoint after step [0-9]*" "$tmp/r.err" | tail -1 | grep -o "[0-9]*$")
  last=$(grep -o "iteration [0-9]* learn: step [0-9]*" "$tmp/r.err" | tail -1 | grep -o "[0-9]*$")
  [ -n "$ck" ] && [ -n "$last" ] && [ "$last" -gt "$ck" ] && break
  echo "note: try $try: killed at step ${last:-?}, last checkpoint ${ck:-none}: again"
done
grep -q "run .* done in" "$tmp/r.err" && fail "run r finished before the kill: the resume is not tested"
[ -n "$ck" ] && [ "${last:-0}" -gt "$ck" ] || fail "run r: no kill between a checkpoint and a later logged step"
"$srlm" train $base $big run.name=r --resume >"$tmp/r2.out" 2>"$tmp/r2.err" \
  || { fail "the resume of run r exited non-zero"; tail -5 "$tmp/r2.err" >&2; }
grep -q "earlier events files are cut back" "$tmp/r2.err" || fail "run r: the resume did not cut the events files back"
n=$(ls "$tmp/runs/r" | grep -c tfevents)
[ "$n" -eq 2 ] || fail "run r: $n events files after one resume, want 2"
check "$tmp/runs/r"

# 4. srlm sft: sft/* scalars at each logged step
"$srlm" task sft-data --seed 3 --instructions 40 --judge 0 --out "$tmp/sft.jsonl" 2>/dev/null || fail "task sft-data"
"$srlm" sft -c configs/sft-tiny.yaml run.out_dir="$tmp/runs" run.name=sft data.sft="$tmp/sft.jsonl" train.epochs=2 \
  train.log_every=1 >/dev/null 2>"$tmp/sft.err" || { fail "sft exited non-zero"; tail -5 "$tmp/sft.err" >&2; }
f=$(ls "$tmp"/runs/sft/events.out.tfevents.* 2>/dev/null | head -1)
[ -n "$f" ] && "$build/tests/test_tfevents" --dump "$f" | grep -q "^sft/loss	1	" || fail "sft: no sft/loss at step 1 in '$f'"
check "$tmp/runs/sft"
# a second sft into the same folder rewrites metrics.jsonl: the first run's events are cut away
"$srlm" sft -c configs/sft-tiny.yaml run.out_dir="$tmp/runs" run.name=sft data.sft="$tmp/sft.jsonl" train.epochs=1 \
  train.log_every=1 >/dev/null 2>"$tmp/sft2.err" || fail "second sft exited non-zero"
check "$tmp/runs/sft"

[ $fails -eq 0 ] && echo "tensorboard: all checks passed" || echo "tensorboard: $fails failures"
[ $fails -eq 0 ]
