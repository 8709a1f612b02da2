#!/usr/bin/env bash
# launch/srlm.sbatch under a real Slurm (issue 12): starts munged, slurmctld and slurmd on
# localhost with a generated one-node slurm.conf (CPUs = nproc, jobs may overcommit them,
# proctrack/linuxproc and task/none: no cgroup delegation needed; state, spool, logs and the
# MUNGE key and socket in a fresh folder under /tmp), then, on the tiny 3-rank quickstart
# (learner, generator, judge):
#   a) sbatch -n 3: the job completes and its final weights, metrics and table equal the same
#      run under plain mpirun;
#   b) preemption: `scancel --signal=USR1 --batch` while the job learns in iteration 2 (the
#      warning signal of --signal=B:USR1@N): srlm checkpoints and exits 75, the script
#      requeues the job, which resumes and ends bit-identical to the uninterrupted run; then
#      once with `scontrol requeue` (SIGTERM to every process of the job; Slurm requeues it);
#   c) sbatch -n 2 with 3 roles: the job fails at once, srlm's message in its .err file.
# Every service it started is stopped at the end, also on failure. Exit 77 (skipped, with the
# reason) only where Slurm cannot run here: packages missing, or a daemon that does not start.
# Slurm holds a requeued job back until the credentials of its first run expire (AuthInfo
# cred_expire, 120 s by default) and its scheduler's next pass (sched_interval, 60 s): 10 s and
# 2 s here, to keep the test short.
# Usage: bash tests/cluster/slurm.sh SRLM_BIN   (SRLM_SOURCE_DIR and SRLM_TMP from ctest)
set -u
srlm=$(realpath "$1")
src=${SRLM_SOURCE_DIR:?}
tmp=${SRLM_TMP:?}
start=$(date +%s)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
fails=0
. "$(dirname "$0")/../cli/lib/check.sh" # same_run
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
skip() { echo "skipped: $*"; exit 77; }

for c in munged munge unmunge slurmctld slurmd sbatch scontrol squeue scancel sinfo mpirun python3; do
  command -v "$c" >/dev/null 2>&1 || skip "$c not installed (launch/install-deps.sh --test installs Slurm and MUNGE)"
done
[ "$(id -u)" -eq 0 ] || skip "slurmd must run as root to start jobs (SlurmdUser=root); running as uid $(id -u)"

# daemons' folder: a short path (the MUNGE socket's path must fit a sockaddr_un)
d=$(mktemp -d /tmp/srlm-slurm.XXXXXX)
chmod 755 "$d" # munged wants its socket's folder searchable by all
mkdir -p "$d/munge" "$d/state" "$d/spool"
chmod 755 "$d/munge"
export SLURM_CONF=$d/slurm.conf

