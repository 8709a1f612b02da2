#!/usr/bin/env bash
# The methods comparison of issue 11 in one command: for each task (the sign puzzle,
# Countdown) and seed, the seed SFT data and the task's M1 (once per seed), a method's own
# M1 where configs/methods/<prefix><method>-m1.yaml exists, then every method config
# configs/methods/<prefix><method>.yaml (prefix "" for the sign puzzle, "countdown-" for
# Countdown) for --iterations iterations from that M1; then one table, mean and range
# (min..max) over the seeds, per method and task: held-out greedy accuracy and judge
# agreement at iterations 0, N/2 and N, judge format failures (judge_format_failures /
# judgments of the iteration lines) at 1, N/2 and N, mean response length (tokens, EOS
# included, over iterations 1..N), pairs (or GRPO groups) per iteration, wall time of a run.
# Markdown on stdout and in OUT/table.md, JSON in OUT/table.json; the header names the
# machine, the commit and the commands.
#
#   bench/methods.sh [BUILD] [--methods a,b,..] [--seeds 1234,7,42] [--iterations 6]
#                    [--tasks sign_puzzle,countdown] [--layout separate|colocated]
#                    [--out DIR] [--srlm PATH] [--set key=value]... [--m1-set key=value]...
#                    [--data "ARGS"] [--skip-file FILE] [--plan]
#
#   --set key=value     a config override for every method run (repeat it), e.g. tiny
#                       prompt counts for a smoke test (tests/cli/methods_bench.sh)
#   --m1-set key=value  the same for every M1 SFT
#   --data "ARGS"       srlm task sft-data sizes (--instructions N --judge N) for every M1's
#                       data instead of the task's (a method M1's other options stay)
#   --plan              print what would run, with the estimate, and stop
#
# Layout: --layout separate (default) runs each method as the quickstart does, mpirun -np 3
# (one learner, one generator, one judge rank); colocated runs one process. On this 2-core
# machine the 3-rank layout is the faster one (bench/RESULTS.md, "Quickstart with separate
# roles": 39 s vs 47 s for the quickstart's 3 iterations; generation and judging overlap
# through the shards), so it is the default.
#
# Resumable: a (method, task, seed) run whose metrics.jsonl holds its last iteration line is
# done and not run again; an unfinished one continues with `srlm train --resume` (from
# scratch when there is nothing to resume). M1s and data files are made once, when a run
# needs them (a seed whose runs are all done needs none). So an
# interrupted comparison continues where it stopped: run the same command again.
#
# Method M1s: configs/methods/<prefix><method>-m1.yaml is an SFT config; its data comes
# from `srlm task sft-data` with the options on the first comment line of that file that
# holds `srlm task sft-data` (continued by a trailing backslash), --seed and --out replaced
# by the harness's; the method's runs start from it instead of the task's M1.
# Prompt-set configs (task.name none, e.g. Countdown with reference answers): the files
# data.prompts and data.eval_prompts name are written per seed with `srlm task prompts`
# (split eval when the file name holds "eval", else train; --reference when it holds "ref";
# 20000 train or 1000 eval prompts) and the run reads them.
#
# A missing method config is an error naming it. A method that does not apply to a task is
# skipped only by the list in --skip-file (default bench/methods_skip.txt: lines
# "task method reason"), with its reason printed and in the table.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

