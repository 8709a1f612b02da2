#!/usr/bin/env bash
# srlm logprobs: on the committed llama fixture (tests/fixtures/hf/llama), the values
# for the fixture's sequences must match transformers' (expected.safetensors, read here
# by plain python3: struct + json) within 1e-4, one output line per input line with
# len(ids) - 1 values; packing many lines per forward or one line per forward gives the
# same text; bad input exits 1 naming FILE:LINE or the id; usage errors exit 2.
# usage: bash logprobs.sh /path/to/srlm
set -u
SRLM="$1"
SRC="${SRLM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
FIX="$SRC/tests/fixtures/hf/llama"
T="${SRLM_TMP:-$(mktemp -d)}/logprobs"
rm -rf "$T"
mkdir -p "$T"
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*" >&2; fail=$((fail + 1)); }

# The input: the fixture's sequences, a one-id line, then the sequences again reversed.
cat >"$T/st.py" <<'EOF'
"""Reads expected.safetensors (I32/F32 only) into {name: list}."""
import json, struct, sys

def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        fmt = {"I32": "i", "F32": "f"}.get(v["dtype"])
        if fmt:
            out[k] = list(struct.unpack("<%d%s" % ((e - b) // 4, fmt), data[b:e]))
    return out
EOF
python3 - "$FIX/expected.safetensors" "$T/in.jsonl" "$T/want.json" <<'EOF'
import json, sys
sys.path.insert(0, sys.argv[2].rsplit("/", 1)[0])
from st import read
x = read(sys.argv[1])
S = x["meta.S"][0]
seqs = [x["seq%d.input_ids" % i] for i in range(S)]
want = [x["seq%d.logprobs" % i] for i in range(S)]
lines = seqs + [[7]] + seqs[::-1]
wants = want + [[]] + want[::-1]
with open(sys.argv[2], "w") as f:
    for s in lines:
        f.write(json.dumps({"ids": s}) + "\n")
    f.write("\n")  # a blank line is skipped
json.dump(wants, open(sys.argv[3], "w"))
EOF

"$SRLM" logprobs --model "$FIX" --jsonl "$T/in.jsonl" >"$T/out.jsonl" 2>"$T/err" || bad "logprobs exited $?: $(cat "$T/err")"
python3 - "$T/out.jsonl" "$T/want.json" <<'EOF' && ok || bad "values differ from transformers"
import json, struct, sys
text = open(sys.argv[1]).read().splitlines()
got = [json.loads(l)["logprobs"] for l in text]
want = json.load(open(sys.argv[2]))
assert len(got) == len(want), "%d lines, expected %d" % (len(got), len(want))
worst = 0.0
for g, w in zip(got, want):
    assert len(g) == len(w), "line has %d values, expected %d" % (len(g), len(w))
    for a, b in zip(g, w):
        worst = max(worst, abs(a - b))
for l in text:
    # %.9g of an fp32 value: the text read back as fp32 prints as the same text
    for s in l[len('{"logprobs":['):-2].split(","):
        if s:
            f = struct.unpack("<f", struct.pack("<f", float(s)))[0]
            assert "%.9g" % f == s, "%s is not the %%.9g text of an fp32 value" % s
print("  max |diff| vs transformers: %.2e" % worst, file=sys.stderr)
assert worst <= 1e-4, "max |diff| %.3e > 1e-4" % worst
EOF

# one line per forward: the same text (a sequence's values do not depend on its batch)
"$SRLM" logprobs --model "$FIX" --jsonl "$T/in.jsonl" --batch-tokens 1 >"$T/out1.jsonl" 2>"$T/err" || bad "--batch-tokens 1 exited $?"
cmp -s "$T/out.jsonl" "$T/out1.jsonl" && ok || bad "--batch-tokens 1 changed the output"
# stdin
"$SRLM" logprobs --model "$FIX" --jsonl - <"$T/in.jsonl" >"$T/out2.jsonl" 2>"$T/err" || bad "--jsonl - exited $?"
cmp -s "$T/out.jsonl" "$T/out2.jsonl" && ok || bad "--jsonl - changed the output"

# errors: exit status and message
expect_err() { # want_status pattern args...
  local want="$1" pat="$2"
  shift 2
  "$SRLM" logprobs "$@" >"$T/o" 2>"$T/e"
  local st=$?
  if [ "$st" -ne "$want" ]; then bad "logprobs $* exited $st, expected $want: $(cat "$T/e")"; return; fi
  grep -qF -- "$pat" "$T/e" && ok || bad "logprobs $*: stderr lacks '$pat': $(cat "$T/e")"
  [ -s "$T/o" ] && bad "logprobs $* wrote to stdout on error" || true
}
printf '{"ids":[1,2,3]}\n{"ids":[1,2,\n' >"$T/badjson.jsonl"
expect_err 1 "badjson.jsonl:2" --model "$FIX" --jsonl "$T/badjson.jsonl"
printf '{"ids":[1,2,3]}\n\n{"ids":[4,512,6]}\n' >"$T/range.jsonl"
expect_err 1 "range.jsonl:3: id 512 (ids[1]) out of range [0, 512)" --model "$FIX" --jsonl "$T/range.jsonl"
printf '{"ids":[1,-1]}\n' >"$T/neg.jsonl"
expect_err 1 "neg.jsonl:1: id -1 (ids[1]) out of range" --model "$FIX" --jsonl "$T/neg.jsonl"
printf '{"ids":[]}\n' >"$T/empty.jsonl"
expect_err 1 "empty.jsonl:1: \"ids\" is empty" --model "$FIX" --jsonl "$T/empty.jsonl"
printf '{"ids":[1,"a"]}\n' >"$T/str.jsonl"
expect_err 1 "str.jsonl:1: ids[1] must be an integer" --model "$FIX" --jsonl "$T/str.jsonl"
printf '{"text":"hi"}\n' >"$T/noids.jsonl"
expect_err 1 "noids.jsonl:1: missing key \"ids\"" --model "$FIX" --jsonl "$T/noids.jsonl"
expect_err 1 "$T/nope" --model "$T/nope" --jsonl "$T/in.jsonl"
expect_err 2 "--model DIR is required" --jsonl "$T/in.jsonl"
expect_err 2 "--jsonl FILE is required" --model "$FIX"
expect_err 2 "unknown argument '--bogus'" --model "$FIX" --jsonl "$T/in.jsonl" --bogus
expect_err 2 "--batch-tokens must be" --model "$FIX" --jsonl "$T/in.jsonl" --batch-tokens 0
"$SRLM" logprobs --help >"$T/help" 2>&1 && grep -q "usage: srlm logprobs --model DIR --jsonl FILE" "$T/help" && ok || bad "--help"

echo "logprobs.sh: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
