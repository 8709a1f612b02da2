#!/usr/bin/env bash
# Countdown end to end, small: `srlm task --task countdown` (check, judge, sft-data,
# prompts), a quick SFT from scratch (configs/countdown-tiny-m1.yaml), then `srlm train`
# for 2 iterations: as a prompt set with data.checker countdown and the text judge
# (configs/countdown-prompts.yaml: self-judged DPO and verifier GRPO), and as the built-in
# task (task.name countdown: configs/methods/countdown-selfreward.yaml and
# countdown-grpo-verifier.yaml) colocated, with separate roles (2 judges) and killed +
# resumed, both bit-identical to the colocated run, and judge.mode regex (the last three
# outside SRLM_TEST_QUICK); then `srlm task eval --task countdown`. The tiny model learns little in seconds: this checks the
# plumbing and the metrics, not the gains.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
mkdir -p "$tmp/runs/countdown-data"

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
"$srlm" train -c configs/countdown-prompts.yaml $small run.name=selfreward >"$tmp/selfreward.out" \
  2>"$tmp/selfreward.err" || { fail "train selfreward (prompt set)"; tail -5 "$tmp/selfreward.err" >&2; }
verifier="judge.source=verifier train.loss=grpo train.beta=0.04 train.grpo_equal_groups=drop"
"$srlm" train -c configs/countdown-prompts.yaml $small $verifier run.name=grpo-verifier >"$tmp/grpo-verifier.out" \
  2>"$tmp/grpo-verifier.err" || { fail "train grpo-verifier (prompt set)"; tail -5 "$tmp/grpo-verifier.err" >&2; }
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
# srlm generate on Countdown through the task interface: best-of-N with the model's own
# judge (expected scores in [1, 5], the best printed) and the checker, ARGS's judge reward
head -3 "$d/eval.jsonl" | sed 's/"prompt"/"text"/' >"$tmp/cd-gen.jsonl"
for r in judge verifier; do
  "$srlm" generate --model "$m1" --jsonl "$tmp/cd-gen.jsonl" --max-new-tokens 16 --best-of 3 --reward $r --task countdown \
    >"$tmp/cd-bo-$r.out" 2>"$tmp/cd-bo-$r.err" || { fail "generate --best-of --reward $r --task countdown"; tail -2 "$tmp/cd-bo-$r.err" >&2; }
done
python3 - "$tmp/cd-bo-judge.out" "$tmp/cd-bo-verifier.out" <<'PY' || fails=$((fails + 1))
import json, sys
bad = []
for path, lo, hi in ((sys.argv[1], 1, 5), (sys.argv[2], 0, 1)):
    out = [json.loads(l) for l in open(path)]
    if len(out) != 3 or any(len(o["scores"]) != 3 or o["score"] != max(o["scores"]) or
                            not all(lo <= x <= hi for x in o["scores"]) for o in out):
        bad.append("%s: %r" % (path, out))
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
"$srlm" generate --model "$m1" --jsonl "$tmp/cd-gen.jsonl" --max-new-tokens 8 --temperature 0 --task countdown \
  --args-reward judge --args-top-k 2 >/dev/null 2>"$tmp/cd-args.err" || fail "ARGS judge on Countdown: $(tail -1 "$tmp/cd-args.err")"
grep -q "ARGS (judge reward, weight 1, top 2): [1-9][0-9]* candidates judged" "$tmp/cd-args.err" || fail "ARGS judge on Countdown: $(tail -1 "$tmp/cd-args.err")"
echo '{"text":"C3,7T5"}' >"$tmp/cd-bad.jsonl"
"$srlm" generate --model "$m1" --jsonl "$tmp/cd-bad.jsonl" --best-of 2 --reward judge --task countdown >/dev/null 2>"$tmp/cd-bad.err"
[ $? -eq 1 ] && grep -q "input 1: --task countdown: \"C3,7T5\" is not one of its prompts" "$tmp/cd-bad.err" \
  || fail "a malformed prompt under --task countdown: $(tail -1 "$tmp/cd-bad.err")"
# a prompt set without a checker cannot use the verifier
"$srlm" train -c configs/countdown-prompts.yaml $small $verifier run.name=x data.checker=none >/dev/null 2>"$tmp/x.err"
grep -q "judge.source.*verifier needs a checker" "$tmp/x.err" || fail "verifier without a checker: $(tail -1 "$tmp/x.err")"
# The built-in task (task.name countdown): fresh seeded puzzles, the task judge (greedy
# rationale up to ';', expected score), judge replay, held-out evaluation; one process,
# then separate roles (1 learner, 1 generator, 2 judges) and a run killed after its first
# learning checkpoint and resumed: both bit-identical to the first (check.sh same_run)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" # Open MPI's own allocations (see comm_mpi.sh)
. "$(dirname "$0")/lib/check.sh" # same_run
task="run.out_dir=$tmp/runs model.path=$m1 task.prompts_per_iteration=24 task.eval_prompts=32
  generate.samples_per_prompt=4 run.iterations=2 train.batch_size=4 judge.replay_per_verdict=8 roles.shard_prompts=8
  roles.colocate=true train.checkpoint_every=2"
"$srlm" train -c configs/methods/countdown-selfreward.yaml $task run.name=t1 >"$tmp/t1.out" 2>"$tmp/t1.err" \
  || { fail "built-in task run"; tail -5 "$tmp/t1.err" >&2; }
