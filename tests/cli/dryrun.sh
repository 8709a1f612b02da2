#!/usr/bin/env bash
# srlm train --dry-run and srlm version (issue 12, item 8). --dry-run resolves the config,
# checks the model, tokenizer and prompt files, the rank layout and the run folder, prints
# the plan and writes nothing; its errors are the run's (exit 2 config/layout, 1 files).
# srlm version names the commit it was built from, the build type and the libraries.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
mpi_env
no_leak_checks
small="run.out_dir=$tmp/runs $tiny_model run.iterations=1
  task.prompts_per_iteration=64 task.eval_prompts=16 generate.samples_per_prompt=2 roles.shard_prompts=8"
# run NAME WANT_RC -- command...: stdout in $tmp/NAME.out, stderr in $tmp/NAME.err
run() {
  local name=$1 want=$2
  shift 3
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  local rc=$?
  [ $rc -eq "$want" ] || fail "$name: exit $rc, want $want: $(tail -2 "$tmp/$name.err")"
}
has() { grep -q -- "$2" "$tmp/$1.out" "$tmp/$1.err" || fail "$1: no '$2' in its output"; }

run plan 0 -- "$srlm" train -c configs/quickstart.yaml $small run.name=d1 --dry-run
has plan "run folder   $tmp/runs/d1: new or empty"
has plan "ranks        1, colocated"
has plan "model M0     fresh from model.arch (seeded by run.seed): llama, 2 layers, hidden 32"
has plan "prompts      built-in task sign_puzzle: 64 per iteration, 16 held out"
has plan "iterations   1: each 64 prompts x 2 samples in 8 shards of 8 prompts"
has plan "ok: the run can start"
[ -e "$tmp/runs/d1" ] && fail "--dry-run created the run folder"
# the memory plan per kind of rank (memplan.h); on a device too small for it, the run's refusal
has plan "memory       each rank (every role) (1 rank), on cpu (host memory): .* free (weights .*activations .*KV cache"
if command -v mpirun >/dev/null 2>&1; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  roles3="roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=1"
  run plan3 0 -- timeout 120 mpirun --oversubscribe -np 3 "$srlm" train -c configs/quickstart.yaml $small $roles3 \
    run.name=d1 --dry-run
  # the lead learner evaluates (task.eval_prompts), so it decodes too
  has plan3 "memory       the lead learner (it evaluates) (1 rank), on cpu (host memory): .*moments .*activations .*KV cache .* for 64 x 64 positions (host memory: generate.max_batch auto = 64)"
  has plan3 "memory       each generator/judge (2 ranks), on cpu (host memory): .*KV cache .* for 64 x 64 positions"
  run plan3b 0 -- timeout 120 mpirun --oversubscribe -np 4 "$srlm" train -c configs/quickstart.yaml $small $roles3 \
    roles.learners=2 run.name=d1 generate.max_batch=5 --dry-run
  has plan3b "memory       each learner (1 rank), on cpu (host memory): .*moments .*activations .*, workspace"
  ! grep -q "each learner (1 rank).*KV cache" "$tmp/plan3b.out" || fail "plan3b: a learner that does not decode has a KV cache"
  has plan3b "memory       the lead learner (it evaluates) (1 rank), on cpu (host memory): .*KV cache .* for 5 x 64 positions (generate.max_batch)"
fi
# cuda-sim (always built) as a 4 MB device
SRLM_SIM_DEVICE_MEMORY=4000000 run nofit 1 -- "$srlm" train -c configs/quickstart.yaml $small run.name=d1 \
  run.backend=cuda-sim --dry-run
has nofit "cuda-sim device 0: this rank's memory plan: .* does not fit: .* GiB needed, .* GiB free. To fit"
# on a device the KV cache takes generate.kv_memory_fraction of what the rest of the plan
# leaves (memplan.h): ~22 MiB of a 160 MB device hold ~600 slots of 32 KiB; on 1 GB auto stops at
# 1024 and generate.max_batch bounds it; a fraction that holds no slot is refused naming it
sim() { SRLM_SIM_DEVICE_MEMORY=$1 run "$2" "$3" -- "$srlm" train -c configs/quickstart.yaml $small run.name=d1 \
  run.backend=cuda-sim --dry-run "${@:4}"; }
