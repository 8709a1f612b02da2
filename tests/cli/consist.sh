#!/usr/bin/env bash
# Issue 11's consistency methods through `srlm train`, small (a fresh 2-layer model, no SFT:
# the point is the data construction and its counts, not what the model learns): ScPO
# (pairs.source votes, judge.source none), DICE (pairs.source implicit, length alpha,
# experience replay of iteration t-1's pairs), CREAM (soft labels from rank consistency) and
# SCIR (judge pairs the implicit reward disagrees with, down-weighted). Checks that each
# runs, that its counters in the iteration lines add up, that DICE and CREAM resume bit for
# bit after a kill inside the learning (their state across iterations: the models M_{t-2},
# M_{t-3} and iter_<t-1>/rollouts.h5), and that separate roles with 2 learners make the
# same pairs as one process. Then the config errors.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
mpi_env
no_leak_checks
base="$tiny_quickstart
  run.iterations=3 task.prompts_per_iteration=32 task.eval_prompts=16 eval.every=3 generate.samples_per_prompt=4
  judge.replay_per_verdict=8 train.batch_size=4 train.lr=1e-3 pairs.min_margin=0 roles.shard_prompts=8
  roles.threads=1 train.checkpoint_every=3"
scpo="judge.source=none pairs.source=votes pairs.vote_threshold=0.25 generate.temperature=0.5 train.nll_weight=1"
dice="judge.source=none pairs.source=implicit pairs.length_alpha_auto=true pairs.replay_fraction=0.5"
cream="judge.source=none pairs.source=implicit pairs.consistency=cream"
scir="pairs.consistency=scir pairs.disagree_drop=false pairs.disagree_weight=0.25"

for m in scpo dice cream scir; do
  "$srlm" train $base run.name=$m ${!m} >/dev/null 2>"$tmp/$m.err" || { fail "$m run"; tail -3 "$tmp/$m.err" >&2; }
done
python3 - "$tmp/runs" <<'PY' || fails=$((fails + 1))
import json, sys
runs = sys.argv[1]
bad = []
def its(name):
    return [json.loads(l) for l in open("%s/%s/metrics.jsonl" % (runs, name)) if '"event":"iteration"' in l]
for name in ("scpo", "dice", "cream", "scir"):
    if len(its(name)) != 3:
        bad.append("%s: %d iteration lines" % (name, len(its(name))))
for l in its("scpo"):  # every prompt gives a pair or is dropped for one reason; no judgments
    d = l["votes_one_answer"] + l["votes_tie"] + l["votes_below_threshold"]
    if l["votes_kept"] + l["votes_dropped"] != 32 or d != l["votes_dropped"] or l["judgments"] != 0 \
            or l["pairs"] != l["votes_kept"] or not 0 <= l["samples_without_answer"] <= 128:
        bad.append("scpo iteration %d: %s" % (l["iteration"], l))
    w = l["pair_weight_mean"]
    if l["pairs"] and not 0 < w <= 1:
        bad.append("scpo iteration %d: mean weight %r" % (l["iteration"], w))
dice = its("dice")
for prev, l in zip([None] + dice, dice):  # replay: round(0.5 x the previous iteration's own pairs)
    want = 0 if prev is None else int(0.5 * (prev["pairs"] - prev["pairs_replayed"]) + 0.5)
    if l["pairs_replayed"] != want or not (l["length_alpha"] or 0) >= 0 or l["pairs"] <= l["pairs_replayed"]:
        bad.append("dice iteration %d: replayed %r (want %d), alpha %r, pairs %r" % (
            l["iteration"], l["pairs_replayed"], want, l["length_alpha"], l["pairs"]))
for l in its("cream"):  # C = 1 at iteration 1 (no previous ranking), then in [0, 1]
    c = l["consistency_mean"]
    if c is None or not 0 <= c <= 1 or (l["iteration"] == 1 and c != 1):
        bad.append("cream iteration %d: mean C %r" % (l["iteration"], c))