# (SRLM_TEST_QUICK, the sanitizer stage: the verifier, regex and kill-and-resume runs are
# the Release stage's)
names="t1"
if [ -z "${SRLM_TEST_QUICK:-}" ]; then
  names="t1 tv tr"
  "$srlm" train -c configs/methods/countdown-grpo-verifier.yaml $task run.name=tv >/dev/null 2>"$tmp/tv.err" \
    || { fail "built-in task verifier GRPO"; tail -5 "$tmp/tv.err" >&2; }
  "$srlm" train -c configs/methods/countdown-selfreward.yaml $task run.name=tr judge.mode=regex >/dev/null \
    2>"$tmp/tr.err" || { fail "built-in task judge.mode regex"; tail -5 "$tmp/tr.err" >&2; }
fi
python3 - "$tmp/runs" $names <<'PY' || fails=$((fails + 1))
import json, sys
runs = sys.argv[1]
bad = []
def lines(name, ev):
    return [o for o in (json.loads(l) for l in open("%s/%s/metrics.jsonl" % (runs, name))) if o.get("event") == ev]
for name in sys.argv[2:]:
    evals, its = lines(name, "eval"), lines(name, "iteration")
    if [e["iteration"] for e in evals] != [0, 1, 2] or len(its) != 2:
        bad.append("%s: eval iterations %s, %d iteration lines" % (name, [e["iteration"] for e in evals], len(its)))
    for e in evals:
        for k in ("accuracy", "sample_accuracy", "judge_agreement", "judge_agreement_greedy", "judge_agreement_expected"):
            if not isinstance(e.get(k), float) or not 0 <= e[k] <= 1:
                bad.append("%s eval %d: %s = %r" % (name, e["iteration"], k, e.get(k)))
        if e.get("prompts") != 32 or not 0 <= e.get("judge_format_failures", -1) <= 32:
            bad.append("%s eval %d: %s" % (name, e["iteration"], e))
    for l in its:
        if l["samples"] != 96:
            bad.append("%s iteration %d: %d samples" % (name, l["iteration"], l["samples"]))
        judged = 0 if name == "tv" else 96  # the task judge judged every sample once; the checker alone for tv
        if l["judgments"] != judged or not 0 <= l["judge_format_failures"] <= judged:
            bad.append("%s iteration %d: %d judgments, %d format failures" % (name, l["iteration"], l["judgments"],
                                                                             l["judge_format_failures"]))
        if not 1 <= l.get("mean_response_tokens", 0) <= 26:  # an answer is at most 24 bytes + EOS, cut at 26
            bad.append("%s iteration %d: mean_response_tokens %r" % (name, l["iteration"], l.get("mean_response_tokens")))
        if name == "t1" and not 0 < l["replay"] <= 16:  # replay_per_verdict 8, two verdicts
            bad.append("t1 iteration %d: %d replayed judgments" % (l["iteration"], l["replay"]))
    print("%s: accuracy %s, judge agreement %s, format failures %s, pairs/groups %s, replay %s" % (name,
          [e["accuracy"] for e in evals], [e["judge_agreement"] for e in evals],
          [l["judge_format_failures"] for l in its], [l["pairs"] for l in its], [l.get("replay") for l in its]),
          file=sys.stderr)
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
# the shards hold the task judge's greedy judgments: rationale ';' score digit (or no score)
"$srlm" rollouts "$tmp/runs/t1/iter_1/rollouts.h5" 2>/dev/null | python3 -c '
import json, re, sys
resp = [r for r in (json.loads(l) for l in sys.stdin) if "score" in r]
ok = [r for r in resp if re.fullmatch(r"[^;]+;[1-5]", r["judgments"][0])]
print("task judgments: %d of %d parse" % (len(ok), len(resp)), file=sys.stderr)
sys.exit(0 if len(resp) == 96 and ok and all(1 <= r["score"] <= 5 for r in resp) else 1)' || fail "t1 rollouts"
if command -v mpirun >/dev/null 2>&1; then
  timeout 120 mpirun --oversubscribe --bind-to none -np 4 "$srlm" train -c configs/methods/countdown-selfreward.yaml \
    $task run.name=t4 roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=2 >/dev/null 2>"$tmp/t4.err" \
    || { fail "built-in task, separate roles"; tail -5 "$tmp/t4.err" >&2; }
  same_run "$tmp/runs" 2 t1 t4
fi
if [ -z "${SRLM_TEST_QUICK:-}" ]; then
  SRLM_STOP_AT_CHECKPOINT=any "$srlm" train -c configs/methods/countdown-selfreward.yaml $task run.name=tk >/dev/null 2>"$tmp/tk.err" &
  pid=$!
  wait_line "$tmp/tk.err" "learn: checkpoint after step" "$pid" || fail "no learning checkpoint line in $tmp/tk.err"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  "$srlm" train -c configs/methods/countdown-selfreward.yaml $task run.name=tk --resume >/dev/null 2>"$tmp/tk2.err" \
    || { fail "built-in task resume"; tail -3 "$tmp/tk2.err" >&2; }
  same_run "$tmp/runs" 2 t1 tk
fi

# the held-out evaluation of a saved model
"$srlm" task eval --task countdown --model "$m1" --n 24 >"$tmp/eval.out" 2>/dev/null || fail "task eval"
grep -qE '^\{"event":"eval","task":"countdown","split":"eval","n":24,"seed":0,"accuracy":[01]\.[0-9]{6},"judge_agreement":[01]\.[0-9]{6},' \
  "$tmp/eval.out" || fail "task eval output: $(cat "$tmp/eval.out")"
echo "countdown.sh: $fails failed"
[ "$fails" -eq 0 ]
