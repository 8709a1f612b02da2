#!/usr/bin/env bash
# WARP's stages 2 and 3 (ALGORITHMS.md section 11) on finished runs of configs/methods/warp.yaml
# (or countdown-warp.yaml), one per seed: SLERP of their final models' task vectors from the
# start model (srlm merge --rule slerp; more than two fold with weights 1/i), then LITI from
# the start model toward the merge by eta (srlm merge --rule liti), then the held-out
# evaluation of the start model, each input and the merged model (srlm task eval). The
# comparison harness (bench/methods.sh) calls this after its seeds of "warp"; it also runs
# on its own.
#
# usage: bench/warp_merge.sh [--task sign|countdown] [--eta E] [--n N] [--backend NAME]
#                            --init START_MODEL_DIR --out DIR MODEL_DIR MODEL_DIR...
# writes DIR/slerp (the SLERP merge), DIR/merged (after LITI), DIR/merge.jsonl (the merges'
# summaries) and DIR/eval.jsonl (one {"model": ..., eval fields} line per model); prints a
# table to stdout. SRLM overrides the binary (default build/srlm).
set -euo pipefail
SRLM=${SRLM:-build/srlm}
task=sign eta=0.3 n=1000 init="" out="" backend=""
models=()
while [ $# -gt 0 ]; do
  case "$1" in
    --task) task=$2; shift 2 ;;
    --eta) eta=$2; shift 2 ;;
    --n) n=$2; shift 2 ;;
    --backend) backend="--backend $2"; shift 2 ;;
    --init) init=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "warp_merge.sh: unknown option $1" >&2; exit 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
[ -n "$init" ] && [ -n "$out" ] && [ ${#models[@]} -ge 2 ] ||
  { echo "warp_merge.sh: needs --init DIR, --out DIR and two or more model directories" >&2; exit 2; }
case "$task" in
  sign) task_opt="" ;;
  countdown) task_opt="--task countdown" ;;
  *) echo "warp_merge.sh: --task sign or countdown, not $task" >&2; exit 2 ;;
esac
mkdir -p "$out"
t0=$(date +%s)
"$SRLM" merge --rule slerp --init "$init" --overwrite --out "$out/slerp" "${models[@]}" >"$out/merge.jsonl"
"$SRLM" merge --rule liti --init "$init" --eta "$eta" --overwrite --out "$out/merged" "$out/slerp" >>"$out/merge.jsonl"
: >"$out/eval.jsonl"
for m in "$init" "${models[@]}" "$out/merged"; do
  # shellcheck disable=SC2086
  line=$("$SRLM" task eval $task_opt --model "$m" --n "$n" $backend 2>/dev/null)
  python3 -c 'import json,sys; o=json.loads(sys.argv[2]); o["model"]=sys.argv[1]; print(json.dumps(o))' "$m" "$line" \
    >>"$out/eval.jsonl"
done
python3 - "$out/eval.jsonl" "$eta" "$(( $(date +%s) - t0 ))" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("# WARP merge: slerp of %d runs, then liti eta %s (%s s)" % (len(rows) - 2, sys.argv[2], sys.argv[3]))
print("%-60s %9s %15s" % ("model", "accuracy", "judge_agreement"))
for r in rows:
    print("%-60s %9.4f %15.4f" % (r["model"][-60:], r["accuracy"], r.get("judge_agreement", float("nan"))))
PY
