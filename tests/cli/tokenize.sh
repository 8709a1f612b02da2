# srlm tokenize / detokenize / chat: the CLI forms (every golden line of both
# tokenizers through --jsonl, --text, stdin, the decode round trip, chat text and ids),
# and the error cases with their exit status and the key parts of the message.
# usage: bash tokenize.sh /path/to/srlm   (env: SRLM_SHARED, SRLM_TMP)
set -u
SRLM=${1:?usage: tokenize.sh /path/to/srlm}
SHARED=${SRLM_SHARED:-$(cd "$(dirname "$0")/../../../shared" && pwd)}
TMP=${SRLM_TMP:-$(mktemp -d)}
mkdir -p "$TMP"
TOK=$SHARED/fixtures/tokenizers
fails=0
checks=0

. "$(dirname "$0")/lib/check.sh" # fail, expect_error, expect_ok

# expect_out "exact stdout" (after expect_ok)
expect_out() {
  local got
  got=$(cat "$TMP/out")
  [ "$got" = "$1" ] || fail "stdout
  got:      $got
  expected: $1"
}

# 1. every golden line: tokenize --jsonl prints exactly {"ids":[...]} of the golden, in order
for t in llama3 qwen3; do
  sed 's/.*"ids":\(\[[0-9,]*\]\).*/{"ids":\1}/' "$TOK/$t/golden.jsonl" > "$TMP/want_$t.jsonl"
  expect_ok "$SRLM" tokenize --tokenizer "$TOK/$t" --jsonl "$TOK/$t/golden.jsonl"
  n=$(wc -l < "$TMP/out")
  [ "$n" -ge 300 ] || fail "$t: only $n output lines"
  cmp -s "$TMP/out" "$TMP/want_$t.jsonl" || fail "$t: tokenize --jsonl differs from golden.jsonl ids:
$(diff "$TMP/out" "$TMP/want_$t.jsonl" | head -6)"
done

# 2. --text, strings and {"text"} lines, blank lines, stdin
expect_ok "$SRLM" tokenize --tokenizer "$TOK/qwen3" --text "Hello <|im_start|> wörld"
expect_out '{"ids":[9707,220,151644,289,9416,507]}'
expect_ok "$SRLM" tokenize --tokenizer "$TOK/llama3" --text ""
expect_out '{"ids":[]}'
printf '"Hello"\n\n{"text": "<|begin_of_text|>hi", "other": 1}\n' > "$TMP/mixed.jsonl"
expect_ok "$SRLM" tokenize --tokenizer "$TOK/llama3" --jsonl "$TMP/mixed.jsonl"
expect_out '{"ids":[9906]}
{"ids":[128000,6151]}'
checks=$((checks + 1))
got=$(printf '"Hello"\n' | "$SRLM" tokenize --tokenizer "$TOK/llama3/tokenizer.json" --jsonl -)
[ "$got" = '{"ids":[9906]}' ] || fail "stdin / tokenizer.json path: got $got"

# 3. detokenize: the exact bytes, no newline unless asked
expect_ok "$SRLM" detokenize --tokenizer "$TOK/qwen3" --ids "9707, 220,151644,289,9416,507"
printf 'Hello <|im_start|> w\xc3\xb6rld' > "$TMP/want.txt"
cmp -s "$TMP/out" "$TMP/want.txt" || fail "detokenize: got '$(cat "$TMP/out")'"
expect_ok "$SRLM" detokenize --tokenizer "$TOK/qwen3" --ids "9707" --newline
printf 'Hello\n' > "$TMP/want.txt"
cmp -s "$TMP/out" "$TMP/want.txt" || fail "detokenize --newline: got '$(cat "$TMP/out")'"
expect_ok "$SRLM" detokenize --tokenizer "$TOK/qwen3" --ids ""
[ -s "$TMP/out" ] && fail "detokenize of no ids wrote '$(cat "$TMP/out")'"
# round trip of a text with CJK, emoji and newlines through both commands
text=$(printf 'Line one\n  indented 中文 😀\ttab')
for t in llama3 qwen3; do
  ids=$("$SRLM" tokenize --tokenizer "$TOK/$t" --text "$text" | sed 's/{"ids":\[\(.*\)\]}/\1/')
  checks=$((checks + 1))
  back=$("$SRLM" detokenize --tokenizer "$TOK/$t" --ids "$ids")
  [ "$back" = "$text" ] || fail "$t round trip: got '$back'"
