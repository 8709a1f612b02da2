#!/usr/bin/env bash
# Inputs that wasted time or misled (issue 12, item 7), each refused or handled:
#   - generate/logprobs inputs past the model's context: refused with the limit (exit 1);
#   - ids the model's vocabulary has but the tokenizer lacks (a vocabulary padded past the
#     tokenizer, as Qwen's): generate decodes them as empty text, as transformers does;
#   - judge.score_regex: an invalid pattern is a config error at `srlm config` time and on
#     the sign-puzzle path (its judge never parses with it);
#   - a UTF-8 byte-order mark before the first JSONL line is accepted;
#   - tokenizer.chat_format errors are config errors (exit 2);
#   - train.lr=1e-400 underflows a double: a range error, not a learning rate of 0.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
no_leak_checks
# run NAME WANT_RC -- command...: stdout in $tmp/NAME.out, stderr in $tmp/NAME.err
run() {
  local name=$1 want=$2
  shift 3
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  local rc=$?
  [ $rc -eq "$want" ] || fail "$name: exit $rc, want $want: $(tail -2 "$tmp/$name.err")"
}
has() { grep -qF -- "$2" "$tmp/$1.err" || fail "$1: no '$2' in stderr: $(tail -2 "$tmp/$1.err")"; }

# a model with 32 positions and a vocabulary of 32 ids over the tiny tokenizer's 19
"$srlm" train $tiny_quickstart run.name=pad model.arch.vocab_size=32 model.arch.max_seq_len=32 \
  run.iterations=0 >/dev/null 2>"$tmp/pad.err" || fail "making the model: $(tail -1 "$tmp/pad.err")"
model=$tmp/runs/pad/iter_0/model

# past the context: refused at once, naming the limit (before: minutes of work, exit 0)
python3 -c 'print("{\"ids\": [" + ",".join(["3"] * 100000) + "]}")' >"$tmp/long.jsonl"
run gen_long 1 -- timeout 60 "$srlm" generate --model "$model" --jsonl "$tmp/long.jsonl" --max-new-tokens 2
has gen_long "long.jsonl:1: the prompt has 100000 tokens; the model's context is 32 positions"
run lp_long 1 -- timeout 60 "$srlm" logprobs --model "$model" --jsonl "$tmp/long.jsonl"
has lp_long "long.jsonl:1: \"ids\" has 100000 ids; the model's context is 32 positions"
python3 -c 'print("{\"ids\": [" + ",".join(["3"] * 32) + "]}")' >"$tmp/fits.jsonl"
run lp_fits 0 -- "$srlm" logprobs --model "$model" --jsonl "$tmp/fits.jsonl"

# ids 19..31: the model has them, the tokenizer does not; sampled hot, they must appear
for i in $(seq 1 40); do echo '{"ids": [25, 3, 4]}'; done >"$tmp/pad.jsonl"
run gen_pad 0 -- "$srlm" generate --model "$model" --jsonl "$tmp/pad.jsonl" --max-new-tokens 16 --temperature 5 --seed 7
python3 - "$tmp/gen_pad.out" <<'PY' || fail "gen_pad: no generated id past the tokenizer's 19, or text for one"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
past = sum(1 for o in lines for i in o["ids"] if i >= 19)
print("generated ids past the tokenizer: %d in %d lines" % (past, len(lines)))
sys.exit(0 if past > 0 and len(lines) == 40 and all(isinstance(o["text"], str) for o in lines) else 1)
PY

# judge.score_regex: checked by `srlm config` and on the sign-puzzle path
run re_config 2 -- "$srlm" config -c configs/quickstart.yaml 'judge.score_regex="Score: ([0-9]"'
has re_config "judge.score_regex: \"Score: ([0-9]\": missing closing parenthesis at offset 13"
run re_group 2 -- "$srlm" config -c configs/quickstart.yaml 'judge.score_regex="Score: [0-9]"'
has re_group "has no capture group"
run re_task 2 -- "$srlm" train -c configs/quickstart.yaml run.out_dir="$tmp/runs" run.name=re model.path= \
  'judge.score_regex="(["' run.iterations=1
has re_task "judge.score_regex"
[ -e "$tmp/runs/re" ] && fail "re_task: a config error left a run folder"

# a UTF-8 byte-order mark before the first JSONL line
printf '\xef\xbb\xbf{"ids": [3, 4, 5]}\n{"ids": [6, 7]}\n' >"$tmp/bom.jsonl"
run bom_lp 0 -- "$srlm" logprobs --model "$model" --jsonl "$tmp/bom.jsonl"
[ "$(wc -l <"$tmp/bom_lp.out")" = 2 ] || fail "bom_lp: $(wc -l <"$tmp/bom_lp.out") lines, want 2"
printf '\xef\xbb\xbf{"prompt": "Say yes."}\n{"prompt": "Say no."}\n' >"$tmp/bom_prompts.jsonl"
run bom_train 0 -- "$srlm" train -c configs/quickstart.yaml run.out_dir="$tmp/runs" run.name=bom task.name=none \
  data.prompts="$tmp/bom_prompts.jsonl" tokenizer.path=tests/fixtures/sft/chatml_tokenizer tokenizer.chat_format=chatml \
  judge.mode=regex model.path= model.arch.max_seq_len=2048 --dry-run
grep -q "bom_prompts.jsonl: 2 prompts" "$tmp/bom_train.out" || fail "bom_train: $(grep prompts "$tmp/bom_train.out")"

# tokenizer.chat_format: exit 2 like other config errors
run chat_auto 2 -- "$srlm" train -c configs/quickstart.yaml run.out_dir="$tmp/runs" run.name=chat model.path= \
  tokenizer.chat_format=auto --dry-run
has chat_auto "tokenizer.chat_format auto (set it, or none for raw text)"

# train.lr=1e-400 reads as 0 in a double: a range error
run lr_under 2 -- "$srlm" config -c configs/quickstart.yaml train.lr=1e-400
has lr_under "train.lr: value 1e-400 out of range: it underflows a double"

echo "inputs.sh: $fails failed"
[ "$fails" -eq 0 ]
