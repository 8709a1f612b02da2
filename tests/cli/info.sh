#!/usr/bin/env bash
# srlm info: tiny model directories of each family, written here by plain python3
# (struct + json, the Hugging Face names and shapes spelled out independently of
# srlm), must report their architecture, parameter count, dtypes, tensors and
# files; broken directories (missing, unexpected or misshapen tensor, truncated
# file, sharded index naming the wrong shard, unsupported config) must exit 1
# naming the file and the tensor; usage errors exit 2.
# usage: bash info.sh /path/to/srlm
set -u
SRLM="$1"
T="${SRLM_TMP:-$(mktemp -d)}/info"
rm -rf "$T"
mkdir -p "$T"
pass=0
fail=0

cat >"$T/mk.py" <<'EOF'
"""Writes a tiny HF model directory: config.json + safetensors (one file or shards)."""
import argparse, json, os, struct

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("family")
p.add_argument("--dtype", default="F32")
p.add_argument("--drop", action="append", default=[])
p.add_argument("--add", action="append", default=[])
p.add_argument("--reshape", default=None)
p.add_argument("--shards", type=int, default=1)
p.add_argument("--tied", action="store_true")
p.add_argument("--model-type", default=None)
a = p.parse_args()

V, C, FF, L, NH, NKV = 22, 64, 160, 4, 4, 2
HS = 32 if a.family == "qwen3" else C // NH
cfg = {"model_type": a.model_type or a.family, "vocab_size": V, "hidden_size": C, "intermediate_size": FF,
       "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV, "rms_norm_eps": 1e-5,
       "rope_theta": 10000.0, "tie_word_embeddings": a.tied, "hidden_act": "silu",
       "torch_dtype": {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[a.dtype]}
if a.family == "qwen3":
    cfg["head_dim"] = HS
if a.family == "mistral":
    cfg["sliding_window"] = 64
if a.family == "llama":
    cfg["rope_theta"] = 500000.0
    cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                           "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}

t = [("model.embed_tokens.weight", [V, C])]
for i in range(L):
    pre = "model.layers.%d." % i
    t.append((pre + "self_attn.q_proj.weight", [NH * HS, C]))
    if a.family == "qwen2":
        t.append((pre + "self_attn.q_proj.bias", [NH * HS]))
    t.append((pre + "self_attn.k_proj.weight", [NKV * HS, C]))
    if a.family == "qwen2":
        t.append((pre + "self_attn.k_proj.bias", [NKV * HS]))
    t.append((pre + "self_attn.v_proj.weight", [NKV * HS, C]))
    if a.family == "qwen2":
        t.append((pre + "self_attn.v_proj.bias", [NKV * HS]))
    t.append((pre + "self_attn.o_proj.weight", [C, NH * HS]))
    if a.family == "qwen3":
        t.append((pre + "self_attn.q_norm.weight", [HS]))
        t.append((pre + "self_attn.k_norm.weight", [HS]))
    t.append((pre + "mlp.gate_proj.weight", [FF, C]))
    t.append((pre + "mlp.up_proj.weight", [FF, C]))
    t.append((pre + "mlp.down_proj.weight", [C, FF]))
    t.append((pre + "input_layernorm.weight", [C]))
    t.append((pre + "post_attention_layernorm.weight", [C]))
t.append(("model.norm.weight", [C]))
if not a.tied:
    t.append(("lm_head.weight", [V, C]))

params = 0
for _, s in t:
    n = 1
    for d in s:
        n *= d
    params += n
t = [(n, s) for n, s in t if n not in a.drop]
t += [(n, [2, 3]) for n in a.add]
if a.reshape:
    t = [(n, [s[0] + 1] + s[1:] if n == a.reshape else s) for n, s in t]

size = {"F32": 4, "BF16": 2, "F16": 2}[a.dtype]

def data(shape, seed):
    n = 1
    for d in shape:
        n *= d
    vals = [((seed * 7 + j * 13) % 17 - 8) / 400.0 for j in range(n)]
    raw = struct.pack("<%df" % n, *vals)
    if a.dtype == "F32":
        return raw
    if a.dtype == "BF16":  # top half of each f32 (truncation is fine for test data)
        return b"".join(raw[k + 2:k + 4] for k in range(0, len(raw), 4))
    return struct.pack("<%de" % n, *vals)

def write(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for k, (name, shape) in enumerate(tensors):
        b = data(shape, k)
        header[name] = {"dtype": a.dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

os.makedirs(a.dir, exist_ok=True)
with open(os.path.join(a.dir, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
if a.shards == 1:
    write(os.path.join(a.dir, "model.safetensors"), t)
else:
    wm, per = {}, (len(t) + a.shards - 1) // a.shards
    for s in range(a.shards):
        name = "model-%05d-of-%05d.safetensors" % (s + 1, a.shards)
        part = t[s * per:(s + 1) * per]
        write(os.path.join(a.dir, name), part)
        for n, _ in part:
            wm[n] = name
    with open(os.path.join(a.dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f, indent=2)
print(params, len(t))
EOF

mk() { python3 "$T/mk.py" "$@"; }

# run ARGS...: stdout in $T/out, stderr in $T/err, exit status in $rc
run() {
  "$SRLM" "$@" >"$T/out" 2>"$T/err"
  rc=$?
}
ok() { pass=$((pass + 1)); }
bad() {
  fail=$((fail + 1))
  echo "FAIL $*"
  echo "  stdout:"; sed 's/^/  | /' "$T/out"
  echo "  stderr:"; sed 's/^/  | /' "$T/err"
}
expect_rc() { if [ "$rc" = "$1" ]; then ok; else bad "$2: exit status $rc, expected $1"; fi; }
expect_out() { if grep -qF -- "$1" "$T/out"; then ok; else bad "$2: stdout lacks: $1"; fi; }
expect_err() { if grep -qF -- "$1" "$T/err"; then ok; else bad "$2: stderr lacks: $1"; fi; }

# ---- good directories of each family ----
for fam in llama qwen2 qwen3 mistral; do
  read -r params count < <(mk "$T/$fam" "$fam")
  run info --model "$T/$fam"
  expect_rc 0 "$fam"
  case $fam in
    llama) arch=LlamaForCausalLM ;;
    qwen2) arch=Qwen2ForCausalLM ;;
    qwen3) arch=Qwen3ForCausalLM ;;
    mistral) arch=MistralForCausalLM ;;
  esac
  expect_out "architecture: $fam ($arch)" "$fam"
  expect_out "layers: 4" "$fam"
  expect_out "hidden: 64" "$fam"
  expect_out "intermediate: 160" "$fam"
  expect_out "vocab: 22" "$fam"
  expect_out "parameters: $params (" "$fam"
  expect_out "dtypes: F32 ($count tensors)" "$fam"
  expect_out "tensors: $count found, $count expected" "$fam"
  expect_out "files: 1 (" "$fam"
  expect_out "  model.safetensors: " "$fam"
  [ -s "$T/err" ] && bad "$fam: unexpected stderr"
done
run info --model "$T/llama"
expect_out "parameters: 175424 (175K)" "llama count"
expect_out "rope: theta 500000, scaling llama3 (factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192)" "llama rope"
expect_out "heads: 4, kv heads: 2, head_dim: 16" "llama heads"
expect_out "tied embeddings: no" "llama tied"
run info --model "$T/qwen2"
expect_out "qkv bias: yes, o bias: no, qk norm: no" "qwen2 bias"
run info --model "$T/qwen3"
expect_out "heads: 4, kv heads: 2, head_dim: 32" "qwen3 head_dim"
expect_out "qkv bias: no, o bias: no, qk norm: yes" "qwen3 qk norm"
run info --model "$T/mistral"
expect_out "sliding window: 64 (layers >= 0)" "mistral window"

# tied bf16, sharded
read -r params count < <(mk "$T/qwen2_tied" qwen2 --tied --dtype BF16 --shards 3)
run info --model "$T/qwen2_tied"
expect_rc 0 "sharded"
expect_out "tied embeddings: yes" "sharded"
expect_out "config dtype: bfloat16" "sharded"
expect_out "dtypes: BF16 ($count tensors)" "sharded"
expect_out "parameters: $params (" "sharded"
expect_out "files: 3 (" "sharded"
expect_out "from model.safetensors.index.json" "sharded"
expect_out "  model-00002-of-00003.safetensors: " "sharded"

# --json
run info --model "$T/qwen3" --json
expect_rc 0 "json"
if python3 - "$T/out" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] is True and d["error"] is None, d
assert d["model_type"] == "qwen3" and d["architecture"] == "Qwen3ForCausalLM", d
assert d["head_dim"] == 32 and d["num_key_value_heads"] == 2 and d["qk_norm"] is True, d
assert d["tensors_found"] == d["tensors_expected"] == 47, d
assert d["dtypes"] == {"F32": 47}, d
assert d["files"][0]["name"] == "model.safetensors" and d["files"][0]["tensors"] == 47, d
assert d["parameters"] == 224832 and d["parameters_human"] == "225K", d
EOF
then ok; else bad "json: fields"; fi

# ---- broken directories ----
mk "$T/missing" llama --drop model.layers.1.mlp.up_proj.weight >/dev/null
run info --model "$T/missing"
expect_rc 1 "missing"
expect_err "srlm info: error: $T/missing: 1 tensor problem: missing tensor 'model.layers.1.mlp.up_proj.weight' (expected shape [160, 64])" "missing"
expect_out "tensors: 38 found, 39 expected (1 missing, 0 unexpected, 0 wrong shape or dtype)" "missing"

mk "$T/unexpected" qwen3 --add model.layers.4.mlp.up_proj.weight >/dev/null
run info --model "$T/unexpected"
expect_rc 1 "unexpected"
expect_err "unexpected tensor 'model.layers.4.mlp.up_proj.weight' in model.safetensors" "unexpected"
expect_out "(0 missing, 1 unexpected, 0 wrong shape or dtype)" "unexpected"

mk "$T/reshaped" mistral --reshape model.norm.weight --drop lm_head.weight --add extra.bias >/dev/null
run info --model "$T/reshaped"
expect_rc 1 "several"
expect_err ": 3 tensor problems: " "several"
expect_err "missing tensor 'lm_head.weight' (expected shape [22, 64])" "several"
expect_err "tensor 'model.norm.weight' in model.safetensors has shape [65], expected [64]" "several"
expect_err "unexpected tensor 'extra.bias' in model.safetensors" "several"

mk "$T/truncated" llama >/dev/null
size=$(stat -c %s "$T/truncated/model.safetensors")
truncate -s $((size - 4)) "$T/truncated/model.safetensors"
run info --model "$T/truncated"
expect_rc 1 "truncated"
expect_err "srlm info: error: $T/truncated/model.safetensors: tensor 'lm_head.weight': data_offsets [" "truncated"
expect_err "extend past the end of the data area" "truncated"
truncate -s 5 "$T/truncated/model.safetensors"
run info --model "$T/truncated"
expect_rc 1 "truncated to 5 bytes"
expect_err "model.safetensors: file is 5 bytes, shorter than the 8-byte header length" "truncated to 5 bytes"

mk "$T/badindex" qwen2 --shards 2 >/dev/null
sed -i 's/"model.norm.weight": "model-00002-of-00002.safetensors"/"model.norm.weight": "model-00001-of-00002.safetensors"/' \
  "$T/badindex/model.safetensors.index.json"
run info --model "$T/badindex"
expect_rc 1 "bad index"
expect_err "model.safetensors.index.json: tensor 'model.norm.weight' is in shard 'model-00002-of-00002.safetensors', but weight_map names shard 'model-00001-of-00002.safetensors'" "bad index"
rm "$T/badindex/model-00001-of-00002.safetensors"
run info --model "$T/badindex"
expect_rc 1 "missing shard"
expect_err "shard 'model-00001-of-00002.safetensors'" "missing shard"
expect_err "cannot open" "missing shard"

mk "$T/gpt2" llama --model-type gpt2 >/dev/null
run info --model "$T/gpt2"
expect_rc 1 "model_type"
expect_err "srlm info: error: $T/gpt2/config.json: key 'model_type': 'gpt2' is not supported" "model_type"

mk "$T/missing" llama --drop model.norm.weight >/dev/null
run info --model "$T/missing" --json
expect_rc 1 "json error"
if python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['ok'] is False and 'missing tensor' in d['error'] and d['tensors_missing'] == 1, d" "$T/out"; then ok; else bad "json error: fields"; fi

# ---- usage ----
run info --help
expect_rc 0 "help"
expect_out "usage: srlm info --model DIR [--json]" "help"
run info
expect_rc 2 "no model"
expect_err "srlm info: error: --model DIR is required" "no model"
run info --model "$T/llama" --frobnicate
expect_rc 2 "unknown flag"
expect_err "unknown argument '--frobnicate'" "unknown flag"
run info --model
expect_rc 2 "--model without a value"
run info --model "$T/nope"
expect_rc 1 "no such dir"
expect_err "$T/nope/config.json: cannot open" "no such dir"

echo "info.sh: $pass passed, $fail failed"
[ "$fail" = 0 ]
