#!/usr/bin/env bash
# bench/methods.sh, the methods comparison harness, small: 1 seed, 1 iteration, 2 methods
# (selfreward, grpo-verifier) with tiny data, M1 and prompt counts through its --data,
# --m1-set and --set, on the sign puzzle (outside SRLM_TEST_QUICK, the sanitizer stage,
# also Countdown, grpo-selfjudged and west-of-n). Checks: the table (table.md, table.json) has one row per method and
# task, and its numbers are the runs' metrics.jsonl's (recomputed here); a second call
# runs nothing (finished runs are kept); after one run's folder is removed, only that run
# runs again; a missing method config is an error naming it; --skip-file skips with the
# reason printed; --plan prints the estimate.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
no_leak_checks
rm -rf "$tmp/mb" && mkdir -p "$tmp"
# the sanitizer stage: the sign puzzle, 2 methods; the Release stage: both tasks and every
# method config of this harness's own (the others' have their own tests)
tasks=sign_puzzle methods=selfreward,grpo-verifier
[ -n "${SRLM_TEST_QUICK:-}" ] || tasks=sign_puzzle,countdown methods=selfreward,grpo-selfjudged,grpo-verifier,west-of-n
layout=separate
command -v mpirun >/dev/null 2>&1 || layout=colocated
bench() {
  bash bench/methods.sh --srlm "$srlm" --seeds 5 --iterations 1 --tasks $tasks --layout $layout --out "$tmp/mb" \
    --data "--instructions 200 --judge 400" --m1-set train.epochs=2 --m1-set train.warmup_steps=5 \
    --set task.prompts_per_iteration=16 --set task.eval_prompts=16 --set generate.samples_per_prompt=4 \
    --set judge.replay_per_verdict=8 --set train.batch_size=4 --set pairs.min_margin=0 "$@"
}
bench --methods $methods >"$tmp/b1.out" 2>"$tmp/b1.err" || { fail "bench run"; tail -5 "$tmp/b1.err" >&2; }
grep -q "^# estimate: [0-9]* of [0-9]* runs and [0-9]* M1s to do, about [0-9]* min" "$tmp/b1.out" \
  || fail "no estimate: $(head -5 "$tmp/b1.out")"
python3 - "$tmp/mb" "$tasks" "$methods" <<'PY' || fails=$((fails + 1))
import json, os, sys
out, tasks, methods = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
bad = []
doc = json.load(open(os.path.join(out, "table.json")))
md = open(os.path.join(out, "table.md")).read()
want = [(t, m) for t in tasks for m in methods]
got = [(r["task"], r["method"]) for r in doc["rows"]]
if got != want:
    bad.append("table.json rows %s, want %s" % (got, want))
rows_md = [l for l in md.splitlines() if l.startswith("| ") and not l.startswith("| task")]
if [tuple(c.strip() for c in l.split("|")[1:3]) for l in rows_md] != want:
    bad.append("table.md rows: %s" % rows_md)
for r in doc["rows"]:
    path = os.path.join(out, r["task"], "seed5", "runs", r["method"], "metrics.jsonl")
    lines = [json.loads(l) for l in open(path)]
    ev = {o["iteration"]: o for o in lines if o["event"] == "eval"}
    it = {o["iteration"]: o for o in lines if o["event"] == "iteration"}
    v = r["seeds"]["5"]
    exp = {"accuracy@0": 100 * ev[0]["accuracy"], "accuracy@1": 100 * ev[1]["accuracy"],
           "judge_agreement@0": 100 * ev[0]["judge_agreement"], "judge_agreement@1": 100 * ev[1]["judge_agreement"],
           "format_failures@1": 100 * it[1]["judge_format_failures"] / it[1]["judgments"] if it[1]["judgments"] else None,
           "response_tokens": it[1]["mean_response_tokens"], "pairs": it[1]["pairs"]}
    for k, x in exp.items():
        y = v.get(k)
        if (x is None) != (y is None) or (x is not None and abs(x - y) > 1e-9):
            bad.append("%s %s: %s = %r, metrics.jsonl says %r" % (r["task"], r["method"], k, y, x))
    if r["summary"]["accuracy@1"]["mean"] != v["accuracy@1"] or not v["wall_s"] >= 0:
        bad.append("%s %s: summary %s" % (r["task"], r["method"], r["summary"]))
    if r["method"] == "grpo-verifier" and v["format_failures@1"] is not None:
        bad.append("grpo-verifier: format failures without model judgments")
    if not 1 <= v["response_tokens"] <= 26 or it[1]["samples"] != 64:  # --set: 16 prompts x 4 samples
        bad.append("%s %s: %r tokens per response, %r samples" % (r["task"], r["method"], v["response_tokens"],
                                                                  it[1]["samples"]))
    cells = [l for l in rows_md if l.split("|")[1].strip() == r["task"] and l.split("|")[2].strip() == r["method"]]
    if not cells or cells[0].split("|")[3].strip() != "%.1f" % v["accuracy@0"]:
        bad.append("table.md %s %s: %s (accuracy@0 %.1f)" % (r["task"], r["method"], cells, v["accuracy@0"]))
print("table: %d rows; %s" % (len(got), "; ".join("%s %s acc %.1f -> %.1f" % (r["task"], r["method"],
      r["seeds"]["5"]["accuracy@0"], r["seeds"]["5"]["accuracy@1"]) for r in doc["rows"])), file=sys.stderr)
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
grep -q "^# Methods comparison" "$tmp/b1.out" || fail "no table on stdout"
# finished runs are kept: a second call runs nothing
bench --methods $methods >"$tmp/b2.out" 2>&1 || fail "second call: $(tail -3 "$tmp/b2.out")"
[ "$(grep -c 'done before' "$tmp/b2.out")" -eq "$(grep -c '^| ' "$tmp/mb/table.md" | awk '{ print $1 - 1 }')" ] \
  && ! grep -q "srlm train" "$tmp/b2.out" && grep -q "^# estimate: 0 of" "$tmp/b2.out" \
  || fail "second call ran again: $(grep '^==\|^#' "$tmp/b2.out" | head -8)"
# an interrupted comparison continues: only the missing run runs again
rm -rf "$tmp/mb/sign_puzzle/seed5/runs/grpo-verifier"
bench --methods $methods >"$tmp/b3.out" 2>&1 || fail "third call: $(tail -3 "$tmp/b3.out")"
[ "$(grep -c 'srlm train' "$tmp/b3.out")" -eq 1 ] && grep -q "grpo-verifier sign_puzzle seed 5: .*srlm train" "$tmp/b3.out" \
  || fail "after removing one run: $(grep '^==' "$tmp/b3.out")"
# a missing method config is an error naming it; a listed one is skipped with its reason
bench --methods selfreward,no-such-method --plan >"$tmp/b4.out" 2>&1 && fail "a missing config accepted"
grep -q "missing method config: configs/methods/no-such-method.yaml" "$tmp/b4.out" || fail "missing: $(cat "$tmp/b4.out")"
printf '# test\nsign_puzzle no-such-method it needs what the test lacks\n' >"$tmp/skip.txt"
bench --methods selfreward,no-such-method --tasks sign_puzzle --skip-file "$tmp/skip.txt" --plan >"$tmp/b5.out" 2>&1 \
  || fail "skip file: $(cat "$tmp/b5.out")"
grep -q "skipped: no-such-method on sign_puzzle: it needs what the test lacks" "$tmp/b5.out" || fail "skip: $(cat "$tmp/b5.out")"
echo "methods_bench.sh: $fails failed"
[ "$fails" -eq 0 ]
