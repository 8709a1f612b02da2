#!/usr/bin/env bash
# ARGS reward-guided decoding (issue 11 item 9). A tiny random model trained one iteration
# on the sign puzzle gives M (and M0, its start). srlm generate --args-*: weight 0 is greedy
# decoding, the implicit reward against the model itself changes nothing and against M0
# changes the answers, sampled ARGS does not depend on --max-batch, the judge reward runs
# on sign-puzzle prompts; usage errors. Then ARGS as the generators' decoding in srlm
# train (implicit, judge on both built-in tasks) and its config errors.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
no_leak_checks
base="$tiny_quickstart
  run.iterations=1 task.prompts_per_iteration=32 task.eval_prompts=16 generate.samples_per_prompt=4
  judge.replay_per_verdict=16 train.batch_size=4 train.lr=3e-3 pairs.min_margin=0 roles.shard_prompts=8
  roles.threads=1"
"$srlm" train $base run.name=ref >/dev/null 2>"$tmp/ref.err" || { fail "training M"; tail -3 "$tmp/ref.err" >&2; }
M=$tmp/runs/ref/iter_1/model
M0=$tmp/runs/ref/iter_0/model
"$srlm" task prompts --seed 5 --split eval --n 6 --out "$tmp/p.jsonl" 2>/dev/null || fail "task prompts"
sed 's/"prompt"/"text"/' "$tmp/p.jsonl" >"$tmp/t.jsonl"
gen() { # NAME OPTIONS...: ids of every line into $tmp/NAME.ids
  local name=$1; shift
  "$srlm" generate --model "$M" --jsonl "$tmp/t.jsonl" --max-new-tokens 10 "$@" >"$tmp/$name.jsonl" 2>"$tmp/$name.gerr" ||
    { fail "generate $name: $(tail -1 "$tmp/$name.gerr")"; return; }
  python3 -c 'import json,sys; [print(json.loads(l)["ids"]) for l in open(sys.argv[1])]' "$tmp/$name.jsonl" >"$tmp/$name.ids"
}
gen greedy --temperature 0
gen w0 --temperature 0 --args-reward implicit --args-reference "$M0" --args-weight 0
gen self --temperature 0 --args-reward implicit --args-reference "$M" --args-weight 5
gen m0 --temperature 0 --args-reward implicit --args-reference "$M0" --args-weight 5
cmp -s "$tmp/greedy.ids" "$tmp/w0.ids" || fail "ARGS weight 0 differs from greedy decoding"
cmp -s "$tmp/greedy.ids" "$tmp/self.ids" || fail "ARGS implicit against the model itself differs from greedy decoding"
cmp -s "$tmp/greedy.ids" "$tmp/m0.ids" && fail "ARGS implicit against M0 (weight 5) changed nothing"
gen s8 --seed 3 --args-reward implicit --args-reference "$M0" --max-batch 8
gen s1 --seed 3 --args-reward implicit --args-reference "$M0" --max-batch 1
cmp -s "$tmp/s8.ids" "$tmp/s1.ids" || fail "sampled ARGS depends on --max-batch"
gen judge --temperature 0 --args-reward judge --args-top-k 3 --args-weight 2
grep -q "ARGS (judge reward, weight 2, top 3): [1-9][0-9]* candidates judged" "$tmp/judge.gerr" ||
  fail "judge reward: $(tail -1 "$tmp/judge.gerr")"
"$srlm" generate --model "$M" --jsonl "$tmp/t.jsonl" --args-reward implicit >/dev/null 2>"$tmp/e1.err"
[ $? -eq 2 ] && grep -q "needs --args-reference" "$tmp/e1.err" || fail "implicit without a reference: $(cat "$tmp/e1.err")"
"$srlm" generate --model "$M" --jsonl "$tmp/t.jsonl" --args-top-k 3 >/dev/null 2>"$tmp/e2.err"
[ $? -eq 2 ] && grep -q "need --args-reward" "$tmp/e2.err" || fail "--args-top-k alone: $(cat "$tmp/e2.err")"
echo '{"text":"Q12+"}' >"$tmp/bad.jsonl"
"$srlm" generate --model "$M" --jsonl "$tmp/bad.jsonl" --args-reward judge >/dev/null 2>"$tmp/e3.err"
[ $? -eq 1 ] && grep -q "input 1: --args-reward judge needs a sign_puzzle prompt" "$tmp/e3.err" ||
  fail "judge on a non-puzzle line: $(cat "$tmp/e3.err")"

# ARGS as the generators' decoding in srlm train (implicit against M0, and the judge reward)
for r in implicit judge; do
  "$srlm" train $base run.name=args-$r task.prompts_per_iteration=8 \
    generate.args_reward=$r generate.args_top_k=3 generate.args_weight=2 >/dev/null 2>"$tmp/args-$r.err" ||
    { fail "train with generate.args_reward $r"; tail -3 "$tmp/args-$r.err" >&2; }
  grep -q '"event":"iteration"' "$tmp/runs/args-$r/metrics.jsonl" 2>/dev/null || fail "args-$r: no iteration line"
done
# the judge reward through the task interface: Countdown's judge format (a random model)
"$srlm" train $base run.name=args-cd task.name=countdown tokenizer.path=configs/countdown task.prompts_per_iteration=4 \
  generate.max_new_tokens=12 \
  generate.args_reward=judge generate.args_top_k=2 >/dev/null 2>"$tmp/args-cd.err" ||
  { fail "train with generate.args_reward judge on Countdown"; tail -3 "$tmp/args-cd.err" >&2; }
grep -q '"event":"iteration"' "$tmp/runs/args-cd/metrics.jsonl" 2>/dev/null || fail "args-cd: no iteration line"
"$srlm" train $base run.name=args-none task.name=none data.prompts="$tmp/p.jsonl" generate.args_reward=judge \
  >/dev/null 2>"$tmp/args-none.err"
[ $? -eq 2 ] && grep -q "generate.args_reward: judge reads a built-in task's judge" "$tmp/args-none.err" ||
  fail "args judge on a prompt set: $(tail -1 "$tmp/args-none.err")"
"$srlm" train $base run.name=args-bad generate.args_reference="$M0" >/dev/null 2>"$tmp/args-bad.err"
[ $? -eq 2 ] && grep -q "generate.args_reference: applies to generate.args_reward: implicit" "$tmp/args-bad.err" ||
  fail "args_reference without implicit: $(tail -1 "$tmp/args-bad.err")"

echo "args.sh: $fails failed"
[ "$fails" -eq 0 ]