sim 160000000 kvfit 0
has kvfit "each rank (every role) (1 rank), on cuda-sim device 0: .*KV cache .* for [1-9][0-9]* x 64 positions (kv_memory_fraction 0.9)"
sim 1000000000 kvcap 0
has kvcap "KV cache 32.0 MiB for 1024 x 64 positions (at most 1024 with generate.max_batch auto; kv_memory_fraction 0.9 would hold [0-9]*)"
sim 1000000000 kvmax 0 generate.max_batch=100
has kvmax "KV cache 3.1 MiB for 100 x 64 positions (generate.max_batch; kv_memory_fraction 0.9 would hold [0-9]*)"
sim 160000000 kvnone 1 generate.kv_memory_fraction=0.0001
has kvnone "cuda-sim device 0: this rank's memory plan: .*: 0 KV-cache slots, fewer than 1: one slot (64 positions) takes 32.0 KiB and generate.kv_memory_fraction 0.0001 .* To fit: a larger generate.kv_memory_fraction"
[ -e "$tmp/runs/d1" ] && fail "--dry-run (no fit) created the run folder"

# the prompt file, the model and the judge are checked as a run would
printf '{"prompt": "What is 2+2?"}\n{"prompt": "Name a colour."}\n' >"$tmp/p.jsonl"
chat="tokenizer.path=tests/fixtures/sft/chatml_tokenizer tokenizer.chat_format=chatml judge.mode=regex
  model.arch.max_seq_len=2048"
run prompts 0 -- "$srlm" train -c configs/quickstart.yaml $small $chat run.name=d2 task.name=none data.prompts="$tmp/p.jsonl" \
  --dry-run
has prompts "prompts      $tmp/p.jsonl: 2 prompts"
run noprompts 1 -- "$srlm" train -c configs/quickstart.yaml $small $chat run.name=d2 task.name=none \
  data.prompts="$tmp/missing.jsonl" --dry-run
run badregex 2 -- "$srlm" train -c configs/quickstart.yaml $small $chat run.name=d2 task.name=none \
  data.prompts="$tmp/p.jsonl" 'judge.score_regex=Score: ([0-9]' --dry-run
has badregex "score_regex"
has noprompts "missing.jsonl"
run nomodel 1 -- "$srlm" train -c configs/quickstart.yaml $small run.name=d2 model.path="$tmp/no-model" --dry-run
has nomodel "no-model"
run badkey 2 -- "$srlm" train -c configs/quickstart.yaml $small run.name=d2 train.lrr=1 --dry-run

# an existing run: without --resume the plan says why a run would be refused; --resume
# checks the checkpoint's config
"$srlm" train -c configs/quickstart.yaml $small run.name=d3 >/dev/null 2>&1 || fail "run d3"
run exists 2 -- "$srlm" train -c configs/quickstart.yaml $small run.name=d3 --dry-run
has exists "needs --resume or --overwrite"
run resume 0 -- "$srlm" train -c configs/quickstart.yaml $small run.name=d3 --dry-run --resume
has resume "resume       after a complete iteration"
run resume_cfg 2 -- "$srlm" train -c configs/quickstart.yaml $small run.name=d3 train.lr=0.5 --dry-run --resume
has resume_cfg "train.lr (checkpoint"
sum=$(find "$tmp/runs/d3" -type f | sort | xargs md5sum | md5sum)
run resume2 0 -- "$srlm" train -c configs/quickstart.yaml $small run.name=d3 run.iterations=3 --dry-run --resume
[ "$(find "$tmp/runs/d3" -type f | sort | xargs md5sum | md5sum)" = "$sum" ] || fail "--dry-run changed the run folder"

# the rank layout
if command -v mpirun >/dev/null 2>&1; then
  run layout 0 -- mpirun --oversubscribe -np 3 "$srlm" train -c configs/quickstart.yaml $small run.name=d4 \
    roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=1 --dry-run
  has layout "ranks        3: learners 1, generators 1, judges 1: 0=learner 1=generator 2=judge"
  run badlayout 2 -- mpirun --oversubscribe -np 2 "$srlm" train -c configs/quickstart.yaml $small run.name=d4 \
    roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=1 --dry-run
  has badlayout "roles"
fi

# srlm version
run version 0 -- "$srlm" version
for k in "srlm [0-9]" "commit:     " "build type: " "CPU ISA:    " "CUDA:       " "NCCL:       " "MPI:        " "HDF5:       [0-9]"; do
  grep -q "^$k" "$tmp/version.out" || fail "srlm version: no line '$k': $(cat "$tmp/version.out")"
done
if head=$(git -C "$src" rev-parse --short=12 HEAD 2>/dev/null); then
  grep -q "^commit:     [0-9a-f]\{12\}" "$tmp/version.out" || fail "srlm version: no commit: $(grep commit "$tmp/version.out")"
  echo "version: $(grep commit "$tmp/version.out") (HEAD now $head)"
fi

echo "dryrun.sh: $fails failed"
[ "$fails" -eq 0 ]
