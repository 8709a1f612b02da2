#!/usr/bin/env bash
# srlm merge: tiny llama directories written here by python3 + numpy (safetensors spelled
# out by hand, independently of srlm) are merged with each rule, and every tensor of the
# result is compared with numpy's own SLERP / LITI / mean; config.json and the tokenizer
# files come from the first input, the dtype too (bf16 and f32); mismatched shapes and
# missing tensors exit 1 naming the tensor; usage errors exit 2; an existing output is
# kept without --overwrite and a failed merge leaves nothing behind.
# usage: bash merge.sh /path/to/srlm
set -u
SRLM="$1"
T="${SRLM_TMP:-$(mktemp -d)}/merge"
rm -rf "$T"
mkdir -p "$T"
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

cat >"$T/st.py" <<'EOF'
"""Tiny llama directories (mk) and numpy checks of a merge (check)."""
import json, os, struct, sys
import numpy as np

V, C, FF, L, NH, NKV = 16, 8, 12, 2, 2, 1
HS = C // NH

def names():
    out = [("model.embed_tokens.weight", (V, C))]
    for i in range(L):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (C,)), (p + "self_attn.q_proj.weight", (NH * HS, C)),
                (p + "self_attn.k_proj.weight", (NKV * HS, C)), (p + "self_attn.v_proj.weight", (NKV * HS, C)),
                (p + "self_attn.o_proj.weight", (C, NH * HS)), (p + "post_attention_layernorm.weight", (C,)),
                (p + "mlp.gate_proj.weight", (FF, C)), (p + "mlp.up_proj.weight", (FF, C)),
                (p + "mlp.down_proj.weight", (C, FF))]
    return out + [("model.norm.weight", (C,)), ("lm_head.weight", (V, C))]

def to_bf16(a):
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)

