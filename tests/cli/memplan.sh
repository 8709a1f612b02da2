#!/usr/bin/env bash
# Device placement and the memory plan (issue 10): rank 0 prints every rank's role, host
# and device; every rank logs its memory plan with its KV-cache slots (generate.max_batch,
# or on a device what generate.kv_memory_fraction holds, divided among the ranks sharing
# it); the slots change no sample; on a device (cuda-sim here, with a small simulated
# device through SRLM_SIM_DEVICE_MEMORY) a plan that does not fit ends the job at once,
# before anything is allocated, with the plan and what to change, on every rank.
set -u
. "$(dirname "$0")/lib/check.sh"
need_mpirun
cli_setup "$1"
mpi_env
no_leak_checks
base="$tiny_quickstart
  run.iterations=1 task.prompts_per_iteration=8 task.eval_prompts=8 generate.samples_per_prompt=2
  judge.replay_per_verdict=4 train.batch_size=4 roles.shard_prompts=4 roles.threads=1
  roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=1"

# 3 ranks on the CPU: the layout and every rank's plan
timeout 120 mpirun --oversubscribe -np 3 "$srlm" train $base run.name=cpu >"$tmp/cpu.out" 2>"$tmp/cpu.err"
rc=$?
[ $rc -eq 0 ] || { fail "cpu: exit $rc"; tail -5 "$tmp/cpu.err" >&2; }
host=$(hostname)
for r in "0: learner" "1: generator" "2: judge"; do
  grep -q "\[srlm r0 learner\] rank $r *on $host, cpu" "$tmp/cpu.err" || fail "cpu: no layout line 'rank $r on $host, cpu'"
done
# the learner: 4 pairs x 2 sequences x 64 positions
grep -q "r0 learner\] memory plan: .* of .* free (weights .*gradients .*moments .*activations .* for 512 tokens" \
  "$tmp/cpu.err" || fail "cpu: the learner's plan line"
grep -q "r1 generator\] memory plan: .*KV cache .* for 64 x 64 positions" "$tmp/cpu.err" || fail "cpu: the generator's plan line"
grep -q "r1 generator\] memory plan: .*for 64 x 64 positions (host memory: generate.max_batch auto = 64)" "$tmp/cpu.err" \
  || fail "cpu: the generator's slots are not the host default 64"
grep "memory plan" "$tmp/cpu.err" | head -3

# generate.max_batch 3: every rank decodes 3 sequences at once, and the rollouts (ids,
# judgments, scores) are the 64-slot run's: sampling is keyed per sequence (generate.h)
timeout 120 mpirun --oversubscribe -np 3 "$srlm" train $base run.name=b3 generate.max_batch=3 >"$tmp/b3.out" 2>"$tmp/b3.err"
rc=$?
[ $rc -eq 0 ] || { fail "max_batch 3: exit $rc"; tail -5 "$tmp/b3.err" >&2; }
for r in "r0 learner" "r1 generator" "r2 judge"; do
  grep -q "$r\] memory plan: .*KV cache .* for 3 x 64 positions (generate.max_batch)" "$tmp/b3.err" \
    || fail "max_batch 3: $r's plan does not have 3 slots"
done
"$srlm" rollouts "$tmp/runs/cpu/iter_1/rollouts.h5" >"$tmp/cpu.rollouts" 2>&1 || fail "cpu: srlm rollouts"
"$srlm" rollouts "$tmp/runs/b3/iter_1/rollouts.h5" >"$tmp/b3.rollouts" 2>&1 || fail "max_batch 3: srlm rollouts"
[ -s "$tmp/cpu.rollouts" ] && cmp -s "$tmp/cpu.rollouts" "$tmp/b3.rollouts" \
  || fail "max_batch 3: the rollouts differ from max_batch 64's ($(wc -l <"$tmp/cpu.rollouts") lines)"

# three ranks on one simulated 250 MB device: every rank's lines but the KV cache are
# counted once, and the decoding ranks (the lead learner evaluates) split the KV budget
SRLM_SIM_DEVICE_MEMORY=250000000 timeout 300 mpirun --oversubscribe -np 3 "$srlm" train $base run.name=shared \
  run.backend=cuda-sim >"$tmp/shared.out" 2>"$tmp/shared.err"
rc=$?
[ $rc -eq 0 ] || { fail "shared device: exit $rc"; tail -5 "$tmp/shared.err" >&2; }
for r in "r0 learner" "r1 generator" "r2 judge"; do
  grep -q "$r\] memory plan: .* free less .* for the other ranks on this device .*KV cache .* for [1-9][0-9]* x 64 positions (kv_memory_fraction 0.9 shared by the decoding ranks on this device)" \
    "$tmp/shared.err" || fail "shared device: $r's plan line"
done
grep "memory plan" "$tmp/shared.err" | head -1

# a simulated device of 4 MB: every rank stops at once with its plan and what to change
t0=$(date +%s)
SRLM_SIM_DEVICE_MEMORY=4000000 timeout 120 mpirun --oversubscribe -np 3 "$srlm" train $base run.name=small \
  run.backend=cuda-sim >"$tmp/small.out" 2>"$tmp/small.err"
rc=$?
el=$(( $(date +%s) - t0 ))
echo "small device: exit $rc after $el s"
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "small device: exit $rc (want an error, no timeout)"
grep -q "cuda-sim device 0: this rank's memory plan: .* does not fit: .* GiB needed, .* GiB free. To fit" "$tmp/small.err" \
  || { fail "small device: no plan error"; tail -5 "$tmp/small.err" >&2; }
grep -q "(and 2 other ranks failed)" "$tmp/small.err" || fail "small device: not every rank refused its plan"
! grep -q "out of range" "$tmp/small.err" || fail "small device: 3 ranks could not share the one simulated GPU"
[ ! -e "$tmp/runs/small/iter_1" ] || fail "small device: iteration 1 started"

echo "memplan.sh: $fails failed"
[ "$fails" -eq 0 ]
