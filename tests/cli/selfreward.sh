#!/usr/bin/env bash
# The self-rewarding iterations on the sign puzzle, small: a quick SFT makes M1, then
# `srlm train` runs 2 iterations (generate, judge, pairs, DPO + NLL + judge replay, eval).
# Checks the files and metrics the issue asks for (iter_<t>/model, metrics.jsonl eval lines
# with accuracy and judge_agreement for t = 0..2, summary.json, the table), that a second
# run with the same seed gives bit-identical weights, and GRPO with the verifier as the reward.
set -u
srlm=$1
src=${SRLM_SOURCE_DIR:?}
tmp=${SRLM_TMP:?}
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

cd "$src"
rm -rf "$tmp/runs" && mkdir -p "$tmp/runs"
"$srlm" task sft-data --seed 3 --instructions 300 --judge 600 --out "$tmp/runs/sft.jsonl" 2>/dev/null \
  || fail "task sft-data"
"$srlm" sft -c configs/quickstart-m1.yaml run.out_dir="$tmp/runs" data.sft="$tmp/runs/sft.jsonl" \
  train.epochs=10 train.batch_size=32 train.warmup_steps=10 train.lr=3e-3 2>"$tmp/sft.err" || { fail "sft"; tail -3 "$tmp/sft.err" >&2; }
m1=$tmp/runs/quickstart-m1/model
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
# The GRPO-family options from configs/methods/: DAPO (clip-higher, token mean, groups with
# all rewards equal dropped and counted), and GSPO (sequence ratio, batch std) self-judged.
# This small M1 solves too few puzzles for the checker's rewards alone to differ within a
# group, so DAPO's run mixes in the model's judgment (some groups then still tie: equal
# samples get equal scores)
for m in dapo gspo; do
  extra=""
  [ $m = dapo ] && extra="judge.source=mix judge.verifier_weight=0.5"
  "$srlm" train -c configs/methods/grpo-$m.yaml $small run.name=$m train.batch_size=4 eval.every=2 $extra \
    >"$tmp/$m.out" 2>"$tmp/$m.err" || { fail "grpo-$m run"; tail -3 "$tmp/$m.err" >&2; }
done
python3 - "$tmp/runs/dapo/metrics.jsonl" "$tmp/runs/gspo/metrics.jsonl" <<'PY' || fails=$((fails + 1))
import json, sys
bad = []
for path, drop in zip(sys.argv[1:], (True, False)):
    its = [json.loads(l) for l in open(path) if '"event":"iteration"' in l]
    if len(its) != 2:
        bad.append("%s: %d iteration lines" % (path, len(its)))
    for l in its:
        eq, dr, groups = l.get("groups_all_equal"), l.get("groups_dropped"), l["pairs"]
        # drop: every all-equal group is dropped and the rest are trained; keep: none dropped
        if not isinstance(eq, int) or dr != (eq if drop else 0) or groups + (dr or 0) != 48:
            bad.append("%s iteration %d: %r groups, %r all equal, %r dropped" % (path, l["iteration"], groups, eq, dr))
        print("%s iteration %d: %d groups trained, %d all equal, %d dropped" % (path.split("/")[-2], l["iteration"],
              groups, eq, dr), file=sys.stderr)
    learn = [json.loads(l) for l in open(path) if '"event":"learn"' in l]
    if not learn or not all(isinstance(l.get("loss"), float) for l in learn):
        bad.append("%s: learn lines %s" % (path, learn[:1]))
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
[ "$(grep -c 'groups with all rewards equal' "$tmp/dapo.err")" -eq 2 ] || fail "dapo: no groups lines"
# West-of-N (configs/methods/west-of-n.yaml) with the length-controlled pair rule
"$srlm" train -c configs/methods/west-of-n.yaml $small run.name=won generate.samples_per_prompt=6 pairs.min_margin=0.5 \
  pairs.rule=length_controlled pairs.length_rho=0.25 eval.every=2 >"$tmp/won.out" 2>"$tmp/won.err" \
  || { fail "west-of-n run"; tail -3 "$tmp/won.err" >&2; }
python3 - "$tmp/runs/won/metrics.jsonl" <<'PY' || fails=$((fails + 1))
import json, sys
its = [json.loads(l) for l in open(sys.argv[1]) if '"event":"iteration"' in l]
print("west-of-n (length controlled): pairs %s, samples %s" % ([l["pairs"] for l in its], [l["samples"] for l in its]),
      file=sys.stderr)
sys.exit(0 if len(its) == 2 and all(l["pairs"] > 0 and l["samples"] == 48 * 6 for l in its) else 1)
PY
"$srlm" train -c configs/methods/west-of-n.yaml $small run.name=bad pairs.length_rho=0.5 >/dev/null 2>"$tmp/bad.err"
grep -q "pairs.length_rho" "$tmp/bad.err" || fail "length_rho 0.5 accepted: $(tail -1 "$tmp/bad.err")"
echo "selfreward.sh: $fails failed"
[ "$fails" -eq 0 ]