for l in its("scir"):  # kept with weight 0.25: mean weight = 1 - 0.75 disagree / pairs
    if l["pairs"] and abs(l["pair_weight_mean"] - (1 - 0.75 * l["pairs_disagree"] / l["pairs"])) > 1e-12:
        bad.append("scir iteration %d: %r disagree of %r pairs, mean weight %r" % (
            l["iteration"], l["pairs_disagree"], l["pairs"], l["pair_weight_mean"]))
for name in ("scpo", "dice", "cream", "scir"):
    print("%s: pairs %s" % (name, [l["pairs"] for l in its(name)]), file=sys.stderr)
print("dice: replayed %s, alpha %s; cream: C %s; scir: disagree %s" % (
    [l["pairs_replayed"] for l in dice], [l["length_alpha"] for l in dice],
    [l["consistency_mean"] for l in its("cream")], [l["pairs_disagree"] for l in its("scir")]), file=sys.stderr)
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
grep -q "iteration 1 votes: " "$tmp/scpo.err" || fail "scpo: no votes line"

# resume: killed right after a learning checkpoint of iteration 3 (M_{t-2}, M_{t-3} and
# iteration 2's pairs are read again), and killed at a point in time
for m in dice cream; do
  SRLM_STOP_AT_CHECKPOINT=3 "$srlm" train $base run.name=${m}k ${!m} >/dev/null 2>"$tmp/${m}k.err" & # stops there
  pid=$!
  wait_line "$tmp/${m}k.err" "iteration 3 learn: checkpoint after step" "$pid" || fail "no learning checkpoint line in $tmp/${m}k.err"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  "$srlm" train $base run.name=${m}k ${!m} --resume >/dev/null 2>"$tmp/${m}k2.err" \
    || { fail "${m}k: resume"; tail -3 "$tmp/${m}k2.err" >&2; }
  grep -q "inside an iteration's learning" "$tmp/${m}k2.err" || fail "${m}k: did not resume inside the learning"
  same_run "$tmp/runs" 3 $m ${m}k
done

# separate roles, 2 learners and 2 judges: the learners split the implicit reward; the
# pairs (and so the counts) are those of one process
if command -v mpirun >/dev/null 2>&1; then
  sep="roles.colocate=false roles.learners=2 roles.generators=1 roles.judges=2"
  timeout 300 mpirun --oversubscribe -np 5 "$srlm" train $base $sep run.name=dice5 $dice >/dev/null 2>"$tmp/dice5.err" \
    || { fail "dice, 5 ranks"; tail -3 "$tmp/dice5.err" >&2; }
  python3 - "$tmp/runs/dice/metrics.jsonl" "$tmp/runs/dice5/metrics.jsonl" <<'PY' || fail "dice: 5 ranks made other pairs"
import json, sys
keys = ("pairs", "pairs_replayed", "samples", "length_alpha")
a, b = [[{k: json.loads(l).get(k) for k in keys} for l in open(p) if '"event":"iteration"' in l][:1] for p in sys.argv[1:]]
print("1 process: %s\n5 ranks:   %s" % (a, b), file=sys.stderr)
sys.exit(0 if a == b and a else 1)
PY
fi

# config errors name the key
"$srlm" train $base run.name=bad judge.source=none >/dev/null 2>"$tmp/bad.err"
grep -q "judge.source.*pairs.source" "$tmp/bad.err" || fail "judge.source none with judge pairs: $(tail -1 "$tmp/bad.err")"
"$srlm" train $base run.name=bad pairs.consistency=cream >/dev/null 2>"$tmp/bad.err"
grep -q "pairs.consistency.*implicit" "$tmp/bad.err" || fail "cream without the implicit reward: $(tail -1 "$tmp/bad.err")"
"$srlm" train $base run.name=bad pairs.vote_threshold=1.5 >/dev/null 2>"$tmp/bad.err"
grep -q "pairs.vote_threshold" "$tmp/bad.err" || fail "vote_threshold 1.5: $(tail -1 "$tmp/bad.err")"
echo "consist.sh: $fails failed"
[ "$fails" -eq 0 ]
