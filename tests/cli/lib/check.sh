# Shared checks of the CLI test scripts (sourced; not a test itself). The caller sets TMP (a
# scratch folder) and the counters fails=0 checks=0.

fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# expect_error CODE "part of stderr" -- command...
expect_error() {
  local code=$1 want=$2
  shift 3
  checks=$((checks + 1))
  "$@" > "$TMP/out" 2> "$TMP/err"
  local rc=$?
  local got
  got=$(cat "$TMP/err")
  [ "$rc" = "$code" ] || fail "'$*': exit $rc, expected $code (stderr: $got)"
  case "$got" in
    *"$want"*) ;;
    *) fail "'$*': stderr
  got:      $got
  expected: ...$want..." ;;
  esac
}

# expect_ok -- command... (stdout in $TMP/out)
expect_ok() {
  checks=$((checks + 1))
  "$@" > "$TMP/out" 2> "$TMP/err" || fail "'$*': exit $?: $(cat "$TMP/err")"
}

# same_run RUNS ITER REF NAME: run NAME's final weights (RUNS/NAME/iter_ITER) are bit-identical
# to run REF's and its metrics.jsonl equals REF's, timing fields (seconds, tokens_per_s) aside
same_run() {
  local runs=$1 it=$2 ref=$3 name=$4
  cmp -s "$runs/$ref/iter_$it/model/model.safetensors" "$runs/$name/iter_$it/model/model.safetensors" \
    || fail "$name: final weights differ from $ref's"
  python3 - "$runs/$ref/metrics.jsonl" "$runs/$name/metrics.jsonl" <<'PY' || fail "$name: metrics.jsonl differs from $ref's"
import json, sys
def ev(p):
    out = []
    for l in open(p):
        o = json.loads(l)
        for k in ("seconds", "tokens_per_s"): o.pop(k, None)
        out.append(o)
    return out
a, b = ev(sys.argv[1]), ev(sys.argv[2])
for i, (x, y) in enumerate(zip(a, b)):
    if x != y: print("line %d:\n  %s\n  %s" % (i + 1, x, y), file=sys.stderr); break
sys.exit(0 if a == b else 1)
PY
}
