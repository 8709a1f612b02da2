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

# wait_line FILE PATTERN PID: waits until FILE holds a line matching PATTERN (grep -q), or
# process PID has ended, or 900 s have passed. For the kill-and-resume tests, whose run
# stops itself at the checkpoint (SRLM_STOP_AT_CHECKPOINT), so waiting long is safe: the
# run cannot move past the line while the test waits (a sanitizer build under load takes
# well over the few seconds a fixed poll count allowed).
wait_line() {
  local file=$1 pattern=$2 pid=$3 i
  for i in $(seq 1 18000); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { grep -q -- "$pattern" "$file" 2>/dev/null; return; }
    sleep 0.05
  done
  return 1
}
