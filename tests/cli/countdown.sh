#!/usr/bin/env bash
# Countdown end to end, small: `srlm task --task countdown` (check, judge, sft-data,
# prompts), a quick SFT from scratch (configs/countdown-tiny-m1.yaml), then `srlm train`
# with configs/methods/countdown-selfreward.yaml and countdown-grpo-verifier.yaml for 2
# iterations each (prompt sets with data.checker countdown), and `srlm task eval --task
# countdown`. The tiny model learns little in seconds: this checks the plumbing and the
# metrics, not the gains.
set -u
srlm=$1
src=${SRLM_SOURCE_DIR:?}
tmp=${SRLM_TMP:?}
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
cd "$src"
rm -rf "$tmp/runs" && mkdir -p "$tmp/runs/countdown-data"

# checker and judge format
[ "$("$srlm" task check --task countdown --prompt C3,7,25,4T56A --answer '(25-4)*3-7')" = correct ] || fail "check: valid"
[ "$("$srlm" task check --task countdown --prompt C3,7,25,4T56A --answer '25+25+6')" = "wrong: unknown number" ] \
  || fail "check: unknown number"
[ "$("$srlm" task check --task countdown --prompt C3,7,25,4T56A --answer '7/(4-4)')" = "wrong: reused number" ] \
  || fail "check: reused"
[ "$("$srlm" task check --task countdown --prompt C3,7,25,4T56A --answer '25/4*7')" = "wrong: inexact division" ] \
  || fail "check: inexact"
[ "$("$srlm" task judge --task countdown --prompt C3,7,25,4T56A --answer '(25-4)*3-7' | tr '\n' ' ')" = \
  "C3,7,25,4T56A(25-4)*3-7S 25-4=21,21*3=63,63-7=56;5 " ] || fail "judge: $("$srlm" task judge --task countdown \
  --prompt C3,7,25,4T56A --answer '(25-4)*3-7')"
"$srlm" task check --task countdown --prompt C3,7T5 --answer 1 2>/dev/null; [ $? -eq 2 ] || fail "a bad prompt is not a usage error"
"$srlm" task check --task nosuch --prompt C3,7T5A --answer 1 2>/dev/null; [ $? -eq 2 ] || fail "--task nosuch accepted"

d=$tmp/runs/countdown-data
"$srlm" task sft-data --task countdown --seed 1 --instructions 400 --judge 800 --out "$d/sft.jsonl" 2>"$tmp/data.err" \
  || fail "sft-data"
grep -q "400 countdown instructions, 800 judge examples" "$tmp/data.err" || fail "sft-data counts: $(cat "$tmp/data.err")"
"$srlm" task prompts --task countdown --seed 1 --split train --n 400 --out "$d/train.jsonl" 2>/dev/null || fail "prompts train"
"$srlm" task prompts --task countdown --seed 1 --split eval --n 40 --out "$d/eval.jsonl" 2>/dev/null || fail "prompts eval"
[ "$(wc -l < "$d/train.jsonl")" -eq 400 ] && grep -qE '^\{"prompt": "C[0-9,]+T[0-9]+A"\}$' "$d/eval.jsonl" \
  || fail "prompt files: $(head -2 "$d/eval.jsonl")"
# held out: no eval prompt among the train prompts
[ -z "$(comm -12 <(sort -u "$d/train.jsonl") <(sort -u "$d/eval.jsonl"))" ] || fail "eval prompts among the train prompts"

# M1: a short SFT from scratch
"$srlm" sft -c configs/countdown-tiny-m1.yaml run.out_dir="$tmp/runs" data.sft="$d/sft.jsonl" train.epochs=2 \
  train.warmup_steps=5 train.batch_size=32 >/dev/null 2>"$tmp/sft.err" || { fail "sft"; tail -3 "$tmp/sft.err" >&2; }
m1=$tmp/runs/countdown-m1/model
small="run.out_dir=$tmp/runs model.path=$m1 data.prompts=$d/train.jsonl data.eval_prompts=$d/eval.jsonl
  data.prompts_per_iteration=32 generate.samples_per_prompt=4 eval.prompts=40 run.iterations=2 train.batch_size=8"