all_methods="selfreward,meta-rewarding,cream,scpo,dice,scir,sar-grpo,bleu-grpo,west-of-n,warp,grpo-selfjudged,grpo-verifier"
methods=$all_methods seeds="1234,7,42" iterations=6 tasks="sign_puzzle,countdown" layout=separate
out="" srlm=build/srlm data_override="" skip_file=bench/methods_skip.txt plan=0
sets=() m1_sets=()
cmdline="bench/methods.sh$(printf ' %q' "$@")"
usage() { sed -n '/^#   bench\/methods.sh/,/^#   --plan/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
if [ $# -gt 0 ] && [ -d "$1" ]; then # bench/run.sh methods passes its build folder
  srlm=$1/srlm
  shift
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --methods) methods=${2:?}; shift 2 ;;
    --seeds) seeds=${2:?}; shift 2 ;;
    --iterations) iterations=${2:?}; shift 2 ;;
    --tasks) tasks=${2:?}; shift 2 ;;
    --layout) layout=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --srlm) srlm=${2:?}; shift 2 ;;
    --set) sets+=("${2:?}"); shift 2 ;;
    --m1-set) m1_sets+=("${2:?}"); shift 2 ;;
    --data) data_override=${2:?}; shift 2 ;;
    --skip-file) skip_file=${2:?}; shift 2 ;;
    --plan) plan=1; shift ;;
    -h|--help) usage ;;
    *) echo "methods.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
die() { echo "methods.sh: error: $*" >&2; exit 1; }
case "$layout" in separate|colocated) ;; *) die "--layout $layout: expected separate or colocated" ;; esac
[[ "$iterations" =~ ^[1-9][0-9]*$ ]] || die "--iterations $iterations: expected a positive integer"
[ -x "$srlm" ] || die "$srlm is not an executable (build first: cmake --build build, or pass --srlm PATH)"
[ -n "$out" ] || out=bench/methods/$(date -u +%Y-%m-%d)
IFS=, read -r -a method_list <<<"$methods"
IFS=, read -r -a seed_list <<<"$seeds"
IFS=, read -r -a task_list <<<"$tasks"
for s in "${seed_list[@]}"; do [[ "$s" =~ ^[0-9]+$ ]] || die "--seeds: '$s' is not a seed"; done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# tiny models: one thread per rank, and OpenMP threads must not spin (bench/RESULTS.md)
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# ---- per task: config prefix, M1 config and name, seed data -----------------------------
task_prefix() { case "$1" in sign_puzzle) echo "" ;; countdown) echo "countdown-" ;; *) return 1 ;; esac; }
task_m1_config() { case "$1" in sign_puzzle) echo configs/quickstart-m1.yaml ;; countdown) echo configs/countdown-tiny-m1.yaml ;; esac; }
task_m1_name() { case "$1" in sign_puzzle) echo quickstart-m1 ;; countdown) echo countdown-m1 ;; esac; }
task_flag() { case "$1" in sign_puzzle) echo "" ;; countdown) echo "--task countdown" ;; esac; }
task_data() { # the quickstart's and launch/quickstart.sh --task countdown's seed data (or --data's sizes)
  case "$1" in
    sign_puzzle) echo "${data_override:---instructions 2000 --judge 16000}" ;;
    countdown) echo "--task countdown ${data_override:---instructions 4000 --judge 16000}" ;;
  esac
}
# Wall seconds on this 2-core machine when idle, used for the estimate until this
# comparison has finished runs of its own (their mean wall time then replaces est_run).
# Sign puzzle (bench/RESULTS.md, "Quickstart with separate roles"): a 6-iteration run
# 12-13 s per iteration + evaluations = 90 s; M1 = data + SFT (44 s on one thread) = 60 s.
# Countdown, measured against the sign puzzle in CPU time (2026-12-04, the machine shared):
# an iteration costs 1.8x per prompt (longer answers and judgments) with half the prompts
# (2000), so a run about 100 s; its SFT 1.6x per epoch, an M1 about 110 s. A method's cost
# varies (N = 16 samples, meta-judging, two models): the estimate is a floor.
est_run() { case "$1" in sign_puzzle) echo 90 ;; countdown) echo 100 ;; esac; }
est_m1() { case "$1" in sign_puzzle) echo 60 ;; countdown) echo 110 ;; esac; }

for t in "${task_list[@]}"; do task_prefix "$t" >/dev/null || die "--tasks: unknown task '$t' (sign_puzzle, countdown)"; done

