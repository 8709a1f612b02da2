#!/usr/bin/env bash
# srlm sft: a tiny model built from configs/sft-tiny.yaml memorizes 16 solved sign
# puzzles (tests/fixtures/sft/sign_puzzle.jsonl) in seconds: the loss ends far below
# where it started, the run folder holds config.yaml, metrics.jsonl, summary.json and a
# model that `srlm info` opens and that greedily answers the training prompts with the
# trained answers; the same seed gives the same weights for any thread count; usage and
# data errors.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
expect_rc() { # expected-rc description command...
  local want=$1 what=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  [ "$rc" -eq "$want" ] || { fail "$what: exit $rc, expected $want"; tail -20 "$tmp/err" >&2; }
}
expect_err() { grep -qF -- "$1" "$tmp/err" || { fail "stderr lacks '$1':"; tail -5 "$tmp/err" >&2; }; }
# json_num FILE KEY: the number of "KEY": in a pretty-printed JSON file
json_num() { sed -n "s/^ *\"$2\": *\([-0-9.eE+]*\),\{0,1\}$/\1/p" "$1" | head -1; }

data=tests/fixtures/sft/sign_puzzle.jsonl
expect_rc 0 "sft on the sign puzzles" "$srlm" sft -c configs/sft-tiny.yaml --data "$data" \
  run.out_dir="$tmp/runs" run.name=a
grep -E '\[srlm\] (step|sft done)' "$tmp/err" >&2
run=$tmp/runs/a
for f in config.yaml metrics.jsonl summary.json model/config.json model/model.safetensors \
         model/tokenizer.json model/tokenizer_config.json; do
  [ -s "$run/$f" ] || fail "missing $run/$f"
done
ls "$run" "$run/model" | grep -q '\.tmp\.' && fail "temporary files left in $run"
expect_err "step 1/100 epoch 1/100 loss"
expect_err "tok/s"
expect_err " eta "

first=$(json_num "$run/summary.json" first_loss)
last=$(json_num "$run/summary.json" last_epoch_loss)
tps=$(json_num "$run/summary.json" tokens_per_second)
echo "loss: first step $first, last epoch $last; $tps tokens/s" >&2
# ln(19) = 2.94 at the start; memorizing the answers takes it near 0. 0.1 leaves room for
# the last steps' noise while a model that only learned the answer format (about 1.0:
# the digits are copied, the signs guessed) fails.
awk -v f="$first" -v l="$last" 'BEGIN { exit !(f > 2.5 && l < 0.1) }' \
  || fail "loss did not fall from about ln(19) = 2.94 to below 0.1: first $first, last epoch $last"
[ "$(json_num "$run/summary.json" steps)" = 100 ] || fail "expected 100 steps: $(cat "$run/summary.json")"
[ "$(json_num "$run/summary.json" steps_skipped)" = 0 ] || fail "steps were skipped"
n_metrics=$(grep -c '"loss"' "$run/metrics.jsonl")
[ "$n_metrics" -eq 11 ] || fail "metrics.jsonl has $n_metrics lines, expected 11 (steps 1, 10, ..., 100)"
tail -1 "$run/metrics.jsonl" | grep -q '"step":100,' || fail "last metrics line is not step 100"

expect_rc 0 "info on the trained model" "$srlm" info --model "$run/model"

# greedy answers of the saved model to the training prompts
sed 's/^{"prompt": \("[^"]*"\), "response": "[^"]*"}$/{"text": \1}/' "$data" >"$tmp/prompts.jsonl"
sed 's/^.*"response": "\([^"]*\)"}$/\1/' "$data" >"$tmp/answers.txt"
expect_rc 0 "greedy generation" "$srlm" generate --model "$run/model" --jsonl "$tmp/prompts.jsonl" \
  --temperature 0 --max-new-tokens 10
sed 's/^.*"text": *"\([^"]*\)".*$/\1/; s/<|endoftext|>$//' "$tmp/out" >"$tmp/got.txt"
right=$(paste -d' ' "$tmp/answers.txt" "$tmp/got.txt" | awk '$1 == $2' | wc -l)
echo "greedy answers: $right of 16 equal the trained ones" >&2
if [ "$right" -ne 16 ]; then
  fail "only $right of 16 trained answers reproduced (trained, generated):"
  paste "$tmp/answers.txt" "$tmp/got.txt" >&2