def write(path, tensors):
    header, blobs, off = {}, [], 0
    for name, dt, arr in tensors:
        b = (to_bf16(arr) if dt == "BF16" else arr.astype(np.float32)).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b = raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
        if v["dtype"] == "BF16":
            a = (np.frombuffer(b, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(b, np.float32)
        out[k] = (v["dtype"], a.reshape(v["shape"]).astype(np.float64))
    return out

def mk(d, seed, dtype, drop=None, reshape=None, zero_from=None, scale_of=None):
    os.makedirs(d, exist_ok=True)
    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": V, "hidden_size": C,
           "intermediate_size": FF, "num_hidden_layers": L, "num_attention_heads": NH,
           "num_key_value_heads": NKV, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": False, "hidden_act": "silu", "max_position_embeddings": 64,
           "torch_dtype": "bfloat16" if dtype == "BF16" else "float32", "srlm_test_seed": seed}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    json.dump({"version": "1.0", "seed": seed}, open(os.path.join(d, "tokenizer.json"), "w"))
    rng = np.random.default_rng(seed)
    ts = []
    for name, shape in names():
        if name == drop:
            continue
        if name == reshape:
            shape = (shape[0] + 1,) + shape[1:]
        a = rng.normal(0, 0.1, shape)
        if zero_from is not None and name.endswith("layernorm.weight"):
            a = read(os.path.join(zero_from, "model.safetensors"))[name][1]  # zero task vector
        if scale_of is not None and "q_proj" in name:  # parallel task vector: 2 x the other's
            base, init = scale_of
            a = read(base)[name][1] * 2 - read(init)[name][1]
        ts.append((name, dtype, a))
    write(os.path.join(d, "model.safetensors"), ts)

def slerp(d1, d2, l):
    n1, n2 = np.linalg.norm(d1), np.linalg.norm(d2)
    if n1 == 0 or n2 == 0:
        return (1 - l) * d1 + l * d2
    w = np.arccos(np.clip(np.dot(d1.ravel(), d2.ravel()) / (n1 * n2), -1, 1))
    if np.sin(w) < 1e-6:
        return (1 - l) * d1 + l * d2
    return np.sin((1 - l) * w) / np.sin(w) * d1 + np.sin(l * w) / np.sin(w) * d2

def check(out, rule, eta, lam, init, *ins):
    got = read(os.path.join(out, "model.safetensors"))
    xs = [read(os.path.join(d, "model.safetensors")) for d in ins]
    th0 = read(os.path.join(init, "model.safetensors")) if init != "-" else None
    worst = 0.0
    for name, (dt, g) in got.items():
        if dt != xs[0][name][0]:
            sys.exit(f"{name}: dtype {dt}, the first input's is {xs[0][name][0]}")
        x = [m[name][1] for m in xs]
        i0 = th0[name][1] if th0 else 0
        if rule == "slerp":
            s = x[0] - i0
            for i in range(1, len(x)):
                s = slerp(s, x[i] - i0, lam if len(x) == 2 else 1.0 / (i + 1))
        else:
            s = sum(xi - i0 for xi in x) / len(x)
        want = i0 + eta * s
        if dt == "BF16":
            want = (to_bf16(want).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
            tol = 1e-2 * max(1.0, np.abs(want).max())
        else:
            tol = 1e-6
        err = np.abs(want - g).max()
        worst = max(worst, err / tol)
        if err > tol:
            sys.exit(f"{name}: max error {err:g} > {tol:g} against numpy ({rule}, eta {eta})")
    if set(got) != set(xs[0]):
        sys.exit(f"tensors differ: {sorted(set(got) ^ set(xs[0]))}")
    print(f"ok {len(got)} tensors, worst error / tolerance {worst:.3g}")

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "mk":
        d, seed, dtype = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        kw = {}
        for a in sys.argv[5:]:
            k, v = a.split("=", 1)
            kw[k] = v
        if "scale_of" in kw:
            kw["scale_of"] = tuple(kw["scale_of"].split(","))
        mk(d, seed, dtype, **kw)
    else:
        check(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), sys.argv[6], *sys.argv[7:])
EOF
# a python3 with numpy: the one on PATH, else Debian's (launch/install-deps.sh --test installs
# python3-numpy there; a pyenv or venv python3 first on PATH may lack it)
PY=python3
python3 -c 'import numpy' 2>/dev/null || PY=/usr/bin/python3
py() { "$PY" "$T/st.py" "$@"; }
py mk "$T/init" 1 F32
py mk "$T/a" 2 F32 zero_from="$T/init"
py mk "$T/b" 3 F32 scale_of="$T/a/model.safetensors,$T/init/model.safetensors"
py mk "$T/c" 4 F32
py mk "$T/abf" 5 BF16
py mk "$T/bbf" 6 F32
py mk "$T/short" 7 F32 drop=model.layers.1.mlp.up_proj.weight
py mk "$T/wide" 8 F32 reshape=model.layers.0.self_attn.k_proj.weight

# expect NAME RC PATTERN -- ARGS...: exit status and a phrase of stderr
expect() {
  local name="$1" want="$2" pat="$3"
  shift 4
  "$SRLM" merge "$@" >"$T/out.txt" 2>"$T/err.txt"
  local rc=$?
  if [ "$rc" != "$want" ]; then
    bad "$name: exit $rc, expected $want; stderr: $(cat "$T/err.txt")"
  elif [ -n "$pat" ] && ! grep -q -- "$pat" "$T/err.txt"; then
    bad "$name: stderr lacks '$pat': $(cat "$T/err.txt")"
  else
    ok
  fi
}

# slerp of two (zero task vectors in the norms, parallel ones in q_proj), checked by numpy
expect slerp 0 "" -- --rule slerp --init "$T/init" --out "$T/m1" "$T/a" "$T/b"
if py check "$T/m1" slerp 1 0.5 "$T/init" "$T/a" "$T/b" >"$T/chk.txt" 2>&1; then ok; else bad "slerp check: $(cat "$T/chk.txt")"; fi
grep -q '"slerp_zero":4' "$T/out.txt" && grep -q '"slerp_parallel":2' "$T/out.txt" && ok ||
  bad "slerp summary counts (4 zero layer norms, 2 parallel q_proj): $(cat "$T/out.txt")"
cmp -s "$T/a/config.json" "$T/m1/config.json" && cmp -s "$T/a/tokenizer.json" "$T/m1/tokenizer.json" && ok ||
  bad "config.json/tokenizer.json not copied from the first input"
# lambda 0.3 and WARP's eta in the same step
expect slerp-eta 0 "" -- --rule slerp --init "$T/init" --lambda 0.3 --eta 0.3 --out "$T/m2" "$T/a" "$T/c"
if py check "$T/m2" slerp 0.3 0.3 "$T/init" "$T/a" "$T/c" >"$T/chk.txt" 2>&1; then ok; else bad "slerp eta: $(cat "$T/chk.txt")"; fi
# three inputs fold
expect slerp3 0 "" -- --rule slerp --init "$T/init" --out "$T/m3" "$T/a" "$T/b" "$T/c"
if py check "$T/m3" slerp 1 0.5 "$T/init" "$T/a" "$T/b" "$T/c" >"$T/chk.txt" 2>&1; then ok; else bad "slerp3: $(cat "$T/chk.txt")"; fi
# liti of the slerp result (default eta 0.3), then linear of three
expect liti 0 "" -- --rule liti --init "$T/init" --out "$T/m4" "$T/m1"
if py check "$T/m4" liti 0.3 0 "$T/init" "$T/m1" >"$T/chk.txt" 2>&1; then ok; else bad "liti: $(cat "$T/chk.txt")"; fi
expect linear 0 "" -- --out "$T/m5" "$T/a" "$T/b" "$T/c"
if py check "$T/m5" linear 1 0 - "$T/a" "$T/b" "$T/c" >"$T/chk.txt" 2>&1; then ok; else bad "linear: $(cat "$T/chk.txt")"; fi
# bf16 first input (f32 second): bf16 out
expect bf16 0 "" -- --rule slerp --init "$T/init" --out "$T/m6" "$T/abf" "$T/bbf"
if py check "$T/m6" slerp 1 0.5 "$T/init" "$T/abf" "$T/bbf" >"$T/chk.txt" 2>&1; then ok; else bad "bf16: $(cat "$T/chk.txt")"; fi

# errors: named tensors (exit 1), usage (exit 2), nothing half-written
expect missing 1 "model.layers.1.mlp.up_proj.weight" -- --out "$T/x1" "$T/a" "$T/short"
expect shape 1 "model.layers.0.self_attn.k_proj.weight" -- --out "$T/x2" "$T/a" "$T/wide"
[ ! -e "$T/x1" ] && [ ! -e "$T/x2" ] && [ -z "$(ls -d "$T"/x*.tmp.* 2>/dev/null)" ] && ok || bad "a failed merge left files"
expect no-init 2 "needs --init" -- --rule slerp --out "$T/x3" "$T/a" "$T/b"
expect one-slerp 2 "two or more" -- --rule slerp --init "$T/init" --out "$T/x3" "$T/a"
expect lambda3 2 "fold" -- --rule slerp --init "$T/init" --lambda 0.3 --out "$T/x3" "$T/a" "$T/b" "$T/c"
expect no-out 2 "--out" -- "$T/a" "$T/b"
expect bad-rule 2 "linear, slerp or liti" -- --rule ties --out "$T/x3" "$T/a"
expect weights 2 "expected 2 numbers" -- --weights 0.5 --out "$T/x3" "$T/a" "$T/b"
expect exists 2 "--overwrite" -- --out "$T/m5" "$T/a" "$T/b"
py check "$T/m5" linear 1 0 - "$T/a" "$T/b" "$T/c" >/dev/null 2>&1 && ok ||
  bad "an output refused without --overwrite changed"
expect overwrite 0 "" -- --overwrite --weights 0.25,0.75 --out "$T/m5" "$T/a" "$T/c"
mkdir -p "$T/notmodel" && touch "$T/notmodel/keep.txt"
expect not-model 2 "not replacing" -- --overwrite --out "$T/notmodel" "$T/a" "$T/b"
[ -e "$T/notmodel/keep.txt" ] && ok || bad "--overwrite removed a folder that is not a model directory"
expect self 2 "is also an input" -- --overwrite --out "$T/a" "$T/a" "$T/b"

echo "merge.sh: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
