#!/usr/bin/env bash
# The self-rewarding iterations on the sign puzzle, small: a quick SFT makes M1, then
# `srlm train` runs 2 iterations (generate, judge, pairs, DPO + NLL + judge replay, eval).
# Checks the files and metrics the issue asks for (iter_<t>/model, metrics.jsonl eval lines
# with accuracy and judge_agreement for t = 0..2, summary.json, the table), that a second
# run with the same seed gives bit-identical weights, GRPO with the verifier as the reward, and
# the judge's two counts named apart (judge_format_failures, judgments_without_score).
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
sign_m1
small="run.out_dir=$tmp/runs model.path=$m1 run.iterations=2 task.prompts_per_iteration=48
  generate.samples_per_prompt=4 task.eval_prompts=64 judge.replay_per_verdict=32 train.batch_size=16 pairs.min_margin=0"
"$srlm" train -c configs/quickstart.yaml $small run.name=a >"$tmp/a.out" 2>"$tmp/a.err" \
  || { fail "train exited non-zero"; tail -5 "$tmp/a.err" >&2; }
run=$tmp/runs/a
for f in config.yaml summary.json metrics.jsonl iter_1/model/model.safetensors iter_2/model/model.safetensors \
         iter_2/model/tokenizer.json; do
  [ -s "$run/$f" ] || fail "missing $run/$f"
done
python3 - "$run/metrics.jsonl" "$run/summary.json" <<'PY' || fails=$((fails + 1))
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
evals = [l for l in lines if l.get("event") == "eval"]
bad = []
if [e["iteration"] for e in evals] != [0, 1, 2]:
    bad.append("eval iterations %s" % [e["iteration"] for e in evals])
for e in evals:
    for k in ("accuracy", "judge_agreement"):
        if not isinstance(e.get(k), float) or not 0 <= e[k] <= 1:
            bad.append("eval %d: %s = %r" % (e["iteration"], k, e.get(k)))
learn = [l for l in lines if l.get("event") == "learn"]
if not learn:
    bad.append("no learn lines")
# the per-step metrics the issue lists
for k in ("loss", "logp_chosen", "logp_rejected", "reward_chosen", "reward_rejected", "margin", "reward_accuracy",
          "kl", "grad_norm", "len_chosen", "len_rejected", "tokens_per_s"):
    if learn and not all(isinstance(l.get(k), (int, float)) for l in learn):
        bad.append("learn lines lack a number for %s: %s" % (k, learn[0]))
its = [l for l in lines if l.get("event") == "iteration"]
if len(its) != 2 or any(l["pairs"] <= 0 for l in its):
    bad.append("iteration lines: %s" % its)
# the judge's two counts, named apart: judge.mode expected reads a score from the score
# tokens whether or not the greedy judgment parses, so no judgment lacks a score
for l in its:
    if l.get("judgments") != l["samples"] or not 0 <= l.get("judge_format_failures", -1) <= l["judgments"] \
            or l.get("judgments_without_score") != 0:
        bad.append("iteration %d: judgments %r, judge_format_failures %r, judgments_without_score %r (want 0)"
                   % (l["iteration"], l.get("judgments"), l.get("judge_format_failures"),
                      l.get("judgments_without_score")))
for e in evals:
    if not 0 <= e.get("judge_format_failures", -1) <= 64:
        bad.append("eval %d: judge_format_failures %r" % (e["iteration"], e.get("judge_format_failures")))
s = json.load(open(sys.argv[2]))
if s.get("iterations_done") != 2 or len(s.get("iterations", [])) != 3:
    bad.append("summary: %s" % s)
for b in bad:
    print("FAIL:", b, file=sys.stderr)
print("eval accuracy %s, judge agreement %s" % ([round(e["accuracy"], 3) for e in evals],
      [round(e["judge_agreement"], 3) for e in evals]), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
grep -q '^iter 2 ' "$tmp/a.out" || fail "no table row for iteration 2: $(cat "$tmp/a.out")"
grep -q ' judge_fmt  *no_score ' "$tmp/a.out" || fail "no judge_fmt/no_score columns: $(head -1 "$tmp/a.out")"
# "iter 2" is two words: the cells of the header's column k are field k + 1 of the row
[ "$(awk 'NR == 1 { for (k = 1; k <= NF; k++) if ($k == "no_score") c = k + 1 } /^iter 2 / { print $c }' \
    "$tmp/a.out")" = "0.0%" ] || fail "iteration 2's no_score cell is not 0.0%: $(grep '^iter 2' "$tmp/a.out")"
grep -q 'iteration 1 rollouts: 48/48 prompts generated and judged' "$tmp/a.err" || fail "no rollout progress line"
# same seed, same layout: bit-identical weights
"$srlm" train -c configs/quickstart.yaml $small run.name=b >/dev/null 2>&1 || fail "second run"
cmp -s "$run/iter_2/model/model.safetensors" "$tmp/runs/b/iter_2/model/model.safetensors" \
  || fail "two runs with the same seed gave different weights"
# GRPO in the iterations: groups of K samples, learn lines with KL and clip fraction, and
# the verifier as the reward source (judge.source verifier): the groups' rewards are then
# score_max / score_min by the checker
"$srlm" train -c configs/quickstart.yaml $small run.name=c train.loss=grpo train.batch_size=4 train.lr=1e-4 \
  train.beta=0.04 judge.source=verifier eval.every=2 >"$tmp/c.out" 2>"$tmp/c.err" || { fail "grpo run"; tail -3 "$tmp/c.err" >&2; }
# eval.every 2: M0 and M2 evaluated, M1 not (its table cells are "-")
[ "$(grep -c '"event":"eval"' "$tmp/runs/c/metrics.jsonl")" -eq 2 ] || fail "eval.every=2: want 2 eval lines"
grep -q '^iter 1  *- ' "$tmp/c.out" || fail "eval.every=2: iteration 1 row should show '-': $(grep '^iter 1' "$tmp/c.out")"
grep -q "iteration 2 groups: 48 groups of 4 samples" "$tmp/c.err" || fail "grpo: no groups line: $(grep groups "$tmp/c.err")"
python3 - "$tmp/runs/c/metrics.jsonl" <<'PY' || fails=$((fails + 1))
import json, sys
learn = [json.loads(l) for l in open(sys.argv[1]) if '"learn"' in l]
ok = learn and all(isinstance(l.get("kl"), float) and isinstance(l.get("clip_fraction"), float) for l in learn)
print("grpo learn lines: %d" % len(learn), file=sys.stderr)
sys.exit(0 if ok else 1)
PY
"$srlm" rollouts "$tmp/runs/c/iter_1/rollouts.h5" >"$tmp/c.r1" || fail "srlm rollouts"
python3 - "$tmp/c.r1" <<'PY' || fails=$((fails + 1))
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
resp = [r for r in rows if "score" in r]
bad = [r for r in resp if r["score"] not in (0.0, 5.0) or r["judgments"][0] not in ("checker: right", "checker: wrong")]
print("verifier rewards: %d right of %d" % (sum(r["score"] == 5.0 for r in resp), len(resp)), file=sys.stderr)
sys.exit(1 if bad or rows[-1]["pairs"]["groups"] != 48 else 0)
PY
echo "selfreward.sh: $fails failed"
[ "$fails" -eq 0 ]
