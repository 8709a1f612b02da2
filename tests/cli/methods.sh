#!/usr/bin/env bash
# The methods of configs/methods/ on the sign puzzle, small (issue 11): a quick SFT makes M1
# (as cli.selfreward does), then 2 iterations each of DAPO-style GRPO (clip-higher, token
# mean, groups with all rewards equal dropped and counted), GSPO-style self-judged GRPO
# (sequence ratio, batch std) and West-of-N with the length-controlled pair rule. Checks
# that each runs and that its counts in metrics.jsonl add up. In a file of its own so that
# neither this nor cli.selfreward nears the 10-minute limit under ASan.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
sign_m1
small="run.out_dir=$tmp/runs model.path=$m1 run.iterations=2 task.prompts_per_iteration=48
  generate.samples_per_prompt=4 task.eval_prompts=64 judge.replay_per_verdict=32 train.batch_size=16 pairs.min_margin=0"
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
echo "methods.sh: $fails failed"
[ "$fails" -eq 0 ]
