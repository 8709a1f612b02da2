# srlm generate: the CLI forms. Greedy {"ids"} lines against transformers' continuations
# for every fixture of tests/fixtures/hf (EOS from generation_config.json applied);
# sampling that depends only on (seed, line index); {"text"} lines, --stop and the text
# output on a model with a tokenizer (M0 of the quickstart-m1 config, made by srlm train);
# error cases with their exit status and FILE:LINE.
# usage: bash generate.sh /path/to/srlm   (env: SRLM_SOURCE_DIR, SRLM_TMP; needs python3)
set -u
SRLM=${1:?usage: generate.sh /path/to/srlm}
case "$SRLM" in /*) ;; *) SRLM=$PWD/$SRLM ;; esac # the quickstart step runs in another directory
SRC=${SRLM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
TMP=${SRLM_TMP:-$(mktemp -d)}
mkdir -p "$TMP"
FIX=$SRC/tests/fixtures/hf
fails=0
checks=0

. "$(dirname "$0")/lib/check.sh" # fail, expect_error, expect_ok

# py SCRIPT ARGS...: a python3 check; its stderr says what was wrong
py() {
  checks=$((checks + 1))
  python3 -c "$@" 2> "$TMP/pyerr" || fail "python check: $(cat "$TMP/pyerr")"
}

# 1. greedy against transformers: the fixture prompts as {"ids"} lines, all in one run
#    (so they decode together); transformers ran without EOS, srlm stops at the EOS of
#    generation_config.json, so the expected ids are cut after a first EOS.
cat > "$TMP/fixture.py" <<'EOF'
import json, struct, sys
d, out_in, out_want = sys.argv[1:4]
f = open(d + "/expected.safetensors", "rb")
n = struct.unpack("<Q", f.read(8))[0]
h = json.loads(f.read(n))
base = 8 + n
def i32(name):
    a, b = h[name]["data_offsets"]
    f.seek(base + a)
    return list(struct.unpack("<%di" % ((b - a) // 4), f.read(b - a)))
eos = json.load(open(d + "/generation_config.json")).get("eos_token_id")
eos = set(eos if isinstance(eos, list) else [eos]) | {json.load(open(d + "/config.json"))["eos_token_id"]}
with open(out_in, "w") as fi, open(out_want, "w") as fw:
    for i in range(i32("meta.S")[0]):
        fi.write(json.dumps({"ids": i32("greedy%d.prompt" % i)}) + "\n")
        o = i32("greedy%d.output" % i)
        for k, t in enumerate(o):
            if t in eos:
                o = o[:k + 1]
                break
        fw.write(json.dumps(o) + "\n")
EOF
cat > "$TMP/compare.py" <<'EOF'
import json, math, sys
got = [json.loads(l) for l in open(sys.argv[1])]
want = [json.loads(l) for l in open(sys.argv[2])]
assert len(got) == len(want), "%d output lines for %d inputs" % (len(got), len(want))
for i, (g, w) in enumerate(zip(got, want)):
    assert list(g) == ["ids", "text", "logprobs"], "line %d: keys %s" % (i + 1, list(g))
    assert g["ids"] == w, "line %d: ids %s, transformers %s" % (i + 1, g["ids"], w)
    assert g["text"] is None, "line %d: text %r without a tokenizer" % (i + 1, g["text"])
    lp = g["logprobs"]
    assert len(lp) == len(w) and all(isinstance(x, float) and x <= 0 and math.isfinite(x) for x in lp), \
        "line %d: logprobs %s" % (i + 1, lp)
EOF
for name in llama llama3_scaled llama_tied_bf16 qwen2 qwen3 mistral; do
  python3 "$TMP/fixture.py" "$FIX/$name" "$TMP/in_$name.jsonl" "$TMP/want_$name.jsonl" || fail "$name: cannot read the fixture"
  expect_ok "$SRLM" generate --model "$FIX/$name" --jsonl "$TMP/in_$name.jsonl" --temperature 0 --max-new-tokens 12
  py "exec(open('$TMP/compare.py').read())" "$TMP/out" "$TMP/want_$name.jsonl"
  grep -q "new tokens/s" "$TMP/err" || fail "$name: no summary on stderr: $(cat "$TMP/err")"
done

# 2. sampling: a line's output depends on (seed, line index) only
M=$FIX/qwen3
printf '{"ids":[5,6,7]}\n{"ids":[9]}\n\n{"ids":[100,3,4,5,6,7,8,9,10,11]}\n{"ids":[42,42]}\n' > "$TMP/s4.jsonl"
head -2 "$TMP/s4.jsonl" > "$TMP/s2.jsonl"
run_s() { "$SRLM" generate --model "$M" --jsonl "$1" --temperature 0.9 --top-p 0.95 --top-k 50 --min-p 0.01 --seed 7 --max-new-tokens 10 "${@:2}"; }
checks=$((checks + 1))
a=$(run_s "$TMP/s4.jsonl" 2>/dev/null)
b=$(run_s "$TMP/s4.jsonl" --max-batch 1 2>/dev/null)
c=$(run_s "$TMP/s2.jsonl" --max-batch 3 2>/dev/null)
e=$(OMP_NUM_THREADS=1 run_s "$TMP/s4.jsonl" 2>/dev/null)
d=$("$SRLM" generate --model "$M" --jsonl "$TMP/s4.jsonl" --temperature 0.9 --top-p 0.95 --top-k 50 --min-p 0.01 \
      --seed 8 --max-new-tokens 10 2>/dev/null)
[ -n "$a" ] && [ "$(printf '%s\n' "$a" | wc -l)" = 4 ] || fail "sampling: output '$a'"
[ "$a" = "$b" ] || fail "sampling: --max-batch 1 changed the output:
$a
---
$b"
[ "$(printf '%s\n' "$a" | head -2)" = "$c" ] || fail "sampling: lines 1-2 changed with the lines after them:
$a
---
$c"
[ "$a" = "$e" ] || fail "sampling: OMP_NUM_THREADS=1 changed the output:
$a
---
$e"
[ "$a" != "$d" ] || fail "sampling: --seed 8 gave the same output as --seed 7"
echo "$a" > "$TMP/sampled.jsonl"
py "
import json
for i, l in enumerate(open('$TMP/sampled.jsonl')):
    d = json.loads(l)
    assert 1 <= len(d['ids']) <= 10 and len(d['logprobs']) == len(d['ids']), 'line %d: %s' % (i + 1, d)
    assert d['ids'][-1] == 2 or len(d['ids']) == 10, 'line %d stopped early without EOS: %s' % (i + 1, d['ids'])
    assert 2 not in d['ids'][:-1], 'line %d: EOS inside: %s' % (i + 1, d['ids'])
"

# 3. a model with a tokenizer: M0 of the quickstart-m1 config (19-id character vocabulary,
#    eos 0, no chat template); text lines, text output, --stop
rm -rf "$TMP/runs" "$TMP/runs_qwen" # a run folder that holds a run is refused without --resume/--overwrite
(cd "$SRC" && "$SRLM" train -c configs/quickstart-m1.yaml run.out_dir="$TMP/runs" run.iterations=0 > "$TMP/train.log" 2>&1) ||
  fail "srlm train could not make the quickstart model: $(tail -3 "$TMP/train.log")"
Q=$TMP/runs/quickstart-m1/iter_0/model
printf '{"text":"Q12T+"}\n{"ids":[14,3,4]}\n{"text":"Q9884T+29A"}\n' > "$TMP/t.jsonl"
expect_ok "$SRLM" generate --model "$Q" --jsonl "$TMP/t.jsonl" --max-new-tokens 12 --seed 3
cp "$TMP/out" "$TMP/t.out"
py "
import json, subprocess
for i, l in enumerate(open('$TMP/t.out')):
    d = json.loads(l)
    ids = d['ids']
    body = ids[:-1] if ids and ids[-1] == 0 else ids
    want = subprocess.run(['$SRLM', 'detokenize', '--tokenizer', '$Q', '--ids', ','.join(map(str, body))],
                          capture_output=True, check=True).stdout.decode()
    assert d['text'] == want, 'line %d: text %r, detokenized ids %r' % (i + 1, d['text'], want)
    assert len(ids) == 12 or ids[-1] == 0, 'line %d: %s' % (i + 1, ids)
"
# the {"text"} line and the same ids give the same continuation (Q=14, 1=3, 2=4; line index 0)
printf '{"ids":[14,3,4,15,12]}\n' > "$TMP/t_ids.jsonl"
expect_ok "$SRLM" generate --model "$Q" --jsonl "$TMP/t_ids.jsonl" --max-new-tokens 12 --seed 3
[ "$(cat "$TMP/out")" = "$(head -1 "$TMP/t.out")" ] || fail "{\"text\":\"Q12T+\"} and its ids differ:
$(head -1 "$TMP/t.out")
$(cat "$TMP/out")"
# --stop: take a two-character piece of a sampled text; the output must end right after it
stop=$(python3 -c "
import json
for l in open('$TMP/t.out'):
    t = json.loads(l)['text']
    if len(t) >= 5:
        print(t[3:5]); break
")
if [ -n "$stop" ]; then
  expect_ok "$SRLM" generate --model "$Q" --jsonl "$TMP/t.jsonl" --max-new-tokens 12 --seed 3 --stop "$stop"
  py "
import json, subprocess
full = [json.loads(l) for l in open('$TMP/t.out')]
got = [json.loads(l) for l in open('$TMP/out')]
s = '$stop'
def text_of(i):
    return subprocess.run(['$SRLM', 'detokenize', '--tokenizer', '$Q', '--ids', str(i)], capture_output=True,
                          check=True).stdout.decode()
for i, (f, g) in enumerate(zip(full, got)):
    k = f['text'].find(s)
    if k < 0:
        assert g == f, 'line %d: no stop string in %r but output changed: %s' % (i + 1, f['text'], g)
        continue
    end, n = 0, 0
    while end < k + len(s):
        end += len(text_of(f['ids'][n]))
        n += 1
    assert g['text'] == f['text'][:k + len(s)], 'line %d: text %r, expected %r' % (i + 1, g['text'], f['text'][:k + len(s)])
    assert g['ids'] == f['ids'][:n], 'line %d: ids %s, expected %s' % (i + 1, g['ids'], f['ids'][:n])
"
else
  fail "no sampled text of 5 characters to take a stop string from: $(cat "$TMP/t.out")"
fi

# 3b. chat prompts and multi-byte text: M0 made for the Qwen3 tokenizer (151669 ids, 2.4M
#     parameters, chat format qwen3 detected from its tokenizer_config.json)
SH=${SRLM_SHARED:-$SRC/../shared}
(cd "$SRC" && "$SRLM" train -c configs/quickstart-m1.yaml run.out_dir="$TMP/runs_qwen" run.iterations=0 \
  tokenizer.path="$SH/fixtures/tokenizers/qwen3" tokenizer.chat_format=auto data.max_prompt_tokens=64 \
  model.arch.hidden_size=16 model.arch.num_heads=2 model.arch.num_kv_heads=1 model.arch.intermediate_size=32 \
  model.arch.num_layers=1 model.arch.tie_embeddings=true > "$TMP/train_qwen.log" 2>&1) ||
  fail "srlm train could not make the qwen3-vocabulary model: $(tail -3 "$TMP/train_qwen.log")"
Q3=$TMP/runs_qwen/quickstart-m1/iter_0/model
printf '{"messages":[{"role":"user","content":"What is 17+25?"}]}\n' > "$TMP/msg.jsonl"
printf '{"prompt":"What is 17+25?"}\n' > "$TMP/prompt.jsonl"
"$SRLM" chat --tokenizer "$Q3" --jsonl "$TMP/msg.jsonl" --generation-prompt --ids > "$TMP/chat_ids.jsonl" ||
  fail "srlm chat --ids failed"
for f in prompt msg chat_ids; do
  expect_ok "$SRLM" generate --model "$Q3" --jsonl "$TMP/$f.jsonl" --max-new-tokens 8 --seed 5
  cp "$TMP/out" "$TMP/gen_$f.out"
done
checks=$((checks + 1))
[ -s "$TMP/gen_prompt.out" ] && cmp -s "$TMP/gen_prompt.out" "$TMP/gen_chat_ids.out" && cmp -s "$TMP/gen_msg.out" "$TMP/gen_chat_ids.out" ||
  fail "{\"prompt\"}, {\"messages\"} and the chat ids gave different continuations:
$(cat "$TMP/gen_prompt.out" "$TMP/gen_msg.out" "$TMP/gen_chat_ids.out")"
# many sampled tokens: the text is the tokens' bytes, each maximal invalid UTF-8 subpart
# replaced by one U+FFFD (Python's errors="replace"); about 1% of Qwen3's tokens are
# pieces of a character, so 576 tokens hold some
python3 -c "
import json
for i in range(24): print(json.dumps({'text': 'line %d: ' % i + 'héllo wörld 中文'[: i % 15]}))
" > "$TMP/many.jsonl"
expect_ok "$SRLM" generate --model "$Q3" --jsonl "$TMP/many.jsonl" --max-new-tokens 24 --seed 11 --max-batch 6
py "
import json
tok = json.load(open('$Q3/tokenizer.json'))
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs = bs[:]
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + len(cs) - 188)
byte_of = {chr(c): b for b, c in zip(bs, cs)}
text_of = {i: bytes(byte_of[ch] for ch in t) for t, i in tok['model']['vocab'].items()}
text_of.update({a['id']: a['content'].encode() for a in tok['added_tokens']})
eos = json.load(open('$Q3/config.json'))['eos_token_id']
eos = set(eos if isinstance(eos, list) else [eos])
repl = 0
for n, l in enumerate(open('$TMP/out')):
    d = json.loads(l)
    ids = d['ids'][:-1] if d['ids'] and d['ids'][-1] in eos else d['ids']
    want = b''.join(text_of[i] for i in ids).decode('utf-8', errors='replace')
    assert d['text'] == want, 'line %d: text %r, expected %r' % (n + 1, d['text'], want)
    repl += d['text'].count('\ufffd')
assert repl > 0, 'no U+FFFD in %d lines: the replacement of invalid UTF-8 was not exercised' % (n + 1)
"

# 4. help
expect_ok "$SRLM" generate --help
grep -q "^usage: srlm generate --model DIR --jsonl FILE" "$TMP/out" || fail "--help lacks the usage line"
grep -q "full distribution" "$TMP/out" || fail "--help does not say which log-probs are printed"

# 5. errors: 2 for usage, 1 for bad input (FILE:LINE), nothing on stdout
expect_error 2 "srlm generate: error: --model DIR is required" -- "$SRLM" generate --jsonl "$TMP/t.jsonl"
expect_error 2 "srlm generate: error: --jsonl FILE is required" -- "$SRLM" generate --model "$Q"
expect_error 2 "srlm generate: error: unknown option '--beams'" -- "$SRLM" generate --model "$Q" --jsonl "$TMP/t.jsonl" --beams 2
expect_error 2 "--temperature 'hot': expected a number" -- "$SRLM" generate --model "$Q" --jsonl "$TMP/t.jsonl" --temperature hot
expect_error 2 "temperature -1: expected a finite value >= 0" -- "$SRLM" generate --model "$Q" --jsonl "$TMP/t.jsonl" --temperature -1
expect_error 2 "top_p 1.5: expected a value in [0, 1]" -- "$SRLM" generate --model "$Q" --jsonl "$TMP/t.jsonl" --top-p 1.5
expect_error 2 "min_p 2: expected a value in [0, 1]" -- "$SRLM" generate --model "$Q" --jsonl "$TMP/t.jsonl" --min-p 2
expect_error 2 "--top-k '-3': expected an integer >= 0" -- "$SRLM" generate --model "$Q" --jsonl "$TMP/t.jsonl" --top-k -3
expect_error 2 "--max-batch '0': expected an integer >= 1" -- "$SRLM" generate --model "$Q" --jsonl "$TMP/t.jsonl" --max-batch 0
expect_error 2 "--max-new-tokens needs a value" -- "$SRLM" generate --model "$Q" --jsonl "$TMP/t.jsonl" --max-new-tokens
expect_error 1 "srlm generate: error: $TMP/nope" -- "$SRLM" generate --model "$TMP/nope" --jsonl "$TMP/t.jsonl"
expect_error 1 "srlm generate: error: $TMP/missing.jsonl: cannot open" -- "$SRLM" generate --model "$Q" --jsonl "$TMP/missing.jsonl"
printf '{"ids":[1,2]}\n\n{"ids":[1,2],}\n' > "$TMP/bad.jsonl"
expect_error 1 "srlm generate: error: $TMP/bad.jsonl:3:" -- "$SRLM" generate --model "$Q" --jsonl "$TMP/bad.jsonl"
[ -s "$TMP/out" ] && fail "a bad line still let output through: $(cat "$TMP/out")"
printf '{"ids":[1,2]}\n{"ids":[3,19]}\n' > "$TMP/bad.jsonl"
expect_error 1 "srlm generate: error: $TMP/bad.jsonl:2: ids[1]: 19 is out of range (vocabulary 0..18)" -- \
  "$SRLM" generate --model "$Q" --jsonl "$TMP/bad.jsonl"
printf '{"ids":[]}\n' > "$TMP/bad.jsonl"
expect_error 1 "$TMP/bad.jsonl:1: ids: no tokens to continue from" -- "$SRLM" generate --model "$Q" --jsonl "$TMP/bad.jsonl"
printf '{"ids":[1],"text":"a"}\n' > "$TMP/bad.jsonl"
expect_error 1 "$TMP/bad.jsonl:1: expected exactly one of \"ids\", \"prompt\", \"messages\" and \"text\" (found 2)" -- \
  "$SRLM" generate --model "$Q" --jsonl "$TMP/bad.jsonl"
printf '["a"]\n' > "$TMP/bad.jsonl"
expect_error 1 "$TMP/bad.jsonl:1: expected an object" -- "$SRLM" generate --model "$Q" --jsonl "$TMP/bad.jsonl"
printf '{"ids":[1]}\n{"prompt":"Q12T"}\n' > "$TMP/bad.jsonl"
expect_error 1 "$TMP/bad.jsonl:2: rendering a prompt with the model's chat format" -- \
  "$SRLM" generate --model "$Q" --jsonl "$TMP/bad.jsonl"
printf '{"text":"Q1"}\n' > "$TMP/bad.jsonl"
expect_error 1 "$TMP/bad.jsonl:1: a \"text\" line needs a tokenizer, and $M has no tokenizer.json" -- \
  "$SRLM" generate --model "$M" --jsonl "$TMP/bad.jsonl"
printf '{"prompt":"hi"}\n' > "$TMP/bad.jsonl"
expect_error 1 "$TMP/bad.jsonl:1: a \"prompt\" line needs a tokenizer" -- "$SRLM" generate --model "$M" --jsonl "$TMP/bad.jsonl"
expect_error 2 "--stop needs the model's tokenizer" -- "$SRLM" generate --model "$M" --jsonl "$TMP/s2.jsonl" --stop x

echo "generate.sh: $checks checks, $fails failed"
[ "$fails" = 0 ]
