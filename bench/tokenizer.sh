#!/usr/bin/env bash
# Tokenizer throughput: srlm (bench_tokenizer) against Hugging Face `tokenizers`
# (bench/tokenizer_hf.py), one thread each, same texts (each fixture's golden.jsonl)
# and passes, for Llama 3 and Qwen3. Checks that both give identical ids for every
# text (exit 1 otherwise) and prints the srlm/HF speed ratio per case.
#
# usage: bench/tokenizer.sh [BUILD_DIR] [PASSES]     (default: build, 50)
#   env SRLM_SHARED (default: ../shared next to the source), OUT (default BUILD_DIR/bench)
# Results: OUT/tokenizer_<name>_{srlm,hf}.json and the tables on stdout.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build}
PASSES=${2:-50}
SHARED=${SRLM_SHARED:-$SRC/../shared}
OUT=${OUT:-$BUILD/bench}
BENCH=$BUILD/bench/bench_tokenizer
PY=${PYTHON:-python3}

[ -x "$BENCH" ] || { echo "tokenizer.sh: $BENCH not built (cmake --build $BUILD --target bench_tokenizer)" >&2; exit 2; }
mkdir -p "$OUT"
if ! "$PY" -c "import tokenizers" 2>/dev/null; then
  echo "# installing the Hugging Face tokenizers package (pip, quietly)" >&2
  "$PY" -m pip install -q tokenizers >&2 || { echo "tokenizer.sh: pip install tokenizers failed" >&2; exit 2; }
fi
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

status=0
for name in llama3 qwen3; do
  dir=$SHARED/fixtures/tokenizers/$name
  echo "## $name"
  "$BENCH" --tokenizer "$dir" --passes "$PASSES" --json "$OUT/tokenizer_${name}_srlm.json" \
    --ids-out "$OUT/tokenizer_${name}_srlm_ids.jsonl" || status=1
  echo
  "$PY" "$SRC/bench/tokenizer_hf.py" --tokenizer "$dir" --passes "$PASSES" --json "$OUT/tokenizer_${name}_hf.json" \
    --ids-out "$OUT/tokenizer_${name}_hf_ids.jsonl"
  if cmp -s "$OUT/tokenizer_${name}_srlm_ids.jsonl" "$OUT/tokenizer_${name}_hf_ids.jsonl"; then
    echo "# ids: srlm and HF identical for all $(wc -l < "$OUT/tokenizer_${name}_hf_ids.jsonl") texts"
  else
    echo "# ids: srlm and HF DIFFER (first differing lines below)"
    diff "$OUT/tokenizer_${name}_srlm_ids.jsonl" "$OUT/tokenizer_${name}_hf_ids.jsonl" | head -4 || true
    status=1
  fi
  echo
done

echo "## srlm / HF tokenizers (single thread; > 1 means srlm is faster; load: HF time / srlm time)"
"$PY" - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
print("# %-8s %-14s %12s %12s %8s" % ("model", "case", "srlm_MB/s", "hf_MB/s", "ratio"))
for name in ("llama3", "qwen3"):
    s = {r["case"]: r for r in json.load(open(f"{out}/tokenizer_{name}_srlm.json"))["results"]}
    h = {r["case"]: r for r in json.load(open(f"{out}/tokenizer_{name}_hf.json"))["results"]}
    for case, hcase in (("encode", "encode"), ("encode_cold", "encode"), ("encode", "encode_batch"),
                        ("encode_concat", "encode_concat"), ("decode", "decode")):
        label = {"encode_batch": "encode/batch"}.get(hcase, case)
        print("  %-8s %-14s %12.2f %12.2f %8.2f" % (name, label, s[case]["mb_per_s"], h[hcase]["mb_per_s"],
                                                   s[case]["mb_per_s"] / h[hcase]["mb_per_s"]))
    print("  %-8s %-14s %11.3fs %11.3fs %8.2f" % (name, "load", s["load"]["median_s"], h["load"]["median_s"],
                                                h["load"]["median_s"] / s["load"]["median_s"]))
EOF
exit $status
