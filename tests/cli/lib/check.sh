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