done

# 4. chat: text (format detected), generation prompt, ids with mask, --format
printf '{"messages":[{"role":"user","content":"What is 17+25?"}]}\n' > "$TMP/chat.jsonl"
expect_ok "$SRLM" chat --tokenizer "$TOK/qwen3" --jsonl "$TMP/chat.jsonl"
expect_out '"<|im_start|>user\nWhat is 17+25?<|im_end|>\n"'
expect_ok "$SRLM" chat --tokenizer "$TOK/qwen3" --jsonl "$TMP/chat.jsonl" --generation-prompt
expect_out '"<|im_start|>user\nWhat is 17+25?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"'
expect_ok "$SRLM" chat --tokenizer "$TOK/qwen3" --jsonl "$TMP/chat.jsonl" --generation-prompt --thinking
expect_out '"<|im_start|>user\nWhat is 17+25?<|im_end|>\n<|im_start|>assistant\n"'
expect_ok "$SRLM" chat --tokenizer "$TOK/llama3" --jsonl "$TMP/chat.jsonl"
expect_out '"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 17+25?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"'
expect_ok "$SRLM" chat --format chatml --jsonl "$TMP/chat.jsonl"
expect_out '"<|im_start|>user\nWhat is 17+25?<|im_end|>\n"'
printf '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}\n' > "$TMP/chat2.jsonl"
expect_ok "$SRLM" chat --tokenizer "$TOK/qwen3" --jsonl "$TMP/chat2.jsonl" --ids --mask
expect_out '{"ids":[151644,872,198,6023,151645,198,151644,77091,198,151667,271,151668,271,16032,151645,198],"mask":[0,0,0,0,0,0,0,0,0,0,0,0,0,1,1,0]}'
expect_ok "$SRLM" chat --tokenizer "$TOK/qwen3" --jsonl "$TMP/chat2.jsonl" --ids
expect_out '{"ids":[151644,872,198,6023,151645,198,151644,77091,198,151667,271,151668,271,16032,151645,198]}'

# 5. help
for c in tokenize detokenize chat; do
  expect_ok "$SRLM" $c --help
  grep -q "^usage: srlm $c" "$TMP/out" || fail "$c --help lacks the usage line"
done
grep -q "add_special_tokens=False" <("$SRLM" tokenize --help) || fail "tokenize --help does not say no BOS is added"
grep -q "no newline" <("$SRLM" detokenize --help) || fail "detokenize --help does not say whether a newline is added"

# 6. errors: exit 1 for bad input (naming file:line or the value), 2 for usage
expect_error 1 "srlm tokenize: error: $TMP/nope: cannot open tokenizer: No such file or directory" -- \
  "$SRLM" tokenize --tokenizer "$TMP/nope" --text a
mkdir -p "$TMP/empty_dir"
expect_error 1 "$TMP/empty_dir: no tokenizer.json in this directory" -- \
  "$SRLM" tokenize --tokenizer "$TMP/empty_dir" --text a
printf '"ok"\n\n{"text": "a",}\n' > "$TMP/bad.jsonl"
expect_error 1 "srlm tokenize: error: $TMP/bad.jsonl:3:" -- "$SRLM" tokenize --tokenizer "$TOK/qwen3" --jsonl "$TMP/bad.jsonl"
grep -q "invalid JSON" "$TMP/err" || fail "bad JSON line: '$(cat "$TMP/err")' does not say invalid JSON"
[ "$(cat "$TMP/out")" = '{"ids":[562]}' ] || fail "lines before the bad one: got '$(cat "$TMP/out")'"
printf '"ok"\n{"txt": "a"}\n' > "$TMP/notext.jsonl"
expect_error 1 "srlm tokenize: error: $TMP/notext.jsonl:2: expected a JSON string or an object with a \"text\" string" -- \
  "$SRLM" tokenize --tokenizer "$TOK/qwen3" --jsonl "$TMP/notext.jsonl"
