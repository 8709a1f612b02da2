#!/usr/bin/env bash
# srlm sft through a chat format: a tiny model is fine-tuned on 16 sign puzzles written as
# {"messages": [user, assistant]} conversations with a ChatML tokenizer (its chat template
# is detected from tokenizer_config.json); the loss must fall, and the saved model, asked
# with the same user turns, must answer every one greedily and stop at <|im_end|>.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
fix=tests/fixtures/sft
"$srlm" sft -c configs/sft-tiny.yaml run.out_dir="$tmp/runs" run.name=chat \
  tokenizer.path=$fix/chatml_tokenizer tokenizer.chat_format=auto data.sft=$fix/chat_sign_puzzle.jsonl \
  model.arch.max_seq_len=64 2>"$tmp/err" || { fail "sft exited $?"; cat "$tmp/err" >&2; }
grep -q "chat format chatml" "$tmp/err" || fail "the ChatML template was not detected: $(grep -i chat "$tmp/err")"
line=$(grep 'sft done' "$tmp/err")
echo "$line" >&2
first=$(echo "$line" | sed -n 's/.*loss \([0-9.]*\) -> \([0-9.]*\).*/\1/p')
last=$(echo "$line" | sed -n 's/.*loss \([0-9.]*\) -> \([0-9.]*\).*/\2/p')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(a > 3 && b < 0.3) }' \
  || fail "loss did not fall enough: $first -> $last (want > 3 -> < 0.3)"

# Ask with the user turns only: the answers must come back, ending with <|im_end|> (EOS).
python3 - "$fix/chat_sign_puzzle.jsonl" "$tmp/prompts.jsonl" "$tmp/answers.txt" <<'PY'
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as p, open(sys.argv[3], "w") as a:
    for line in f:
        m = json.loads(line)["messages"]
        p.write(json.dumps({"messages": [m[0]]}) + "\n")
        a.write(m[1]["content"] + "\n")
PY
"$srlm" generate --model "$tmp/runs/chat/model" --jsonl "$tmp/prompts.jsonl" --temperature 0 \
  --max-new-tokens 16 >"$tmp/out.jsonl" 2>"$tmp/err" || { fail "generate exited $?"; cat "$tmp/err" >&2; }
python3 - "$tmp/out.jsonl" "$tmp/answers.txt" <<'PY' || fails=$((fails + 1))
import json, sys
outs = [json.loads(l) for l in open(sys.argv[1])]
want = [l.rstrip("\n") for l in open(sys.argv[2])]
ok = sum(o["text"] == w and o["ids"][-1] == 2 for o, w in zip(outs, want))
print("chat SFT: %d of %d answers reproduced, ending with <|im_end|>" % (ok, len(want)), file=sys.stderr)
for o, w in zip(outs, want):
    if o["text"] != w or o["ids"][-1] != 2:
        print("  want %r got %r (ids %s)" % (w, o["text"], o["ids"]), file=sys.stderr)
sys.exit(0 if ok == len(want) == len(outs) else 1)
PY
echo "sft_chat.sh: $fails failed"
[ "$fails" -eq 0 ]
