#!/usr/bin/env bash
# srlm quickstart: installs what is missing, builds Release, and runs the main job on its
# built-in default: a tiny model learns the sign puzzle of ../shared/RECIPES.md and then
# improves itself with its own judgments.
#   stage 0  srlm task sft-data        seed data: solved instructions + judge examples
#   stage 1  srlm sft -c configs/quickstart-m1.yaml   M1 = SFT from scratch (CPU, minutes)
#   stage 2  mpirun -np 3 srlm train -c configs/quickstart.yaml   self-rewarding DPO
#            iterations with one learner, one generator and one judge rank, each model
#            evaluated (held-out accuracy, judge agreement); prints the per-iteration table
# Arguments are config overrides for both stages, e.g.
#   launch/quickstart.sh run.seed=7 run.out_dir=runs-seed7
# (run.seed also seeds the stage-0 data). Results: <run.out_dir, default runs>/quickstart/
# (metrics.jsonl, summary.json, iter_<t>/model/).
# --task countdown (first argument) runs the same recipe on the built-in Countdown task:
# stage 0 srlm task sft-data --task countdown (4000 solved puzzles + 16000 judge
# examples), stage 1 configs/countdown-tiny-m1.yaml, stage 2
# configs/methods/countdown-selfreward.yaml; results in <run.out_dir>/countdown-selfreward/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash launch/install-deps.sh

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"

task=sign_puzzle
if [ "${1:-}" = --task ]; then
  task=${2:?--task needs sign_puzzle or countdown}
  shift 2
fi
case "$task" in
  sign_puzzle) data_opts="--instructions 2000 --judge 16000" m1_cfg=configs/quickstart-m1.yaml
    train_cfg=configs/quickstart.yaml data_dir=quickstart-data m1=quickstart-m1 run=quickstart ;;
  countdown) data_opts="--task countdown --instructions 4000 --judge 16000" m1_cfg=configs/countdown-tiny-m1.yaml
    train_cfg=configs/methods/countdown-selfreward.yaml data_dir=countdown-data m1=countdown-m1
    run=countdown-selfreward ;;
  *) echo "quickstart.sh: --task $task: expected sign_puzzle or countdown" >&2; exit 2 ;;
esac
seed=1234 out=runs learners=1 generators=1 judges=1 colocate=false
for a in "$@"; do
  case "$a" in
    run.seed=*) seed=${a#run.seed=} ;;
    run.out_dir=*) out=${a#run.out_dir=} ;;
    roles.learners=*) learners=${a#roles.learners=} ;;
    roles.generators=*) generators=${a#roles.generators=} ;;
    roles.judges=*) judges=${a#roles.judges=} ;;
    roles.colocate=*) colocate=${a#roles.colocate=} ;;
  esac
done
# one rank per role (the config's counts, or overridden ones); colocated: 2 ranks
if [ "$colocate" = true ]; then np=2; else np=$((learners + generators + judges)); fi
# Tiny models: OpenMP threads that spin while waiting only steal the core from the other.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
start=$(date +%s)
mkdir -p "$out/$data_dir"
echo "== stage 0: srlm task sft-data $data_opts --seed $seed"
build/srlm task sft-data $data_opts --seed "$seed" --out "$out/$data_dir/sft.jsonl"
echo "== stage 1: srlm sft -c $m1_cfg $*"
# one thread: this model is too small for threads to pay (measured: 44 s on 1 thread, 85 s on 2)
OMP_NUM_THREADS=1 build/srlm sft -c "$m1_cfg" data.sft="$out/$data_dir/sft.jsonl" "$@"
echo "== stage 2: mpirun -np $np srlm train -c $train_cfg $*"
mpirun --oversubscribe --bind-to none -np "$np" \
  build/srlm train -c "$train_cfg" --overwrite model.path="$out/$m1/model" "$@"
echo "== quickstart done in $(( $(date +%s) - start )) s; metrics in $out/$run/metrics.jsonl"
