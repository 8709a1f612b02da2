#!/usr/bin/env bash
# srlm task: the sign puzzle's data files (sft-data counts and balance, determinism,
# prompt files, held-out eval prompts never among train prompts), the checker and the
# judge format for scripts (the RECIPES strings), eval of a model trained here with
# `srlm sft` (its accuracy equals what `srlm generate` + `srlm task check` give on the
# same held-out prompts), and usage/data errors with their exit statuses.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
expect_rc() { # expected-rc description command...
  local want=$1 what=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  [ "$rc" -eq "$want" ] || { fail "$what: exit $rc, expected $want"; tail -20 "$tmp/err" >&2; }
}
expect_err() { grep -qF -- "$1" "$tmp/err" || { fail "stderr lacks '$1':"; tail -5 "$tmp/err" >&2; }; }
expect_out() { [ "$(cat "$tmp/out")" = "$1" ] || fail "stdout '$(cat "$tmp/out")', expected '$1'"; }

if ! "$srlm" task --help >/dev/null 2>&1; then
  echo "FAIL: 'srlm task' is not available (srlm_cmd_task must be registered in src/cli/main.c)" >&2
  exit 1
fi
expect_rc 0 "help" "$srlm" task --help
grep -q "sft-data --seed S --instructions N --judge N --out FILE" "$tmp/out" || fail "help lacks sft-data"

# ---- the checker and the judge format ----
check() { # want prompt answer
  expect_rc 0 "check $2 '$3'" "$srlm" task check --prompt "$2" --answer "$3"
  expect_out "$1"
}
check correct Q6371T+15A 6+3+7-1
check correct Q6371T+15A '6+3+7-1<|endoftext|>'
check wrong Q6371T+15A 6+3+7+1
check wrong Q6371T+15A 6+3+7-2
check wrong Q6371T+15A ''
check wrong Q6371T+15A '6+3+7-1 '
check wrong Q6371T+15A 6+3+7-1+0
check correct Q5555T+10A 5-5+5+5
check correct Q1999T-26A 1-9-9-9
expect_rc 0 "judge" "$srlm" task judge --prompt Q6371T+15A --answer 6+3+7-1
expect_out $'J6371T+15A6+3+7-1S\n+09+16+155'
expect_rc 0 "judge a wrong answer" "$srlm" task judge --prompt Q6371T+15A --answer 6+3+8-1
expect_out $'J6371T+15A6+3+8-1S\n+09+17+161'
expect_rc 0 "judge a malformed answer" "$srlm" task judge --prompt Q6371T+15A --answer '6+3<|pad|>7'
expect_out $'J6371T+15A6+3Q7S\n+09+09+091'

# ---- data files ----
expect_rc 0 "sft-data" "$srlm" task sft-data --seed 5 --instructions 100 --judge 300 --out "$tmp/sft.jsonl"
cat "$tmp/err" >&2
expect_err "wrote $tmp/sft.jsonl: 100 instructions, 300 judge examples ("
expect_err "candidates: 150 correct, "
[ "$(wc -l <"$tmp/sft.jsonl")" -eq 400 ] || fail "sft.jsonl has $(wc -l <"$tmp/sft.jsonl") lines, expected 400"
n_instr=$(grep -cE '^\{"prompt": "Q[1-9]{4}T[+-][0-9]{2}A", "response": "[1-9][+-][1-9][+-][1-9][+-][1-9]"\}$' "$tmp/sft.jsonl")
n_judge=$(grep -cE '^\{"prompt": "J[1-9]{4}T[+-][0-9]{2}A[1-9][+-][1-9][+-][1-9][+-][1-9]S", "response": "([+-][0-9]{2}){3}[15]"\}$' "$tmp/sft.jsonl")
[ "$n_instr" -eq 100 ] && [ "$n_judge" -eq 300 ] || fail "line forms: $n_instr instructions, $n_judge judge examples"
n5=$(grep -cE '"response": "([+-][0-9]{2}){3}5"' "$tmp/sft.jsonl")
grep -qF "($n5 scored 5, $((300 - n5)) scored 1;" "$tmp/err" || fail "stderr counts disagree with the file's $n5 fives"
[ "$n5" -ge 150 ] && [ "$n5" -le 200 ] || fail "$n5 of 300 judge examples scored 5, expected 150 to 200"
# every instruction's response passes the checker (first 20)
head -20 "$tmp/sft.jsonl" | sed 's/^{"prompt": "\([^"]*\)", "response": "\([^"]*\)"}$/\1 \2/' >"$tmp/pairs"
while read -r q a; do
  [ "$("$srlm" task check --prompt "$q" --answer "$a")" = correct ] || fail "instruction $q $a is not correct"