fi

# the same seed gives the same weights, with any thread count
expect_rc 0 "second run" env OMP_NUM_THREADS=1 "$srlm" sft -c configs/sft-tiny.yaml --data "$data" \
  run.out_dir="$tmp/runs" run.name=b train.epochs=5
expect_rc 0 "third run" env OMP_NUM_THREADS=3 "$srlm" sft -c configs/sft-tiny.yaml --data "$data" \
  run.out_dir="$tmp/runs" run.name=c train.epochs=5
cmp -s "$tmp/runs/b/model/model.safetensors" "$tmp/runs/c/model/model.safetensors" \
  || fail "same seed gave different weights with 1 and 3 threads"

# usage and config errors: exit 2
expect_rc 2 "no data" "$srlm" sft -c configs/sft-tiny.yaml data.sft=
expect_err "srlm sft: error: data.sft: no SFT examples: set data.sft or pass --data FILE"
expect_rc 2 "no -c" "$srlm" sft --data "$data"
expect_err "-c CONFIG is required"
expect_rc 2 "bad train.overflow" "$srlm" sft -c configs/sft-tiny.yaml --data "$data" train.overflow=cut
expect_err "train.overflow"
expect_rc 2 "bad override" "$srlm" sft -c configs/sft-tiny.yaml --data "$data" train.lr=abc
expect_err "train.lr: expected a float"
expect_rc 2 "min_lr above lr" "$srlm" sft -c configs/sft-tiny.yaml --data "$data" run.out_dir="$tmp/runs" \
  run.name=e train.min_lr=0.1
expect_err "train.min_lr"

# data errors: FILE:LINE, exit 1; skipped and counted with data.skip_bad_lines
printf '%s\n' '{"prompt":"Q1234T+10A","response":"1+2+3+4"}' '{"prompt":"Q1234T+10A"}' '{"prompt":"Qx","response":"1"}' \
  >"$tmp/bad.jsonl"
expect_rc 1 "bad data line" "$srlm" sft -c configs/sft-tiny.yaml --data "$tmp/bad.jsonl" run.out_dir="$tmp/runs" \
  run.name=f
expect_err "$tmp/bad.jsonl:2: expected \"messages\", or \"prompt\" and \"response\""
expect_rc 0 "skip bad lines" "$srlm" sft -c configs/sft-tiny.yaml --data "$tmp/bad.jsonl" run.out_dir="$tmp/runs" \
  run.name=g data.skip_bad_lines=true train.epochs=2
[ "$(json_num "$tmp/runs/g/summary.json" lines_skipped)" = 2 ] \
  || fail "expected 2 skipped lines: $(cat "$tmp/runs/g/summary.json")"
[ "$(json_num "$tmp/runs/g/summary.json" examples)" = 1 ] || fail "expected 1 example"
# too long: truncated by default, dropped with --overflow drop
expect_rc 0 "truncate" "$srlm" sft -c configs/sft-tiny.yaml --data "$data" run.out_dir="$tmp/runs" run.name=h \
  train.epochs=1 train.max_seq_len=12
[ "$(json_num "$tmp/runs/h/summary.json" examples_truncated)" = 16 ] || fail "expected 16 truncated examples"
expect_rc 1 "drop all" "$srlm" sft -c configs/sft-tiny.yaml --data "$data" run.out_dir="$tmp/runs" run.name=i \
  train.epochs=1 train.max_seq_len=12 train.overflow=drop
expect_err "no usable examples (16 lines: 0 malformed, 16 too long, 0 without a target token)"
expect_rc 1 "chat lines without a chat format" "$srlm" sft -c configs/sft-tiny.yaml \
  --data <(echo '{"messages":[{"role":"user","content":"Q1"}]}') run.out_dir="$tmp/runs" run.name=j
expect_err ":1: \"messages\" needs a chat format"
expect_rc 1 "missing data file" "$srlm" sft -c configs/sft-tiny.yaml --data /nonexistent.jsonl \
  run.out_dir="$tmp/runs" run.name=k
expect_err "/nonexistent.jsonl: cannot open"

echo "sft.sh: $fails failed"
[ "$fails" -eq 0 ]