# ---- the skip list --------------------------------------------------------------------------
declare -A skip_reason=()
if [ -f "$skip_file" ]; then
  while read -r st sm reason; do
    [[ -z "$st" || "$st" == \#* ]] && continue
    skip_reason["$st:$sm"]=$reason
  done <"$skip_file"
elif [ "$skip_file" != bench/methods_skip.txt ]; then
  die "--skip-file $skip_file: no such file"
fi

# ---- the plan: every config must exist ------------------------------------------------------
missing=()
for t in "${task_list[@]}"; do
  p=$(task_prefix "$t")
  for m in "${method_list[@]}"; do
    [ -n "${skip_reason[$t:$m]:-}" ] && continue
    [ -f "configs/methods/$p$m.yaml" ] || missing+=("configs/methods/$p$m.yaml (method $m, task $t)")
  done
done
if [ ${#missing[@]} -gt 0 ]; then
  printf 'methods.sh: error: missing method config: %s\n' "${missing[@]}" >&2
  echo "methods.sh: add the config, choose --methods, or list the method in $skip_file with the reason it does not apply" >&2
  exit 1
fi

# a run is done when its metrics.jsonl holds the iteration line of its last iteration
run_done() { [ -f "$1/metrics.jsonl" ] && grep -q "\"event\":\"iteration\",\"iteration\":$iterations[,}]" "$1/metrics.jsonl"; }
m1_done() { [ -f "$1/model/model.safetensors" ] && [ -f "$1/model/config.json" ]; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
# ---- the estimate ---------------------------------------------------------------------------
mean_wall() { # mean of the recorded wall times of finished runs of task $1 (empty: none)
  [ -d "$out/$1" ] || return 0
  find "$out/$1" -path '*/runs/*/bench_wall_s' | xargs -r cat | awk '{ s += $1; n++ } END { if (n) printf "%.0f", s / n }'
}
todo_runs=0 todo_m1=0 est=0 total_runs=0
for t in "${task_list[@]}"; do
  p=$(task_prefix "$t")
  per=$(mean_wall "$t")
  [ -n "$per" ] || per=$(( $(est_run "$t") * iterations / 6 ))
  for s in "${seed_list[@]}"; do
    d=$out/$t/seed$s
    need_m1=0
    for m in "${method_list[@]}"; do
      [ -n "${skip_reason[$t:$m]:-}" ] && continue
      total_runs=$((total_runs + 1))
      run_done "$d/runs/$m" && continue
      need_m1=1
      todo_runs=$((todo_runs + 1)); est=$((est + per))
      if [ -f "configs/methods/$p$m-m1.yaml" ] && ! m1_done "$d/m1/$m-m1"; then
        todo_m1=$((todo_m1 + 1)); est=$((est + $(est_m1 "$t")))
      fi
    done
    if [ "$need_m1" = 1 ] && ! m1_done "$d/m1/$(task_m1_name "$t")"; then
      todo_m1=$((todo_m1 + 1)); est=$((est + $(est_m1 "$t")))
    fi
  done
done
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
machine="$(uname -sm), ${cpu:-unknown CPU}, $(getconf _NPROCESSORS_ONLN) cores"
echo "# methods comparison: $out"
echo "# tasks ${task_list[*]}; seeds ${seed_list[*]}; $iterations iterations; layout $layout; methods ${method_list[*]}"
echo "# $machine; commit $commit"
for t in "${task_list[@]}"; do
  for m in "${method_list[@]}"; do
    [ -n "${skip_reason[$t:$m]:-}" ] && echo "# skipped: $m on $t: ${skip_reason[$t:$m]}"
  done
done
printf '# estimate: %d of %d runs and %d M1s to do, about %d min on this machine\n' \
  "$todo_runs" "$total_runs" "$todo_m1" $(( (est + 59) / 60 ))
[ "$plan" -eq 1 ] && exit 0

# ---- the work -----------------------------------------------------------------------------------
log=$out/logs
mkdir -p "$log"
printf '%s\n' "$cmdline" >"$out/command.txt"

# make_m1 TASK SEED CONFIG NAME DATA_ARGS: seed data + SFT into $out/TASK/seedS/m1/NAME
make_m1() {
  local t=$1 s=$2 cfg=$3 name=$4 data=$5 d=$out/$1/seed$2
  m1_done "$d/m1/$name" && return 0
  mkdir -p "$d/data"
  echo "== $t seed $s: M1 $name ($cfg; sft-data $data)"
  # shellcheck disable=SC2086
  "$srlm" task sft-data $data --seed "$s" --out "$d/data/$name-sft.jsonl" >"$log/$t-$s-$name-data.log" 2>&1 \
    || die "srlm task sft-data for $name ($t seed $s) failed: $log/$t-$s-$name-data.log"
  "$srlm" sft -c "$cfg" run.out_dir="$d/m1" run.name="$name" run.seed="$s" data.sft="$d/data/$name-sft.jsonl" \
    "${m1_sets[@]}" >"$log/$t-$s-$name-sft.log" 2>&1 || die "srlm sft -c $cfg ($t seed $s) failed: $log/$t-$s-$name-sft.log"
  m1_done "$d/m1/$name" || die "srlm sft -c $cfg wrote no model in $d/m1/$name"
}

# the sft-data options of a method M1 config: its first `srlm task sft-data` comment line
# (with --data: its options other than the sizes, then the task's data with --data's sizes)
m1_data_args() {
  python3 - "$1" "$data_override" "$(task_data "$2")" <<'PY'
import re, shlex, sys
lines = open(sys.argv[1]).read().split("\n")
for i, l in enumerate(lines):
    if l.startswith("#") and "srlm task sft-data" in l:
        text = l.lstrip("#").strip()
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + " " + lines[i].lstrip("#").strip()
        args = shlex.split(text.split("srlm task sft-data", 1)[1])
        drop = ("--seed", "--out") + (("--instructions", "--judge", "--task") if sys.argv[2] else ())
        keep, skip = shlex.split(sys.argv[3]) if sys.argv[2] else [], False
        for a in args:
            if skip: skip = False; continue
            if a in drop: skip = True; continue
            keep.append(a)
        print(" ".join(keep))
        break
PY
}

# config_value CONFIG SECTION KEY: the resolved value (srlm config prints the full YAML)
config_value() {
  "$srlm" config -c "$1" 2>/dev/null | awk -v sec="$2:" -v key="  $3:" '
    /^[^ ]/ { insec = ($0 == sec) } insec && index($0, key) == 1 { v = substr($0, length(key) + 2); gsub(/"/, "", v); print v; exit }'
}

# prompt_file TASK SEED PATH: writes a prompt file for a prompt-set config; prints its path
prompt_file() {
  local t=$1 s=$2 base split n ref="" d=$out/$1/seed$2/data
  base=$(basename "$3")
  split=train n=20000
  case "$base" in *eval*) split=eval n=1000 ;; esac
  case "$base" in *ref*) ref=--reference ;; esac
  if [ ! -f "$d/$base" ]; then
    mkdir -p "$d"
    "$srlm" task prompts --task "$t" --seed "$s" --split $split --n $n $ref --out "$d/$base" \
      >"$log/$t-$s-$base.log" 2>&1 || die "srlm task prompts for $3 ($t seed $s) failed: $log/$t-$s-$base.log"
  fi
  echo "$d/$base"
}

run_i=0
t_start=$(date +%s)
for t in "${task_list[@]}"; do
  p=$(task_prefix "$t")
  for s in "${seed_list[@]}"; do
    d=$out/$t/seed$s
    for m in "${method_list[@]}"; do
      if [ -n "${skip_reason[$t:$m]:-}" ]; then
        echo "== skip $m on $t: ${skip_reason[$t:$m]}"
        continue
      fi
      run_i=$((run_i + 1))
      cfg=configs/methods/$p$m.yaml
      rd=$d/runs/$m
      if run_done "$rd"; then
        echo "== [$run_i/$total_runs] $m $t seed $s: done before ($rd)"
        continue
      fi
      # the seed's M1 when a run needs it (a kept folder's finished seeds need none)
      make_m1 "$t" "$s" "$(task_m1_config "$t")" "$(task_m1_name "$t")" "$(task_data "$t")"
      model=$d/m1/$(task_m1_name "$t")/model
      if [ -f "configs/methods/$p$m-m1.yaml" ]; then
        mdata=$(m1_data_args "configs/methods/$p$m-m1.yaml" "$t")
        [ -n "$mdata" ] || mdata=$(task_data "$t")
        make_m1 "$t" "$s" "configs/methods/$p$m-m1.yaml" "$m-m1" "$mdata"
        model=$d/m1/$m-m1/model
      fi
      extra=()
      if [ "$(config_value "$cfg" task name)" = none ]; then # a prompt set: its files, per seed
        for key in prompts eval_prompts; do
          v=$(config_value "$cfg" data "$key")
          [ -n "$v" ] && extra+=("data.$key=$(prompt_file "$t" "$s" "$v")")
        done
      fi
      if [ "$layout" = separate ]; then
        launch=(mpirun --oversubscribe --bind-to none -np 3)
        extra+=(roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=1)
      else
        launch=()
        extra+=(roles.colocate=true)
      fi
      mode=--overwrite
      [ -f "$rd/metrics.jsonl" ] && mode=--resume
      args=(train -c "$cfg" "$mode" run.out_dir="$d/runs" run.name="$m" run.seed="$s" run.iterations="$iterations"
            model.path="$model" "${extra[@]}" "${sets[@]}")
      echo "== [$run_i/$total_runs] $m $t seed $s: ${launch[*]} srlm ${args[*]}"
      printf '%s\n' "${launch[*]} $srlm ${args[*]}" >>"$out/command.txt"
      t0=$(date +%s)
      if ! "${launch[@]}" "$srlm" "${args[@]}" >"$log/$t-$s-$m.out" 2>"$log/$t-$s-$m.err"; then
        if [ "$mode" = --resume ]; then # nothing to resume from (killed before the first checkpoint)
          echo "   resume failed ($(grep -m1 -o 'error: .*' "$log/$t-$s-$m.err" || true)); running from scratch"
          args[3]=--overwrite
          "${launch[@]}" "$srlm" "${args[@]}" >"$log/$t-$s-$m.out" 2>"$log/$t-$s-$m.err" \
            || die "$m on $t seed $s failed: $log/$t-$s-$m.err"
        else
          die "$m on $t seed $s failed: $log/$t-$s-$m.err ($(tail -1 "$log/$t-$s-$m.err"))"
        fi
      fi
      run_done "$rd" || die "$m on $t seed $s ended without its iteration $iterations line: $rd/metrics.jsonl"
      echo $(( $(date +%s) - t0 )) >"$rd/bench_wall_s.tmp" && mv "$rd/bench_wall_s.tmp" "$rd/bench_wall_s"
      echo "   $(cat "$rd/bench_wall_s") s; $(( $(date +%s) - t_start )) s so far"
    done
  done
done

# ---- the table ----------------------------------------------------------------------------------
skips=""
for k in "${!skip_reason[@]}"; do skips+="$k=${skip_reason[$k]}"$'\n'; done
python3 bench/methods_table.py --out "$out" --iterations "$iterations" --methods "$methods" --seeds "$seeds" \
  --tasks "$tasks" --layout "$layout" --machine "$machine" --commit "$commit" --command "$cmdline" --skips "$skips"