done <"$tmp/pairs"
expect_rc 0 "sft-data again" "$srlm" task sft-data --seed 5 --instructions 100 --judge 300 --out "$tmp/sft2.jsonl"
cmp -s "$tmp/sft.jsonl" "$tmp/sft2.jsonl" || fail "same seed, different sft data"
expect_rc 0 "sft-data other seed" "$srlm" task sft-data --seed 6 --instructions 100 --judge 300 --out "$tmp/sft3.jsonl"
cmp -s "$tmp/sft.jsonl" "$tmp/sft3.jsonl" && fail "seeds 5 and 6 gave the same data"

expect_rc 0 "train prompts" "$srlm" task prompts --seed 5 --split train --n 3000 --out "$tmp/train.jsonl"
expect_err "wrote $tmp/train.jsonl: 3000 train prompts"
expect_rc 0 "eval prompts" "$srlm" task prompts --seed 5 --split eval --n 300 --out "$tmp/eval.jsonl"
[ "$(grep -cE '^\{"prompt": "Q[1-9]{4}T[+-][0-9]{2}A"\}$' "$tmp/train.jsonl")" -eq 3000 ] || fail "train prompt lines"
[ "$(grep -cE '^\{"prompt": "Q[1-9]{4}T[+-][0-9]{2}A"\}$' "$tmp/eval.jsonl")" -eq 300 ] || fail "eval prompt lines"
shared=$(grep -cxFf "$tmp/eval.jsonl" "$tmp/train.jsonl")
echo "eval prompts among train prompts: $shared" >&2
[ "$shared" -eq 0 ] || fail "$shared train prompts are eval prompts"
grep -o 'Q[^"]*' "$tmp/sft.jsonl" | sed 's/^/{"prompt": "/; s/$/"}/' >"$tmp/sft_prompts"
[ "$(grep -cxFf "$tmp/eval.jsonl" "$tmp/sft_prompts")" -eq 0 ] || fail "sft prompts include eval prompts"

# ---- eval of a model trained on a few examples ----
expect_rc 0 "tiny sft data" "$srlm" task sft-data --seed 3 --instructions 16 --judge 16 --out "$tmp/small.jsonl"
rm -rf "$tmp/runs"
expect_rc 0 "sft" "$srlm" sft -c configs/sft-tiny.yaml --data "$tmp/small.jsonl" run.out_dir="$tmp/runs" run.name=m \
  train.epochs=150 train.batch_size=16
model=$tmp/runs/m/model
expect_rc 0 "eval" "$srlm" task eval --model "$model" --seed 4 --n 40 --batch 7
cat "$tmp/err" >&2
grep -qE '^\{"event":"eval","split":"eval","n":40,"seed":4,"accuracy":[01]\.[0-9]{6},"judge_agreement":[01]\.[0-9]{6},' "$tmp/out" \
  || fail "eval line: $(cat "$tmp/out")"
# 16 trained prompts and 8 others of the sft split, so that the accuracy is not 0
expect_rc 0 "eval on the sft split" "$srlm" task eval --model "$model" --seed 3 --split sft --n 24 --batch 7
cat "$tmp/err" >&2
grep -qE '^\{"event":"eval","split":"sft","n":24,"seed":3,"accuracy":[01]\.[0-9]{6},"judge_agreement":[01]\.[0-9]{6},' "$tmp/out" \
  || fail "eval line: $(cat "$tmp/out")"