for m in selfreward grpo-verifier; do
  "$srlm" train -c configs/methods/countdown-$m.yaml $small run.name=$m >"$tmp/$m.out" 2>"$tmp/$m.err" \
    || { fail "train $m"; tail -5 "$tmp/$m.err" >&2; }
done
python3 - "$tmp/runs/selfreward/metrics.jsonl" "$tmp/runs/grpo-verifier/metrics.jsonl" <<'PY' || fails=$((fails + 1))
import json, sys
bad = []
for path in sys.argv[1:]:
    lines = [json.loads(l) for l in open(path)]
    evals = [l for l in lines if l.get("event") == "eval"]
    its = [l for l in lines if l.get("event") == "iteration"]
    if [e["iteration"] for e in evals] != [0, 1, 2] or len(its) != 2:
        bad.append("%s: eval iterations %s, %d iteration lines" % (path, [e["iteration"] for e in evals], len(its)))
    for e in evals:  # the checker's numbers on a prompt set
        for k in ("accuracy", "judge_agreement"):
            if not isinstance(e.get(k), float) or not 0 <= e[k] <= 1:
                bad.append("%s eval %d: %s = %r" % (path, e["iteration"], k, e.get(k)))
        if e.get("prompts") != 40 or not isinstance(e.get("judge_format_failures"), int):
            bad.append("%s eval %d: %s" % (path, e["iteration"], e))
    for l in its:
        if l["samples"] != 128:
            bad.append("%s iteration %d: %d samples" % (path, l["iteration"], l["samples"]))
    print("%s: accuracy %s, judge agreement %s, pairs/groups %s" % (path.split("/")[-2],
          [round(e["accuracy"], 3) for e in evals], [round(e["judge_agreement"], 3) for e in evals],
          [l["pairs"] for l in its]), file=sys.stderr)
sel = [json.loads(l) for l in open(sys.argv[1]) if '"event":"iteration"' in l]
if any(l["judgments"] != 128 for l in sel):  # the model judged every sample once
    bad.append("selfreward: judgments %s" % [l["judgments"] for l in sel])
ver = [json.loads(l) for l in open(sys.argv[2]) if '"event":"iteration"' in l]
if any(l["judgments"] != 0 or "groups_dropped" not in l for l in ver):  # the checker judged
    bad.append("grpo-verifier: %s" % ver)
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
"$srlm" rollouts "$tmp/runs/grpo-verifier/iter_1/rollouts.h5" >"$tmp/v.r1" || fail "srlm rollouts"
python3 - "$tmp/v.r1" <<'PY' || fails=$((fails + 1))
import json, sys
resp = [r for r in (json.loads(l) for l in open(sys.argv[1])) if "score" in r]
bad = [r for r in resp if r["score"] not in (1.0, 5.0) or r["judgments"][0] not in ("checker: right", "checker: wrong")]
print("verifier rewards: %d right of %d" % (sum(r["score"] == 5.0 for r in resp), len(resp)), file=sys.stderr)
sys.exit(1 if bad or len(resp) != 128 else 0)
PY
grep -q '^model .*accuracy .*judge_agr' "$tmp/selfreward.out" || fail "table header: $(head -1 "$tmp/selfreward.out")"
# a prompt set without a checker cannot use the verifier
"$srlm" train -c configs/methods/countdown-grpo-verifier.yaml $small run.name=x data.checker=none >/dev/null 2>"$tmp/x.err"
grep -q "judge.source.*verifier needs a checker" "$tmp/x.err" || fail "verifier without a checker: $(tail -1 "$tmp/x.err")"
# the held-out evaluation of a saved model
"$srlm" task eval --task countdown --model "$m1" --n 24 >"$tmp/eval.out" 2>/dev/null || fail "task eval"
grep -qE '^\{"event":"eval","task":"countdown","split":"eval","n":24,"seed":0,"accuracy":[01]\.[0-9]{6},"judge_agreement":[01]\.[0-9]{6},' \
  "$tmp/eval.out" || fail "task eval output: $(cat "$tmp/eval.out")"
echo "countdown.sh: $fails failed"
[ "$fails" -eq 0 ]
