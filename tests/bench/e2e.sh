#!/usr/bin/env bash
# bench/e2e.sh's cpu preset as a CI check of the harness (issue 10), not a measurement: at the
# tiny shape, with PyTorch hidden (python3 -S: no site-packages) so the run must say it has
# no torch and still run srlm's side. Checks e2e.json's rows: the DPO step and generation
# (srlm's tokens/s > 0, torch null), the one-iteration row (every phase's seconds > 0, pairs
# trained) and the comm sweep (broadcast and all-reduce at each of the 5 bucket sizes of 64 KiB
# to 1 MiB, checked right, algbw > 0, on 2 MPI ranks where mpirun exists). Run by ctest as
# bench.e2e (label bench: the Release stage of tests/run.sh) with SRLM_BUILD_DIR and SRLM_TMP.
set -u
. "$(dirname "$0")/../cli/lib/check.sh"
cli_setup "$1"
mpi_env
build=${SRLM_BUILD_DIR:?}
out=$tmp/e2e
rm -rf "$out" && mkdir -p "$out"
printf '#!/bin/sh\nexec python3 -S "$@"\n' >"$tmp/python-no-site"
chmod +x "$tmp/python-no-site"
ranks=2
command -v mpirun >/dev/null 2>&1 || ranks=1
OUT=$out PYTHON=$tmp/python-no-site timeout 300 bash bench/e2e.sh "$build" cpu >"$tmp/e2e.out" 2>"$tmp/e2e.err" \
  || { fail "bench/e2e.sh cpu exited $?"; tail -5 "$tmp/e2e.err" >&2; }
grep -q "no torch/transformers" "$tmp/e2e.err" || fail "e2e.sh did not say that torch is missing"
for section in "srlm vs PyTorch" "one iteration, tiny shape" "comm: broadcast"; do
  grep -q "$section" "$tmp/e2e.out" || fail "the table lacks its '$section' section"
done
python3 - "$out/e2e.json" "$ranks" <<'PY' || fails=$((fails + 1))
import json, sys
rows, ranks = json.load(open(sys.argv[1]))["rows"], int(sys.argv[2])
bad = []
by = {}
for r in rows: by.setdefault(r["work"], []).append(r)
for w in ("dpo_step", "generate"):
    got = by.get(w, [])
    if len(got) != 1 or not got[0]["srlm"]["tokens_per_s"] > 0 or got[0]["torch"] is not None:
        bad.append("%s: %r" % (w, got))
it = by.get("iteration", [])
if len(it) != 1:
    bad.append("iteration rows: %r" % it)
else:
    s = it[0]["srlm"]
    for k in ("rollout", "generate", "judge", "learn", "total"):
        if not (isinstance(s.get(k), (int, float)) and s[k] > 0): bad.append("iteration %s seconds %r" % (k, s.get(k)))
    if not s["total"] >= s["rollout"] + s["learn"]: bad.append("iteration: phases %r exceed the total" % s)
    if s.get("prompts") != 16 or s.get("samples") != 64 or not s.get("pairs"): bad.append("iteration work %r" % s)
buckets = [65536 << k for k in range(5)]
for w in ("bcast_weights", "allreduce_grads"):
    got = by.get(w, [])
    if sorted(r["srlm"]["bucket"] for r in got) != buckets: bad.append("%s buckets %r" % (w, [r["srlm"]["bucket"] for r in got]))
    for r in got:
        s = r["srlm"]
        if not s["check"] or s["ranks"] != ranks or s["bytes"] != 1 << 20 or not s["algbw"] > 0:
            bad.append("%s: %r" % (w, s))
for b in bad: print("FAIL: e2e.json: " + b, file=sys.stderr)
print("e2e.json: %d rows, %d wrong" % (len(rows), len(bad)))
sys.exit(1 if bad else 0)
PY
echo "bench e2e: $fails failed"
[ "$fails" -eq 0 ]