pid_of() { [ -s "$1" ] && cat "$1"; }
cleanup() {
  if [ -s "$d/slurmctld.pid" ]; then
    scancel --partition=srlmtest >/dev/null 2>&1
    for _ in $(seq 1 40); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  local p
  for f in slurmd.pid slurmctld.pid munge/munged.pid; do
    p=$(pid_of "$d/$f") || continue
    kill "$p" 2>/dev/null || continue
    for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$p" 2>/dev/null && { echo "slurm.sh: $f ($p) did not stop: SIGKILL" >&2; kill -9 "$p"; }
  done
  # steps of a killed job outlive slurmd: end those of this cluster (their spool is ours)
  for p in $(pgrep -x slurmstepd); do
    grep -q "$d" "/proc/$p/environ" 2>/dev/null && kill -9 "$p" 2>/dev/null
  done
  cp "$d"/*.log "$d"/munge/*.log "$tmp/" 2>/dev/null # the daemons' logs, kept for a failure's reader
  rm -rf "$d"
}
trap cleanup EXIT

# MUNGE: a fresh key, its own socket
dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$d/munge/munge.key"
munged --key-file="$d/munge/munge.key" --socket="$d/munge/munge.sock" --pid-file="$d/munge/munged.pid" \
  --log-file="$d/munge/munged.log" --seed-file="$d/munge/munged.seed" 2>"$d/munged.err" \
  || skip "munged does not start: $(tail -n 2 "$d/munged.err" "$d/munge/munged.log" 2>/dev/null | tr '\n' ' ')"
munge -n -S "$d/munge/munge.sock" | unmunge -S "$d/munge/munge.sock" >/dev/null 2>&1 \
  || skip "munge credentials do not round-trip: $(tail -n 2 "$d/munge/munged.log")"

# two free TCP ports on localhost for slurmctld and slurmd
read -r p1 p2 < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
host=$(hostname -s)
cpus=$(nproc)
cat >"$SLURM_CONF" <<EOF
ClusterName=srlmtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$d/munge/munge.sock,cred_expire=10
CredType=cred/munge
SlurmctldPort=$p1
SlurmdPort=$p2
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
KillWait=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=srlmtest Nodes=$host Default=YES MaxTime=INFINITE OverSubscribe=YES State=UP
EOF
slurmctld -i 2>"$d/slurmctld.err" || skip "slurmctld does not start: $(tail -n 3 "$d/slurmctld.err" "$d/slurmctld.log" 2>/dev/null | tr '\n' ' ')"
slurmd 2>"$d/slurmd.err" || skip "slurmd does not start: $(tail -n 3 "$d/slurmd.err" "$d/slurmd.log" 2>/dev/null | tr '\n' ' ')"
up=
for _ in $(seq 1 60); do
  [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && { up=1; break; }
  sleep 0.5
done
[ -n "$up" ] || skip "the node does not come up: $(sinfo -h -o '%T %E' 2>&1) $(tail -n 3 "$d/slurmd.log" | tr '\n' ' ')"
echo "slurm: $(slurmctld -V), node $host with $cpus CPUs, up in $(( $(date +%s) - start )) s"

cd "$src"
rm -rf "$tmp/runs" "$tmp"/*.out "$tmp"/*.err && mkdir -p "$tmp/runs"
cfg=configs/quickstart.yaml
base="run.out_dir=$tmp/runs model.path= model.arch.hidden_size=32
  model.arch.intermediate_size=64 model.arch.num_layers=2 model.arch.num_heads=2 model.arch.max_seq_len=64
  run.iterations=3 task.prompts_per_iteration=480 task.eval_prompts=64 generate.samples_per_prompt=4
  judge.replay_per_verdict=16 train.batch_size=4 train.lr=1e-3 pairs.min_margin=0 roles.shard_prompts=8
  roles.threads=1 train.checkpoint_every=5 roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=1"
export SRLM_BIN=$srlm

# job_field JOB KEY: a field of scontrol show job
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
# wait_end JOB SECONDS: waits until the job has ended (the state it ended in, on stdout).
# A job being requeued shows its first run's end state (FAILED) for a moment before PENDING:
# an end state counts once it has held for 2 s.
wait_end() {
  local j=$1 s held=0
  for _ in $(seq 1 $(($2 * 4))); do
    s=$(job_field "$j" JobState)
    case "$s" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
        held=$((held + 1))
        [ $held -ge 8 ] && { echo "$s"; return; } ;;
      *) held=0 ;;
    esac
    sleep 0.25
  done
  echo "TIMEOUT-OF-TEST($s)"
}
# submit NAME NTASKS: sbatch the tiny quickstart; prints the job id
submit() {
  sbatch --parsable -n "$2" -O -J "$1" -o "$tmp/$1.out" -e "$tmp/$1.err" launch/srlm.sbatch $cfg $base run.name="$1"
}
# same REF NAME: bit-identical final weights, equal metrics (timing aside), equal table (seconds aside)
same() {
  same_run "$tmp/runs" 3 "$1" "$2"
  # the table: the last row per iteration (a resumed job prints it again), seconds column aside
  table() { awk '$1 == "iter" || $1 == "start" { NF--; row[$1 " " $2] = $0 } END { for (k in row) print row[k] }' "$1" | sort; }
  [ -n "$(table "$tmp/$1.out")" ] && [ "$(table "$tmp/$1.out")" = "$(table "$tmp/$2.out")" ] \
    || fail "$2: table differs from $1's: got $(table "$tmp/$2.out" | tr '\n' '|') want $(table "$tmp/$1.out" | tr '\n' '|')"
}

# reference: plain mpirun
t0=$(date +%s)
timeout 300 mpirun --oversubscribe --bind-to none -np 3 "$srlm" train -c $cfg $base run.name=ref \
  >"$tmp/ref.out" 2>"$tmp/ref.err" || { fail "mpirun reference run"; tail -n 3 "$tmp/ref.err" >&2; }
echo "reference (mpirun -np 3): $(( $(date +%s) - t0 )) s"

# a) a plain sbatch job
t0=$(date +%s)
j=$(submit plain 3) || fail "sbatch"
st=$(wait_end "$j" 300)
echo "a) job $j ($st) in $(( $(date +%s) - t0 )) s"
[ "$st" = COMPLETED ] && [ "$(job_field "$j" ExitCode)" = 0:0 ] || { fail "plain: job $j $st, exit $(job_field "$j" ExitCode)"; tail -n 5 "$tmp/plain.err" >&2; }
same ref plain

# b) preemption: signal while the job learns in iteration 2; it must requeue itself and finish
# preempt NAME HOW...: submit, wait for a learning checkpoint in iteration 2, then run HOW JOB
preempt() {
  local name=$1
  shift
  local t0 j hit= st
  t0=$(date +%s)
  j=$(submit "$name" 3) || { fail "$name: sbatch"; return; }
  for _ in $(seq 1 1200); do
    if awk '/iteration 1\/3 done/ { it = 1 } it && /learn: checkpoint after step/ { f = 1 } END { exit !f }' \
      "$tmp/$name.err" 2>/dev/null; then
      hit=1
      break
    fi
    sleep 0.1
  done
  [ -n "$hit" ] || { fail "$name: job $j never reached iteration 2's learning ($(job_field "$j" JobState))"; return; }
  "$@" "$j" || fail "$name: $* $j"
  st=$(wait_end "$j" 300)
  echo "b) $name: job $j, '$* $j' in iteration 2's learning: $st after $(job_field "$j" Restarts) restart(s), $(( $(date +%s) - t0 )) s"
  grep -h -o 'resuming .*' "$tmp/$name.err" | sed 's/^/   /'
  [ "$st" = COMPLETED ] || { fail "$name: job $j $st, exit $(job_field "$j" ExitCode)"; tail -n 8 "$tmp/$name.err" >&2; }
  [ "$(job_field "$j" Restarts)" = 1 ] || fail "$name: job $j restarted $(job_field "$j" Restarts) times, want 1"
  same ref "$name"
}
preempt usr1 scancel --signal=USR1 --batch
grep -q "srlm.sbatch: SIGUSR1" "$tmp/usr1.err" || fail "usr1: the batch shell got no SIGUSR1"
grep -q "srlm train: .*stopped by SIGUSR1 in iteration 2 .*the checkpoint is written" "$tmp/usr1.err" \
  || fail "usr1: srlm did not checkpoint in iteration 2 on SIGUSR1: $(grep -E 'srlm.sbatch|stopped|error' "$tmp/usr1.err" | tr '\n' '|')"
grep -q "srlm checkpointed (exit 75): requeueing job" "$tmp/usr1.err" \
  || fail "usr1: srlm did not exit 75 after SIGUSR1 (checkpoint and requeue): $(grep -E 'srlm.sbatch|error' "$tmp/usr1.err" | tr '\n' '|')"
preempt term scontrol requeue
grep -q "srlm.sbatch: SIGTERM" "$tmp/term.err" || fail "term: the batch shell got no SIGTERM"
# Slurm signals every process of the job at once: mpirun may be gone (and with it the ranks'
# forwarded output) before a rank's own "got SIGTERM" line reaches the .err file, so that
# line is reported, not required; the requeued job's bits above are what must hold
if grep -q "srlm: rank [0-9] ([a-z]*) got SIGTERM" "$tmp/term.err"; then
  echo "   term: a rank logged its SIGTERM"
else
  echo "   term: no rank's SIGTERM line reached the .err file (mpirun ended first)"
fi
# Slurm signals every process: mpirun, given SIGTERM too, sends the ranks a second one (they
# stop at once, no checkpoint) and exits 1; the job resumes from the last periodic checkpoint
grep -h -E "stopped by SIGTERM|got SIGTERM again|mpirun exited" "$tmp/term.err" | sed 's/^/   /'

# c) a wrong task count fails at once, srlm's message in .err
t0=$(date +%s)
j=$(submit wrong 2) || fail "sbatch wrong"
st=$(wait_end "$j" 120)
s=$(( $(date +%s) - t0 ))
echo "c) 2 tasks for 3 roles: job $j $st (exit $(job_field "$j" ExitCode)) in $s s"
[ "$st" = FAILED ] || fail "wrong: job $j $st, want FAILED"
[ "$s" -le 30 ] || fail "wrong: took $s s to fail"
grep -q "roles.learners (1) + roles.generators (1) + roles.judges (1) = 3, but the job has 2 ranks" "$tmp/wrong.err" \
  || fail "wrong: srlm's message is not in wrong.err: $(head -n 3 "$tmp/wrong.err" | tr '\n' '|')"

echo "slurm.sh: $fails failed, $(( $(date +%s) - start )) s"
[ "$fails" -eq 0 ]
