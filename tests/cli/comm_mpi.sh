#!/usr/bin/env bash
# The comm module under mpirun (tests/mpi/mpi_comm.c): a singleton (no mpirun), 1 rank,
# 2 and 3 ranks colocated (and 2 with MPI initialized by the program), 4 ranks with separate roles, 6 ranks forced onto TCP (a
# stand-in for several nodes), 4 and 6 ranks with the shard bytes by the clear-to-send handshake in NCCL's
# order (SRLM_COMM_P2P=inorder): layout, bit-exact versioned weight broadcast, shards
# generator -> judge -> learner, crossing many-to-many messages, gradient all-reduce, all-agree-ok. Then the error
# paths: role counts that do not match the world size (exit 2 with the message), and
# one rank that reports an error and aborts, fails an SRLM_CHECK, is killed, or (a learner)
# fails after starting buckets of the overlapped gradient reduce while the others wait on it: the whole job must end quickly, non-zero, with the message.
# Every mpirun runs under `timeout 60`, so a hang fails the test instead of blocking CI.
set -u
srlm=$1
bin=$(dirname "$srlm")/tests/mpi/mpi_comm
if [ ! -x "$bin" ]; then
  echo "skipped: $bin is not built (tests/mpi is not part of this build)"
  exit 0
fi
tmp=${SRLM_TMP:?}
. "$(dirname "$0")/lib/check.sh" # fail, mpi_env, no_leak_checks (not cli_setup: no srlm runs)
mpi_env
no_leak_checks
fails=0

# run NAME NP [mpirun options...] -- ARGS...: runs the program (NP 0: without mpirun),
# sets $rc and $ms (wall time).
run() {
  local name=$1 np=$2; shift 2
  local opts=()
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done
  shift
  local t0; t0=$(date +%s%N)
  if [ "$np" = 0 ]; then
    timeout 60 "$bin" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  else
    timeout 60 mpirun --oversubscribe "${opts[@]}" -np "$np" "$bin" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  fi
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  echo "$name: exit $rc in ${ms} ms"
}
show() { sed 's/^/    /' "$tmp/$1.out" "$tmp/$1.err" >&2; }

expect_ok() { # NAME WANT-STDOUT (replaces check.sh's: checks the last run)
  if [ "$rc" -ne 0 ] || ! grep -qF -- "$2" "$tmp/$1.out"; then
    fail "$1: exit $rc, stdout lacks '$2'"
    show "$1"
  fi
}

run singleton 0 -- run 0 0 0 0
expect_ok singleton "mpi_comm: OK (1 ranks, colocated)"
run np1 1 -- run 0 0 0 0
expect_ok np1 "mpi_comm: OK (1 ranks, colocated)"
run colocated2 2 -- run 0 0 0 1
expect_ok colocated2 "mpi_comm: OK (2 ranks, colocated)"
run colocated3 3 -- run 0 0 0 1
expect_ok colocated3 "mpi_comm: OK (3 ranks, colocated)"
run joined2 2 -- joined 0 0 0 1
expect_ok joined2 "mpi_comm: OK (2 ranks, colocated)"
run separate4 4 -- run 1 2 1 0
expect_ok separate4 "mpi_comm: OK (4 ranks, separate roles)"
grep -qF "shards: 6 through 2 generators -> 1 judges -> learner 0, 1 stale dropped" "$tmp/separate4.err" \
  || { fail "separate4: no shard summary"; show separate4; }
run tcp6 6 --mca btl self,tcp -- run 3 2 1 0
expect_ok tcp6 "mpi_comm: OK (6 ranks, separate roles)"
# shard bytes by the clear-to-send handshake, moved in NCCL's order (one transfer at a time per
# rank, synchronous sends): the crossing traffic that deadlocks queued sends must get through
run p2p4 4 -x SRLM_COMM_P2P=inorder -- run 2 1 1 0
expect_ok p2p4 "mpi_comm: OK (4 ranks, separate roles)"
grep -qF "p2p: 2 senders x 2 learners x 31 messages crossed (bytes by MPI)" "$tmp/p2p4.err" || { fail "p2p4: no crossing summary"; show p2p4; }
grep -qF "bytes on MPI in NCCL's order after the receiver's clear-to-send" "$tmp/p2p4.err" \
  || { fail "p2p4: the handshake was not used"; show p2p4; }
run p2p6tcp 6 --mca btl self,tcp -x SRLM_COMM_P2P=inorder -- run 2 2 2 0
expect_ok p2p6tcp "mpi_comm: OK (6 ranks, separate roles)"

# role counts that do not add up to the world size: exit 2, message names roles.* and the size
run mismatch 3 -- mismatch 1 1 2
[ "$rc" -eq 2 ] || { fail "mismatch: exit $rc, expected 2"; show mismatch; }
grep -qF "roles.learners (1) + roles.generators (1) + roles.judges (2) = 4, but the job has 3 ranks" "$tmp/mismatch.err" \
  || { fail "mismatch: message missing"; show mismatch; }
run nolearner 3 -- mismatch 0 2 1
[ "$rc" -eq 2 ] || { fail "nolearner: exit $rc, expected 2"; show nolearner; }
grep -qF "roles.learners (0), roles.generators (2) and roles.judges (1) must each be >= 1" "$tmp/nolearner.err" \
  || { fail "nolearner: message missing"; show nolearner; }

# a failing rank ends the job: non-zero, not the timeout, within seconds, with its message
expect_ended() { # NAME MESSAGE
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || [ "$rc" -eq 137 -a "$1" != die ]; then
    fail "$1: exit $rc (0 = not stopped, 124 = hung until the timeout)"
    show "$1"
  fi
  [ "$ms" -lt 20000 ] || fail "$1: the job took $ms ms to end"
  if [ -n "$2" ] && ! grep -qF -- "$2" "$tmp/$1.err"; then
    fail "$1: stderr lacks '$2'"
    show "$1"
  fi
  if grep -q "was not stopped" "$tmp/$1.err"; then fail "$1: a waiting rank went on"; show "$1"; fi
}
run abort 4 -- abort 1 2 1 2
expect_ended abort "[srlm r2 generator] error: prompts.jsonl:7: planted failure on rank 2"
run check 3 -- check 1 1 1 1
expect_ended check "check 'extra < 0' failed: planted check failure on rank 1"
run die 3 -- die 1 1 1 0
expect_ended die ""
# a learner failing in its backward after its first buckets of the overlapped reduce started
run overlap 4 -- overlap 2 1 1 1
expect_ended overlap "[srlm r1 learner] error: model backward: planted failure on rank 1"

[ "$fails" -eq 0 ] && echo "comm_mpi: all passed"
exit $((fails > 0))
