# srlm config: the CLI forms, exit status 2 with the exact error text for bad files and
# overrides, --help listing every key, the print -> reparse fixed point, and the
# committed configs staying valid and in sync.
# usage: bash config.sh /path/to/srlm   (env: SRLM_TMP, SRLM_SOURCE_DIR)
set -u
SRLM=${1:?usage: config.sh /path/to/srlm}
SRC=${SRLM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
TMP=${SRLM_TMP:-$(mktemp -d)}
mkdir -p "$TMP"
fails=0
checks=0

fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# expect_error CODE "exact stderr" -- command...
expect_error() {
  local code=$1 want=$2
  shift 3
  checks=$((checks + 1))
  "$@" > "$TMP/out" 2> "$TMP/err"
  local rc=$?
  local got
  got=$(cat "$TMP/err")
  [ "$rc" = "$code" ] || fail "'$*': exit $rc, expected $code (stderr: $got)"
  [ "$got" = "$want" ] || fail "'$*': stderr
  got:      $got
  expected: $want"
  [ -s "$TMP/out" ] && fail "'$*': wrote to stdout on error"
}

# expect_ok -- command... (stdout in $TMP/out)
expect_ok() {
  checks=$((checks + 1))
  "$@" > "$TMP/out" 2> "$TMP/err" || fail "'$*': exit $?: $(cat "$TMP/err")"
}

# 1. no -c: the defaults, every section
expect_ok "$SRLM" config
for want in "run:" "  name: srlm" "  seed: 1234" "model:" "  arch:" "    family: llama" "  lr: 1.0e-06" \
            "  score_regex: \"Score: *([0-9]+(\\\\.[0-9]+)?)\"" "  stop: []" "  colocate: true" "eval:"; do
  grep -qxF -- "$want" "$TMP/out" || fail "defaults lack the line '$want'"
done
cp "$TMP/out" "$TMP/defaults.yaml"

# 2. --help lists every key the printer writes, and the keys the issue asks for
expect_ok "$SRLM" config --help
cp "$TMP/out" "$TMP/help.txt"
keys=$(awk '
  /^[^ #].*:$/ { sub(":", ""); s1 = $0; next }
  /^  [^ ].*:$/ { sub(/^  /, ""); sub(":", ""); s2 = s1 "." $0; next }
  /^    [^ ]/ { sub(/^    /, ""); sub(/:.*/, ""); print s2 "." $0; next }
  /^  [^ ]/ { sub(/^  /, ""); sub(/:.*/, ""); print s1 "." $0 }' "$TMP/defaults.yaml")
nkeys=$(echo "$keys" | wc -l)
[ "$nkeys" -ge 60 ] || fail "only $nkeys keys in the printed defaults"
for k in $keys; do
  grep -q "^$k  " "$TMP/help.txt" || fail "--help does not list $k"
done
for k in run.name run.out_dir run.seed run.iterations run.log_level model.path model.arch.family \
         model.arch.vocab_size model.arch.hidden_size model.arch.intermediate_size model.arch.num_layers \
         model.arch.num_heads model.arch.num_kv_heads model.arch.head_dim model.arch.rope_theta \
         model.arch.rms_norm_eps model.arch.max_seq_len model.arch.tie_embeddings model.dtype tokenizer.path \
         tokenizer.chat_format roles.generators roles.judges roles.learners roles.colocate data.prompts \
         data.eval_prompts data.skip_bad_lines data.max_prompt_tokens generate.samples_per_prompt \
         generate.temperature generate.top_p generate.top_k generate.min_p generate.max_new_tokens generate.stop \
         judge.template judge.samples judge.score_regex judge.score_min judge.score_max judge.mode \
         pairs.min_margin train.loss train.beta train.label_smoothing train.nll_weight train.lr train.lr_schedule \
         train.warmup_steps train.min_lr train.weight_decay train.adam_beta1 train.adam_beta2 train.adam_eps \
         train.grad_clip train.batch_size train.grad_accum train.epochs eval.every eval.prompts; do
  grep -q "^$k  " "$TMP/help.txt" || fail "--help lacks $k"
done
grep -q "^train.loss  *enum  *dpo  *dpo|ipo|grpo|sft  *" "$TMP/help.txt" || fail "--help row of train.loss: $(grep '^train.loss' "$TMP/help.txt")"
grep -q "^generate.top_p  *float  *0.9  *(0, 1]  *" "$TMP/help.txt" || fail "--help row of generate.top_p: $(grep '^generate.top_p' "$TMP/help.txt")"

# 3. print -> reparse is a fixed point, with a file and overrides
cat > "$TMP/hostile.yaml" <<'EOF'
run:
  name: "yes"
  out_dir: "a: b # not a comment"
  seed: 7
model:
  path: "  leading spaces"
generate:
  stop: ["</s>", "", "1", "null", "line\nbreak", 'it''s']
train:
  lr: 0.1
EOF
expect_ok "$SRLM" config -c "$TMP/hostile.yaml" train.beta=0.30000000000000004 'data.prompts="~"'
cp "$TMP/out" "$TMP/a.yaml"
expect_ok "$SRLM" config -c "$TMP/a.yaml"
cmp -s "$TMP/a.yaml" "$TMP/out" || fail "srlm config -c X > Y; srlm config -c Y differs: $(diff "$TMP/a.yaml" "$TMP/out")"
grep -qxF '  name: "yes"' "$TMP/a.yaml" || fail "\"yes\" must stay quoted"
grep -qxF '  beta: 0.30000000000000004' "$TMP/a.yaml" || fail "beta not printed exactly: $(grep beta "$TMP/a.yaml")"
grep -qxF '  stop: ["</s>", "", "1", "null", "line\nbreak", "it'"'"'s"]' "$TMP/a.yaml" \
  || fail "stop list printed as: $(grep stop: "$TMP/a.yaml")"
# --comments output parses to the same config
expect_ok "$SRLM" config -c "$TMP/a.yaml" --comments
cp "$TMP/out" "$TMP/c.yaml"
expect_ok "$SRLM" config -c "$TMP/c.yaml"
cmp -s "$TMP/a.yaml" "$TMP/out" || fail "commented output does not reparse to the same config"

# 4. overrides: the last one wins; --config=FILE works
expect_ok "$SRLM" config --config="$TMP/hostile.yaml" train.lr=0.2 train.lr=0.3
grep -qxF '  lr: 0.3' "$TMP/out" || fail "last override must win: $(grep '  lr:' "$TMP/out")"

# 5. errors: exit 2, "srlm config: error: FILE:LINE:COL: key.path: what"
printf 'train:\n  lr: 5\n' > "$TMP/range.yaml"
expect_error 2 "srlm config: error: $TMP/range.yaml:2:7: train.lr: value 5 out of range [0, 1]" -- "$SRLM" config -c "$TMP/range.yaml"
printf 'train:\n  batch_size: 1.5\n' > "$TMP/type.yaml"
expect_error 2 "srlm config: error: $TMP/type.yaml:2:15: train.batch_size: expected an integer, got '1.5'" -- "$SRLM" config -c "$TMP/type.yaml"
printf 'model:\n  arch:\n    num_layers: 2\n    num_layers: 3\n' > "$TMP/dup.yaml"
expect_error 2 "srlm config: error: $TMP/dup.yaml:4:5: model.arch.num_layers: duplicate key (first at 3:5)" -- "$SRLM" config -c "$TMP/dup.yaml"
printf 'train:\n  lrr: 1\n' > "$TMP/unknown.yaml"
expect_error 2 "srlm config: error: $TMP/unknown.yaml:2:3: train.lrr: unknown key (did you mean train.lr?)" -- "$SRLM" config -c "$TMP/unknown.yaml"
printf 'roles:\n  colocate: yes\n' > "$TMP/bool.yaml"
expect_error 2 "srlm config: error: $TMP/bool.yaml:2:13: roles.colocate: expected a bool (true or false), got 'yes'" -- "$SRLM" config -c "$TMP/bool.yaml"
printf 'train:\n  lr: 1\n x: 2\n' > "$TMP/syntax.yaml"
expect_error 2 "srlm config: error: $TMP/syntax.yaml:3:2: YAML syntax error: did not find expected key (while parsing a block mapping at 1:1)" -- "$SRLM" config -c "$TMP/syntax.yaml"
printf 'base: &b\n  x: 1\n' > "$TMP/anchor.yaml"
expect_error 2 "srlm config: error: $TMP/anchor.yaml:1:1: base: unknown key" -- "$SRLM" config -c "$TMP/anchor.yaml"
printf 'train: &b\n  lr: 0.1\n' > "$TMP/anchor2.yaml"
expect_error 2 "srlm config: error: $TMP/anchor2.yaml:1:8: train: anchors (&b) are not supported" -- "$SRLM" config -c "$TMP/anchor2.yaml"
expect_error 2 "srlm config: error: override 'train.lr=abc': train.lr: expected a float, got 'abc'" -- "$SRLM" config train.lr=abc
expect_error 2 "srlm config: error: override 'train.lr=abc': train.lr: expected a float, got 'abc'" -- "$SRLM" config -c "$SRC/configs/quickstart.yaml" train.lr=abc
expect_error 2 "srlm config: error: override 'trian.lr=1': trian.lr: unknown key (did you mean train.lr?)" -- "$SRLM" config trian.lr=1
expect_error 2 "srlm config: error: override 'bogus': expected key.path=value" -- "$SRLM" config bogus
expect_error 2 "srlm config: error: judge.score_min: 5.0 must be below judge.score_max (5.0)" -- "$SRLM" config judge.score_min=5
expect_error 2 "srlm config: error: config: $TMP/missing.yaml: cannot open: No such file or directory" -- "$SRLM" config -c "$TMP/missing.yaml"
expect_error 2 "srlm config: error: unknown option '--bogus' (see 'srlm config --help')" -- "$SRLM" config --bogus
expect_error 2 "srlm config: error: -c needs a file name (see 'srlm config --help')" -- "$SRLM" config -c

# 6. committed configs: quickstart is valid; example-full is exactly `srlm config --comments`
expect_ok "$SRLM" config -c "$SRC/configs/quickstart.yaml"
grep -qxF '  name: quickstart' "$TMP/out" || fail "quickstart run.name"
expect_ok "$SRLM" config --comments
cmp -s "$TMP/out" "$SRC/configs/example-full.yaml" \
  || fail "configs/example-full.yaml is stale: regenerate with 'srlm config --comments > configs/example-full.yaml'"
expect_ok "$SRLM" config -c "$SRC/configs/example-full.yaml"
cmp -s "$TMP/out" "$TMP/defaults.yaml" || fail "example-full.yaml does not parse to the defaults"

# 7. an independent YAML 1.1 reader (PyYAML, when installed) sees the same types
if python3 -c 'import yaml' 2> /dev/null; then
  checks=$((checks + 1))
  python3 - "$TMP/a.yaml" "$TMP/defaults.yaml" << 'EOF' || fail "PyYAML disagrees with srlm config's output"
import sys, yaml
a = yaml.safe_load(open(sys.argv[1]))
assert a["run"]["name"] == "yes", a["run"]["name"]
assert a["run"]["out_dir"] == "a: b # not a comment"
assert a["model"]["path"] == "  leading spaces"
assert a["generate"]["stop"] == ["</s>", "", "1", "null", "line\nbreak", "it's"], a["generate"]["stop"]
assert a["data"]["prompts"] == "~"
assert a["train"]["beta"] == 0.30000000000000004 and isinstance(a["train"]["beta"], float)
d = yaml.safe_load(open(sys.argv[2]))
for sec, body in d.items():
    def walk(prefix, node):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(prefix + k + ".", v)
            elif prefix + k in ("run.name", "run.out_dir", "model.path", "tokenizer.path", "data.prompts",
                                "data.eval_prompts", "judge.template", "judge.score_regex"):
                assert isinstance(v, str), (prefix + k, v)
    walk(sec + ".", body)
assert isinstance(d["train"]["lr"], float) and d["train"]["lr"] == 1e-6, d["train"]["lr"]
assert isinstance(d["model"]["arch"]["rope_theta"], float)
assert d["roles"]["colocate"] is True
assert d["judge"]["score_regex"] == r"Score: *([0-9]+(\.[0-9]+)?)"
EOF
else
  echo "note: python3 yaml not installed; skipping the PyYAML cross-check"
fi

echo "config.sh: $checks checks, $fails failed"
[ "$fails" = 0 ]