acc=$(sed 's/.*"accuracy":\([0-9.]*\).*/\1/' "$tmp/out")
# the same prompts through srlm generate and srlm task check
expect_rc 0 "eval prompts" "$srlm" task prompts --seed 3 --split sft --n 24 --out "$tmp/e40.jsonl"
sed 's/"prompt"/"text"/' "$tmp/e40.jsonl" >"$tmp/e40_text.jsonl"
expect_rc 0 "generate" "$srlm" generate --model "$model" --jsonl "$tmp/e40_text.jsonl" --temperature 0 \
  --max-new-tokens 12
sed 's/^.*"text": *"\([^"]*\)".*$/\1/' "$tmp/out" >"$tmp/answers"
grep -o 'Q[^"]*' "$tmp/e40.jsonl" >"$tmp/qs"
right=0
while read -r q a; do
  [ "$("$srlm" task check --prompt "$q" --answer "$a")" = correct ] && right=$((right + 1))
done < <(paste -d' ' "$tmp/qs" "$tmp/answers")
echo "eval accuracy $acc; srlm generate + srlm task check: $right of 24" >&2
[ "$right" -ge 16 ] || fail "only $right of 24 answers correct: the 16 trained ones were not learned"
awk -v a="$acc" -v r="$right" 'BEGIN { exit !(a * 24 > r - 0.01 && a * 24 < r + 0.01) }' \
  || fail "srlm task eval accuracy $acc, but $right of 24 generated answers are correct"

# ---- errors ----
expect_rc 2 "no action" "$srlm" task
expect_err "srlm task: error: an action is required"
expect_rc 2 "unknown action" "$srlm" task solve
expect_err "unknown action 'solve'"
expect_rc 2 "unknown option" "$srlm" task check --prompt Q6371T+15A --answer 1 --verbose 1
expect_err "unknown option '--verbose' for 'check'"
expect_rc 2 "missing value" "$srlm" task check --prompt
expect_err "--prompt needs a value"
expect_rc 2 "bad prompt" "$srlm" task check --prompt Q637T+15A --answer 6+3+7-1
expect_err "srlm task: error: --prompt 'Q637T+15A': sign puzzle prompt: expected 10 characters like Q6371T+15A, got 9"
expect_rc 2 "bad target" "$srlm" task judge --prompt Q6371T15xA --answer 6+3+7-1
expect_err "the target must be a sign and two digits"
expect_rc 2 "no answer" "$srlm" task check --prompt Q6371T+15A
expect_err "--answer is required"
expect_rc 2 "bad count" "$srlm" task prompts --seed 1 --split train --n 12x --out "$tmp/x.jsonl"
expect_err "--n needs a non-negative integer, got '12x'"
expect_rc 2 "negative seed" "$srlm" task prompts --seed -1 --split train --n 2 --out "$tmp/x.jsonl"
expect_rc 2 "bad split" "$srlm" task prompts --seed 1 --split test --n 2 --out "$tmp/x.jsonl"
expect_err "unknown split 'test' (train, eval, sft or judge)"
expect_rc 2 "no --out" "$srlm" task sft-data --seed 1 --instructions 2 --judge 2
expect_err "--out is required"
expect_rc 1 "zero prompts" "$srlm" task prompts --seed 1 --split train --n 0 --out "$tmp/x.jsonl"
expect_err "no prompts asked for"
expect_rc 1 "unwritable" "$srlm" task sft-data --seed 1 --instructions 2 --judge 2 --out /nonexistent/x.jsonl
expect_err "/nonexistent/x.jsonl"
[ -e "$tmp/x.jsonl" ] && fail "a failed command left $tmp/x.jsonl"
expect_rc 1 "eval without a model" "$srlm" task eval --model "$tmp/none"
expect_rc 2 "eval --n 0" "$srlm" task eval --model "$model" --n 0
expect_err "--n must be in [1, 10000000]"

echo "task.sh: $fails failed"
[ "$fails" -eq 0 ]