expect_error 1 "srlm tokenize: error: $TMP/missing.jsonl: cannot open" -- \
  "$SRLM" tokenize --tokenizer "$TOK/qwen3" --jsonl "$TMP/missing.jsonl"
expect_error 1 "srlm tokenize: error: --text: encode: text is not valid UTF-8 (byte 1: 0xFF)" -- \
  "$SRLM" tokenize --tokenizer "$TOK/qwen3" --text "$(printf 'a\xff')"
expect_error 1 "srlm detokenize: error: --ids: item 2 'x' is not an integer id" -- \
  "$SRLM" detokenize --tokenizer "$TOK/qwen3" --ids "1,x,3"
expect_error 1 "srlm detokenize: error: --ids: item 1 '1.5' is not an integer id" -- \
  "$SRLM" detokenize --tokenizer "$TOK/qwen3" --ids "1.5"
expect_error 1 "srlm detokenize: error: $TOK/qwen3/tokenizer.json: token id 999999 (position 1) is out of range (ids are 0..151668)" -- \
  "$SRLM" detokenize --tokenizer "$TOK/qwen3" --ids "1,999999"
expect_error 1 "token id -1 (position 0) is out of range (ids are 0..128255)" -- \
  "$SRLM" detokenize --tokenizer "$TOK/llama3" --ids "-1"
mkdir -p "$TMP/badtok"
printf '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [' > "$TMP/badtok/tokenizer.json"
expect_error 1 "srlm tokenize: error: $TMP/badtok/tokenizer.json:1:" -- "$SRLM" tokenize --tokenizer "$TMP/badtok" --text a
grep -q "invalid JSON" "$TMP/err" || fail "truncated tokenizer.json: '$(cat "$TMP/err")'"
printf '{"normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "model": {}}' > "$TMP/badtok/tokenizer.json"
expect_error 1 "$TMP/badtok/tokenizer.json: pre_tokenizer.type: 'Whitespace' is not supported" -- \
  "$SRLM" tokenize --tokenizer "$TMP/badtok" --text a
printf '{"messages":[{"role":"user","content":5}]}\n' > "$TMP/badchat.jsonl"
expect_error 1 "srlm chat: error: $TMP/badchat.jsonl:1: messages[0].content: expected a string" -- \
  "$SRLM" chat --tokenizer "$TOK/qwen3" --jsonl "$TMP/badchat.jsonl"
printf '\n{"messages":"hi"}\n' > "$TMP/badchat.jsonl"
expect_error 1 "srlm chat: error: $TMP/badchat.jsonl:2: messages: expected an array" -- \
  "$SRLM" chat --tokenizer "$TOK/qwen3" --jsonl "$TMP/badchat.jsonl"

expect_error 2 "srlm tokenize: error: --tokenizer DIR is required" -- "$SRLM" tokenize --text a
expect_error 2 "srlm tokenize: error: give exactly one of --jsonl FILE and --text STRING" -- \
  "$SRLM" tokenize --tokenizer "$TOK/qwen3" --text a --jsonl x
expect_error 2 "srlm tokenize: error: unknown option '--add-special-tokens'" -- \
  "$SRLM" tokenize --tokenizer "$TOK/qwen3" --text a --add-special-tokens
expect_error 2 "srlm tokenize: error: --text needs a string" -- "$SRLM" tokenize --tokenizer "$TOK/qwen3" --text
expect_error 2 "srlm detokenize: error: --ids LIST is required" -- "$SRLM" detokenize --tokenizer "$TOK/qwen3"
expect_error 2 "srlm chat: error: unknown --format 'vicuna' (known: llama3, chatml, qwen3)" -- \
  "$SRLM" chat --tokenizer "$TOK/qwen3" --jsonl "$TMP/chat.jsonl" --format vicuna
expect_error 2 "srlm chat: error: --jsonl FILE is required" -- "$SRLM" chat --tokenizer "$TOK/qwen3"
expect_error 2 "srlm chat: error: --mask needs --ids" -- "$SRLM" chat --tokenizer "$TOK/qwen3" --jsonl "$TMP/chat.jsonl" --mask

echo "tokenize.sh: $checks checks, $fails failed"
[ "$fails" = 0 ]
