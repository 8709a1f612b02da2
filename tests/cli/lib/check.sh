# The shared start and checks of the CLI test scripts (sourced; not a test itself). A test of
# the srlm binary (run by ctest as `bash tests/cli/NAME.sh SRLM_BIN`) begins
#   . "$(dirname "$0")/lib/check.sh"
#   need_mpirun      # only where every case needs mpirun
#   cli_setup "$1"
#   mpi_env          # where it starts mpirun
#   no_leak_checks   # where srlm (which initializes MPI) runs under the sanitizer build
# and ends with [ "$fails" -eq 0 ] (its exit status). expect_error and expect_ok write to $TMP,
# which their caller sets (scripts that skip cli_setup set fails=0 checks=0 themselves).

fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# cli_setup SRLM_BIN: sets srlm (the binary), src (SRLM_SOURCE_DIR) and tmp (SRLM_TMP; both
# must be set, the script exits otherwise), the counters fails=0 checks=0, and the tiny model
# of most train runs; moves to $src (configs/ paths are relative) and empties $tmp/runs.
#   tiny_model       a fresh 2-layer model of hidden size 32 and 64 positions (model.path= makes
#                    M0 from model.arch), as overrides;
#   tiny_quickstart  configs/quickstart.yaml with runs in $tmp/runs and tiny_model.
# A test appends its own keys (iterations, prompt counts, batch, ...); srlm applies overrides
# in order, so a key given again later (model.arch.max_seq_len=32) replaces the tiny value.
cli_setup() {
  srlm=$1
  src=${SRLM_SOURCE_DIR:?}
  tmp=${SRLM_TMP:?}
  fails=0 checks=0
  tiny_model="model.path= model.arch.hidden_size=32 model.arch.intermediate_size=64 model.arch.num_layers=2
    model.arch.num_heads=2 model.arch.max_seq_len=64"
  tiny_quickstart="-c configs/quickstart.yaml run.out_dir=$tmp/runs $tiny_model"
  cd "$src" || exit 1
  rm -rf "$tmp/runs" && mkdir -p "$tmp/runs"
}

# sign_m1: sets m1 to the sign-puzzle M1 that cli.selfreward and cli.methods start from (task
# sft-data seed 3, 300 instructions and 600 judge examples; configs/quickstart-m1.yaml, 10 epochs,
# batch 32, lr 3e-3). The SFT is deterministic, so one copy serves both: it is made once per
# srlm binary and config in the build folder ($SRLM_BUILD_DIR/tests/tmp/m1-<key>, under flock: a
# second test waits for the first; an older key's copy is removed), or in $tmp without
# SRLM_BUILD_DIR. It saved one SFT, 36 s on 2 cores under ASan.
sign_m1() {
  local args="train.epochs=10 train.batch_size=32 train.warmup_steps=10 train.lr=3e-3" key dir
  if [ -n "${SRLM_BUILD_DIR:-}" ]; then
    key=$( { sha256sum "$srlm" configs/quickstart-m1.yaml; echo "$args"; } | sha256sum | cut -c1-16)
    dir=$SRLM_BUILD_DIR/tests/tmp/m1-$key
  else
    dir=$tmp/m1
  fi
  mkdir -p "$dir" || { fail "mkdir $dir"; return; }
  (
    flock 9
    [ -e "$dir/done" ] && exit 0
    [ -n "${key:-}" ] && find "$SRLM_BUILD_DIR/tests/tmp" -maxdepth 1 -name 'm1-*' ! -name "m1-$key" -exec rm -rf {} +
    rm -rf "$dir/runs"
    "$srlm" task sft-data --seed 3 --instructions 300 --judge 600 --out "$dir/sft.jsonl" 2>"$dir/sft.err" \
      && "$srlm" sft -c configs/quickstart-m1.yaml run.out_dir="$dir/runs" data.sft="$dir/sft.jsonl" $args \
        2>>"$dir/sft.err" && touch "$dir/done"
  ) 9>"$dir/lock"
  [ -e "$dir/done" ] || { fail "M1: task sft-data or sft"; tail -3 "$dir/sft.err" >&2; }
  m1=$dir/runs/quickstart-m1/model
}

# need_mpirun: ends the test as passed (exit 0, "skipped: no mpirun") where mpirun is missing
need_mpirun() {
  command -v mpirun >/dev/null 2>&1 && return
  echo "skipped: no mpirun"
  exit 0
}

# mpi_env: mpirun may start ranks as root (containers, CI), and idle OpenMP threads sleep
# instead of spinning (several ranks share the cores)
mpi_env() { export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive; }

# no_leak_checks: under the sanitizer build, Open MPI keeps allocations to exit, many from
# components it has dlclose'd (no module name to suppress them by), so leak checks are off
# for the test's processes (memory errors are still caught; the shard code's leaks are
# checked by unit.shard)
no_leak_checks() { export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"; }

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
# to run REF's and its metrics.jsonl equals REF's, timing fields (seconds, the iteration's
# <phase>_seconds, tokens_per_s) aside
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
        for k in [k for k in o if k == "tokens_per_s" or k.endswith("seconds")]: o.pop(k)
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

# layout NAME MPIRUN_ARGS... -- OVERRIDES...: one `srlm train $base` run named NAME, in-process
# when MPIRUN_ARGS is empty, else under mpirun --oversubscribe MPIRUN_ARGS; stdout and stderr in
# $tmp/NAME.out/.err, each of its 2 iterations' rollouts dumped to $tmp/NAME.r1 and .r2, the
# table's row for iteration 2 required. The caller sets base (the shared overrides) and may set
# layout_timeout (seconds, 120 unless set).
layout() {
  local name=$1; shift
  local mpi=()
  while [ "$1" != "--" ]; do mpi+=("$1"); shift; done
  shift
  local t0=$(date +%s%N)
  if [ ${#mpi[@]} -eq 0 ]; then
    timeout "${layout_timeout:-120}" "$srlm" train $base run.name="$name" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  else
    timeout "${layout_timeout:-120}" mpirun --oversubscribe "${mpi[@]}" "$srlm" train $base run.name="$name" "$@" \
      >"$tmp/$name.out" 2>"$tmp/$name.err"
  fi
  local rc=$?
  echo "$name: exit $rc in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  [ $rc -eq 0 ] || { fail "$name exited $rc"; tail -5 "$tmp/$name.err" >&2; return; }
  for t in 1 2; do
    "$srlm" rollouts "$tmp/runs/$name/iter_$t/rollouts.h5" >"$tmp/$name.r$t" || fail "$name: srlm rollouts iter_$t"
  done
  grep -q '^iter 2 ' "$tmp/$name.out" || fail "$name: no table row for iteration 2"
}
