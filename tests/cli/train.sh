#!/usr/bin/env bash
# srlm train: prepares a run (config.yaml, model M0 from model.arch, tokenized prompts in
# HDF5, summary.json) from configs/quickstart.yaml; bad configs, overrides and prompt
# files are errors naming file:line / key with exit status 2 / 1; skip_bad_lines counts.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
expect_rc() { # expected-rc description command...
  local want=$1 what=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  [ "$rc" -eq "$want" ] || { fail "$what: exit $rc, expected $want"; cat "$tmp/err" >&2; }
}
expect_err() { grep -qF -- "$1" "$tmp/err" || { fail "stderr lacks '$1':"; cat "$tmp/err" >&2; }; }

# the preparation stages alone (run.iterations 0): M0 from model.arch, the prompts file
prep="model.path= task.name=none run.iterations=0 data.prompts=configs/data/quickstart_prompts.jsonl data.max_prompt_tokens=16
  model.arch.hidden_size=64 model.arch.intermediate_size=160 model.arch.num_layers=4 model.arch.num_heads=4
  model.arch.num_kv_heads=4 model.arch.max_seq_len=32"
expect_rc 0 "quickstart config" "$srlm" train -c configs/quickstart.yaml $prep run.out_dir="$tmp/runs" run.name=t1
run=$tmp/runs/t1
for f in config.yaml summary.json iter_0/model/config.json iter_0/model/model.safetensors \
         iter_0/model/tokenizer.json iter_0/prompts.h5; do
  [ -s "$run/$f" ] || fail "missing $run/$f"
done
ls "$run" "$run/iter_0" | grep -q '\.tmp\.' && fail "temporary files left in $run"
grep -q '"prompts": 64' "$run/summary.json" || fail "summary.json does not count 64 prompts: $(cat "$run/summary.json")"
expect_err "run $run done in"
# the saved config is the resolved one and parses back to the same config
"$srlm" config -c "$run/config.yaml" >"$tmp/a.yaml" 2>&1 || fail "saved config.yaml does not parse"
"$srlm" config -c configs/quickstart.yaml $prep run.out_dir="$tmp/runs" run.name=t1 >"$tmp/b.yaml" 2>&1
cmp -s "$tmp/a.yaml" "$tmp/b.yaml" || fail "saved config.yaml differs from the resolved config"
# the model M0 passes srlm info
expect_rc 0 "info on M0" "$srlm" info --model "$run/iter_0/model"
# same seed, same weights
expect_rc 0 "second run" "$srlm" train -c configs/quickstart.yaml $prep run.out_dir="$tmp/runs" run.name=t2
cmp -s "$run/iter_0/model/model.safetensors" "$tmp/runs/t2/iter_0/model/model.safetensors" \
  || fail "same seed gave different M0 weights"

# the task vocabulary of configs/tiny: one id per character; other bytes are an error naming them
expect_rc 0 "tiny tokenizer" "$srlm" tokenize --tokenizer configs/tiny --text 'Q1234T+10A6+3<|endoftext|>'
grep -qx '{"ids":\[14,3,4,5,6,15,12,3,2,16,8,12,5,0\]}' "$tmp/out" || fail "tiny tokenizer ids: $(cat "$tmp/out")"
expect_rc 1 "byte outside the tiny vocabulary" "$srlm" tokenize --tokenizer configs/tiny --text 'Q12x'
expect_err "byte 0x78 at offset 3 has no token"

# usage and config errors: exit 2
expect_rc 2 "no -c" "$srlm" train
expect_err "srlm train: error: -c CONFIG is required"
expect_rc 2 "bad override" "$srlm" train -c configs/quickstart.yaml train.lr=abc
expect_err "override 'train.lr=abc': train.lr: expected a float"
expect_rc 2 "unknown key" "$srlm" train -c configs/quickstart.yaml train.lrr=1
expect_err "train.lrr"
printf 'run:\n  name: x\n  seed: [1]\n' >"$tmp/bad.yaml"
expect_rc 2 "bad yaml type" "$srlm" train -c "$tmp/bad.yaml"
expect_err "$tmp/bad.yaml:3:9: run.seed"

# malformed prompt lines: file:line, exit 1; skipped and counted with data.skip_bad_lines
printf '{"prompt":"Q1234T+10A"}\n{"prompt": 5}\nnot json\n{"prompt":"Q1111T+04A"}\n' >"$tmp/p.jsonl"
expect_rc 1 "bad prompt line" "$srlm" train -c configs/quickstart.yaml $prep run.out_dir="$tmp/runs" run.name=t3 data.prompts="$tmp/p.jsonl"
expect_err "$tmp/p.jsonl:2:"
[ -e "$tmp/runs/t3/iter_0/prompts.h5" ] && fail "prompts.h5 written despite the error"
expect_rc 0 "skip bad lines" "$srlm" train -c configs/quickstart.yaml $prep run.out_dir="$tmp/runs" run.name=t4 \
  data.prompts="$tmp/p.jsonl" data.skip_bad_lines=true
grep -q '"prompts": 2' "$tmp/runs/t4/summary.json" || fail "expected 2 prompts: $(cat "$tmp/runs/t4/summary.json")"
grep -q '"prompts_skipped": 2' "$tmp/runs/t4/summary.json" || fail "expected 2 skipped"
expect_rc 1 "missing prompts file" "$srlm" train -c configs/quickstart.yaml $prep run.out_dir="$tmp/runs" run.name=t5 data.prompts=/nonexistent.jsonl
expect_err "/nonexistent.jsonl: cannot open"

# under mpirun: role counts that do not add up to the ranks are an error on rank 0 before
# any work, every rank exits, no hang
if command -v mpirun >/dev/null 2>&1; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
  timeout 60 mpirun --oversubscribe -np 2 "$srlm" train -c configs/quickstart.yaml $prep run.out_dir="$tmp/runs" \
    run.name=t6 roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=1 >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [ $rc -eq 2 ] || { fail "mpirun -np 2 with 3 roles: exit $rc (want 2)"; cat "$tmp/err" >&2; }
  expect_err "roles.learners (1) + roles.generators (1) + roles.judges (1) = 3, but the job has 2 ranks"
  [ ! -e "$tmp/runs/t6" ] || fail "a role error left $tmp/runs/t6 behind"
fi

echo "train.sh: $fails failed"
[ "$fails" -eq 0 ]
