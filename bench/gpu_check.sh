#!/usr/bin/env bash
# The one prepared script a lent GPU machine runs: card facts, the backend-ops test of the
# CUDA backend (every op against float64 under the 2x-the-CPU rule, fp32 and bf16), the
# model-equivalence test on it, the NCCL transport's test (tests/gpu/test_comm_nccl.c: one
# rank, plain and under mpirun -np 1), the op timings of bench_backend for the CUDA backend at the
# full shapes (bf16, fp32), PyTorch at the same shapes with the card's copy bandwidth and the
# side-by-side table (bench/gpu_torch.py, gpu_compare.py), the CPU backend at the small
# shapes on the same machine, and a
# compute-sanitizer memcheck pass over the bf16 test (run after the tests, before the timings).
# Every step has its own time limit, each cut to what is left of 420 s, so a hang in one still
# leaves the others' logs and the script ends inside 8 minutes; a short summary is printed
# last (the tool returns only the tail of the output).
#
# usage (on the GPU machine, from the project root, with .devroot and BUILD carried):
#   bash bench/gpu_check.sh [BUILD_DIR] [OUT_DIR] [attention|e2e|job]   defaults: build-gpu, $OUT or ./gpu-check-out
# With "attention" (issue 9), within 420 s instead of the steps above: the attention ops'
# cases of the test (fp32, bf16); srlm's bf16 error next to PyTorch's bf16 SDPA error on the
# same inputs, both against float64 (bench/attention_error.py through bench_backend
# --attention-io: HS 64/128, GQA 1/4, causal and not, windows, L 512 and 2048); memcheck over
# the bf16 attention_kv (split-KV decode and prefill), forward and backward (the tensor-core
# kernels); the attention sweep (bench_backend --size attention: forward/backward at L =
# 512..16k, causal and not, decode at batch 1..256 x 1k..32k cached) next to PyTorch's SDPA
# flash and cuDNN backends (bench/attention_torch.py); then, if time is left, the test's
# --large attention shapes and Nsight Compute (ncu, where present and permitted) on a forward,
# a backward and a decode step (bench/ncu_summary.py). On compute capability 9.0 the forward
# is tested and benchmarked twice: the Hopper kernel (the default) and its mma.sync twin.
# With "e2e" (issue 10): bench/e2e.sh in parts, each its own step so a cut one costs only its
# rows: the gpu-quick preset's side-by-side rows (the DPO step and generation at the
# Qwen3-0.6B/1.7B shapes cut to 4 layers, srlm and PyTorch + transformers), the full gpu
# preset's one self-rewarding iteration at the Qwen3-0.6B shape (seconds per phase), its comm
# sweep (broadcast and all-reduce per bucket size: one NCCL rank, 3 MPI ranks sharing the GPU),
# and, if time is left, its side-by-side rows; needs srlm, bench_e2e and bench_comm carried.
# With "job" (issue 10, the whole job on the GPU): the quickstart's SFT and one self-rewarding
# iteration on cuda against the CPU (tests/cli/sim_quickstart.sh with SRLM_QS_BACKEND=cuda),
# in one process and as three ranks sharing the GPU (mpiexec -np 3: learner, generator,
# judge), the NCCL transport's test, on a machine with 4 GPUs or more the shard bytes by NCCL
# send/recv behind the clear-to-send handshake (tests/mpi/mpi_comm with SRLM_TEST_P2P_BACKEND=cuda,
# 4 ranks on 4 GPUs: the crossing traffic), and compute-sanitizer memcheck over a few SFT steps and
# one tiny iteration of `srlm train` on cuda; needs BUILD/srlm carried (and packed; for the
# 4-GPU step also BUILD/tests/mpi/mpi_comm).
# Build and pack first, here:
#   cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DSRLM_CUDA=ON
#   cmake --build build-gpu -j2 --target srlm test_backend_ops test_model_equiv bench_backend bench_e2e bench_comm \
#     gpu_test_comm_nccl mpi_comm
#   bash ../shared/tools/device-pack.sh build-gpu/srlm build-gpu/tests/test_backend_ops build-gpu/tests/test_model_equiv \
#     build-gpu/bench/bench_backend build-gpu/bench/bench_e2e build-gpu/bench/bench_comm build-gpu/tests/gpu_test_comm_nccl \
#     build-gpu/tests/mpi/mpi_comm
# The "job" and "e2e" modes print their budget first: their steps' limits add up to at most
# 420 s, so the script ends inside a device session's 8 minutes with time to copy the logs.
# "attention" prints its too: its limits add up to more, so its steps run in order, each cut
# to what is left of 420 s.
# Never changes the card's settings: nvidia-smi is only queried.
set -uo pipefail
BUILD=${1:-build-gpu}
LOG=${2:-${OUT:-$PWD/gpu-check-out}}
MODE=${3:-all}
TEST=$BUILD/tests/test_backend_ops
EQUIV=$BUILD/tests/test_model_equiv
BENCH=$BUILD/bench/bench_backend
mkdir -p "$LOG"
[ -f .devroot/env.sh ] || { echo "gpu_check: .devroot/env.sh missing (run device-pack.sh and carry .devroot)" >&2; exit 2; }
# shellcheck disable=SC1091
source .devroot/env.sh
nvidia-smi -L >/dev/null 2>&1 || {
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi missing or it lists none); run it on a lent GPU machine" >&2
  exit 2
}
[ "$MODE" = job ] || for b in "$TEST" "$BENCH"; do [ -x "$b" ] || { echo "gpu_check: $b not built or not carried" >&2; exit 2; }; done

status=()
# budget MODE LIMIT...: prints the steps' limits and their sum (the most the mode can take)
budget() {
  local mode=$1 sum=0 l
  shift
  for l in "$@"; do sum=$((sum + l)); done
  local line="gpu_check $mode: $# steps, limits $* s: at most $sum s (+ 5 s kill grace a step) of the 480 s a prepared script has"
  [ -n "${CAP:-}" ] && [ "$sum" -gt "$CAP" ] &&
    line="gpu_check $mode: $# steps, limits $* s ($sum s): run in order, each cut to what is left of $CAP s, none started with under 15 s left: at most $CAP s (+ 5 s kill grace) of the 480 s a prepared script has"
  echo "$line"
  status+=("$line") # and again in the summary
}
step() { # step NAME LIMIT_S LOGFILE CMD...: runs CMD with a time limit, output to LOGFILE
  local name=$1 limit=$2 file=$3
  shift 3
  if [ -n "${DEADLINE:-}" ]; then # a mode with a cap: the limit cut to what is left of it
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 15 ]; then
      status+=("$(printf '%-22s skipped: %d s left of the %d s' "$name" "$left" "$CAP")")
      return 124
    fi
    [ "$left" -lt "$limit" ] && limit=$left
  fi
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" >"$LOG/$file" 2>&1
  local rc=$?
  status+=("$(printf '%-22s rc=%-3d %4ds  %s' "$name" "$rc" $((SECONDS - t0)) "$file")")
  return $rc
}

# 1. the card and the software, read only
{
  date -u +"date %Y-%m-%dT%H:%M:%SZ"
  uname -r
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu,persistence_mode,compute_mode,mig.mode.current --format=csv
  nvidia-smi
  command -v nvcc >/dev/null && nvcc --version | tail -2
  echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
  # the kernels carry sm_90 machine code (not only PTX compiled at load)
  command -v cuobjdump >/dev/null && cuobjdump --list-elf "$TEST" && cuobjdump --list-ptx "$TEST"
  ldd "$TEST" "$BENCH" | grep -E 'not found|cudart|gomp'
} >"$LOG/device.txt" 2>&1
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)

if [ "$MODE" = attention ]; then
  # The limits add up past the 420 s a mode may take, so the steps run in this order (the
  # checks first, then the benchmark, then what only runs if time is left: the --large shapes
  # and Nsight Compute), each cut to what is left of the 420 s; one that would get under 15 s
  # is skipped and says so.
  l_test=30 l_err=60 l_mc_kv=35 l_mc_fwd=45 l_mc_bwd=40 l_bench=45 l_torch=120 l_large_fwd=20 l_large_bwd=30 l_ncu=25
  CAP=420
  budget attention $l_test $l_test $l_test $l_test $l_err $l_mc_kv $l_mc_fwd $l_mc_bwd $l_bench $l_bench $l_bench $l_bench \
    $l_torch $l_large_fwd $l_large_bwd $l_ncu $l_ncu $l_ncu
  DEADLINE=$CAP # from the script's start (SECONDS), the card's queries above included
  # The bf16 forward has two kernels on compute capability 9.0: the Hopper one (wgmma + TMA,
  # cuda/attention_wgmma.cu), taken by default once its first use agrees with the other, and
  # its mma.sync twin (SRLM_CUDA_ATTENTION=mma). Both are tested against float64 and both are
  # benchmarked; the steps that count kernel launches force one (no first-use check).
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1)
  if [ "$cc" = "9.0" ]; then attn_env=SRLM_CUDA_ATTENTION=wgmma; else attn_env=SRLM_CUDA_ATTENTION=mma; fi
  for op in attention_forward attention_backward attention_kv; do
    step "test $op" $l_test "test_$op.log" "$TEST" cuda --dtype fp32,bf16 --op "$op"
  done
  step "test forward twin" $l_test test_attention_forward_mma.log env SRLM_CUDA_ATTENTION=mma "$TEST" cuda \
    --dtype bf16 --op attention_forward
  grep -hE 'attention forward on the Hopper kernel|disagrees with the mma.sync kernel' "$LOG/test_attention_forward.log" \
    >"$LOG/attention_path.txt" 2>/dev/null
  # srlm's error next to PyTorch's bf16 SDPA (flash, cuDNN, efficient) on the same inputs, both
  # against float64; the inputs (about 0.4 GB) go to a scratch directory, not to $LOG
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/attention_error.XXXXXX")
  step attention_error $l_err attention_error.txt python3 bench/attention_error.py --bench "$BENCH" --backend cuda \
    --dir "$scratch" --json "$LOG/attention_error.json"
  rm -rf "$scratch"
  [ -s "$LOG/attention_error.json" ] &&
    timeout 20 python3 bench/attention_error.py --from-json "$LOG/attention_error.json" --md >"$LOG/attention_error.md" 2>&1
  if command -v compute-sanitizer >/dev/null; then
    mc=(compute-sanitizer --tool memcheck --error-exitcode 99)
    # split-KV decode and prefill (caches of 64..4100 positions: 1 to 9 pieces, GQA 8 at HS
    # 128, 67- and 33-query chunks), then the tensor-core forward and backward
    step memcheck_attention_kv $l_mc_kv memcheck_attention_kv.log "${mc[@]}" "$TEST" cuda --dtype bf16 --op attention_kv
    step memcheck_attention $l_mc_fwd memcheck_attention.log "${mc[@]}" "$TEST" cuda --dtype bf16 --op attention_forward
    step memcheck_attention_bwd $l_mc_bwd memcheck_attention_bwd.log "${mc[@]}" "$TEST" cuda --dtype bf16 \
      --op attention_backward
  else
    status+=("memcheck               skipped: no compute-sanitizer")
  fi
  # one JSON per op, so a step cut by its limit (the 34 GB cache of decode b=256 L=32k is the
  # slowest to fill) costs only its own rows
  for op in attention_forward attention_backward attention_kv; do
    step "bench $op" $l_bench "bench_$op.txt" "$BENCH" --backend cuda --dtype bf16 --size attention --op "$op" \
      --iters 5 --warmup 1 --json "$LOG/bench_$op.json"
  done
  step "bench forward twin" $l_bench bench_attention_forward_mma.txt env SRLM_CUDA_ATTENTION=mma "$BENCH" \
    --backend cuda --dtype bf16 --size attention --op attention_forward --iters 5 --warmup 1 \
    --json "$LOG/bench_attention_forward_mma.json"
  srlm_json=()
  for op in attention_forward attention_backward attention_kv; do
    python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$LOG/bench_$op.json" 2>/dev/null &&
      srlm_json+=("$LOG/bench_$op.json")
  done
  step torch_attention $l_torch torch_attention.txt python3 bench/attention_torch.py --budget 0.05 \
    --json "$LOG/torch_attention.json" --srlm "${srlm_json[@]}"
  [ -s "$LOG/torch_attention.json" ] && timeout 20 python3 bench/attention_torch.py --from-json \
    "$LOG/torch_attention.json" --srlm "${srlm_json[@]}" --md >"$LOG/compare_attention.md" 2>&1
  # the --large shape (2 sequences of 1024 + 700 tokens, 8 heads over 2, HS 128, window 256),
  # bf16 (the tensor-core kernels), with the other shapes again: its float64 reference is about
  # 4.5e8 multiply-adds a pass; on the CPU backend (a busy 2-core machine, niced) it added 2.1 s
  # to the forward's 1.3 s and 3.4 s to the backward's 2.4 s, op and reference together, so
  # under 10 s each here, most of it CUDA's start
  step "large forward" $l_large_fwd test_large_forward.log "$TEST" cuda --dtype bf16 --large --op attention_forward
  step "large backward" $l_large_bwd test_large_backward.log "$TEST" cuda --dtype bf16 --large --op attention_backward
  # Nsight Compute: what limits each kernel (SM and DRAM throughput, achieved occupancy, tensor
  # pipe), on one forward and one backward at HS 128, 4k causal and a decode step (b=16, 8k
  # cached); the launches of bench_backend's small check come first (the smaller grids)
  if ! command -v ncu >/dev/null; then
    status+=("ncu                    skipped: no ncu on this machine")
  elif [ $((DEADLINE - SECONDS)) -lt 45 ]; then # the query and three cases need 15 s each at least
    status+=("ncu                    skipped: $((DEADLINE - SECONDS)) s left of the $CAP s")
  else
    want="sm__throughput.avg.pct_of_peak_sustained_elapsed dram__throughput.avg.pct_of_peak_sustained_elapsed
      sm__warps_active.avg.pct_of_peak_sustained_active sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
      gpu__time_duration.sum"
    have=$(timeout $((DEADLINE - SECONDS - 30 < 30 ? DEADLINE - SECONDS - 30 : 30)) ncu --query-metrics 2>/dev/null)
    metrics=()
    for m in $want; do # the names this ncu and card know (all of them when the query fails)
      [ -z "$have" ] || grep -q "^${m%%.*} " <<<"$have" && metrics+=("$m")
    done
    [ ${#metrics[@]} -gt 0 ] || read -r -a metrics <<<"$(echo $want)" # none recognized: ask for all
    metrics=$(IFS=,; echo "${metrics[*]}")
    echo "ncu metrics: $metrics" >"$LOG/ncu_metrics.txt"
    ncu_case() { # ncu_case NAME OP MODEL SKIP LAUNCHES: the attention kernels' launches SKIP.. SKIP+LAUNCHES-1
      step "ncu $1" $l_ncu "ncu_$1.log" env "$attn_env" ncu --metrics "$metrics" --csv --print-kernel-base function \
        --kernel-name regex:attention --launch-skip "$4" --launch-count "$5" --log-file "$LOG/ncu_$1.csv" \
        "$BENCH" --backend cuda --dtype bf16 --size attention --op "$2" --case "$3" --iters 1 --warmup 0
    }
    # forward: the small check shape's check and forward kernels, then the case's check kernel
    # come first (3 launches), its forward is the 4th
    ncu_case forward attention_forward "fa HS=128 L=4k" 3 1
    if grep -qs 'ERR_NVGPUCTRPERM' "$LOG/ncu_forward.log" "$LOG/ncu_forward.csv"; then
      status+=("ncu                    not permitted here (ERR_NVGPUCTRPERM: performance counters restricted)")
    else
      ncu_case backward attention_backward "fa HS=128 L=4k" 0 9
      ncu_case decode attention_kv "decode b=16 L=8k" 0 6
    fi
    csvs=()
    for c in forward backward decode; do [ -s "$LOG/ncu_$c.csv" ] && csvs+=("$LOG/ncu_$c.csv"); done
    [ ${#csvs[@]} -eq 0 ] || python3 bench/ncu_summary.py "${csvs[@]}" >"$LOG/ncu_summary.txt" 2>&1
  fi
  {
    echo "== gpu_check attention on ${card:-unknown card}, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf '%s\n' "${status[@]}"
    for op in attention_forward attention_backward attention_kv; do echo "== $op: $(tail -1 "$LOG/test_$op.log")"; done
    echo "== attention_forward, mma.sync twin: $(tail -1 "$LOG/test_attention_forward_mma.log" 2>/dev/null)"
    echo "== forward kernel: $(cat "$LOG/attention_path.txt" 2>/dev/null) ($attn_env for the launch-counting steps)"
    echo "== forward twin bench: $(grep -c . "$LOG/bench_attention_forward_mma.txt" 2>/dev/null) lines (bench_attention_forward_mma.txt)"
    for op in forward backward; do echo "== --large $op: $(tail -1 "$LOG/test_large_$op.log" 2>/dev/null)"; done
    grep -hE '^FAIL' "$LOG"/test_attention_*.log "$LOG"/test_large_*.log 2>/dev/null | head -6 | cut -c1-300
    echo "== srlm vs SDPA error: $(tail -1 "$LOG/attention_error.txt" 2>/dev/null)"
    grep -hE 'FAIL$' "$LOG/attention_error.txt" 2>/dev/null | head -6
    for f in memcheck_attention_kv memcheck_attention memcheck_attention_bwd; do
      echo "== $f: $(grep -E 'ERROR SUMMARY' "$LOG/$f.log" 2>/dev/null | tail -1)"
    done
    cut -c1-160 "$LOG/torch_attention.txt" 2>/dev/null
    cut -c1-200 "$LOG/ncu_summary.txt" 2>/dev/null
  } | tee "$LOG/summary.txt"
  exit 0
fi

if [ "$MODE" = e2e ]; then
  for b in srlm bench/bench_e2e bench/bench_comm; do
    [ -x "$BUILD/$b" ] || { echo "gpu_check: $BUILD/$b not built or not carried" >&2; exit 2; }
  done
  l_quick=150 l_iter=100 l_comm=60 l_full=110
  budget e2e $l_quick $l_iter $l_comm $l_full
  e2e() { # e2e NAME LIMIT PRESET PARTS
    step "e2e_$1" "$2" "e2e_$1.txt" env OUT="$LOG/e2e_$1" PARTS="$4" MPIRUN=mpiexec.openmpi OMPI_ALLOW_RUN_AS_ROOT=1 \
      OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 bash bench/e2e.sh "$BUILD" "$3"
  }
  e2e quick $l_quick gpu-quick compare
  e2e iteration $l_iter gpu iteration
  e2e comm $l_comm gpu comm
  e2e full $l_full gpu compare
  {
    echo "== gpu_check e2e on ${card:-unknown card}, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf '%s\n' "${status[@]}"
    for part in quick iteration comm full; do cut -c1-160 "$LOG/e2e_$part.txt" 2>/dev/null | grep -v '^$'; done
  } | tee "$LOG/summary.txt"
  exit 0
fi

if [ "$MODE" = job ]; then
  SRLM=$BUILD/srlm
  [ -x "$SRLM" ] || { echo "gpu_check: $SRLM not built or not carried" >&2; exit 2; }
  l_np1=115 l_np3=115 l_nccl=40 l_p2p=20 l_mc_sft=50 l_mc_train=80
  budget job $l_np1 $l_np3 $l_nccl $l_p2p $l_mc_sft $l_mc_train
  for r in 1 3; do
    mkdir -p "$LOG/quickstart_np$r"
    limit=$([ $r = 1 ] && echo $l_np1 || echo $l_np3)
    step "quickstart np$r" "$limit" "quickstart_np$r.log" env SRLM_SOURCE_DIR="$PWD" SRLM_TMP="$LOG/quickstart_np$r" \
      SRLM_QS_BACKEND=cuda SRLM_QS_RANKS=$r SRLM_QS_MPIRUN=mpiexec.openmpi OMP_NUM_THREADS=2 \
      bash tests/cli/sim_quickstart.sh "$SRLM"
  done
  NCCLT=$BUILD/tests/gpu_test_comm_nccl
  [ -x "$NCCLT" ] && step comm_nccl_np1 $l_nccl comm_nccl_np1.log mpiexec.openmpi -np 1 "$NCCLT"
  # shard bytes GPU to GPU: needs a GPU per rank (2 learners, a generator, a judge)
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  MPIC=$BUILD/tests/mpi/mpi_comm
  if [ "$gpus" -ge 4 ] && [ -x "$MPIC" ]; then
    step p2p_nccl_np4 $l_p2p p2p_nccl_np4.log mpiexec.openmpi -np 4 -x SRLM_TEST_P2P_BACKEND=cuda "$MPIC" run 2 1 1 0
  else
    echo "skipped: needs 4 GPUs (found $gpus) and $MPIC" >"$LOG/p2p_nccl_np4.log"
  fi
  if command -v compute-sanitizer >/dev/null; then
    mc=(compute-sanitizer --tool memcheck --error-exitcode 99)
    step memcheck_sft $l_mc_sft memcheck_sft.log "${mc[@]}" "$SRLM" sft -c configs/sft-tiny.yaml --backend cuda \
      train.epochs=2 run.out_dir="$LOG/mc" run.name=sft
    # generation, judging, replay steps (backward, AdamW) and the evaluations from that model
    # (a fresh tiny model of the quickstart's shape if the SFT step was cut before it saved one)
    m0=(model.path="$LOG/mc/sft/model")
    [ -f "$LOG/mc/sft/model/config.json" ] || m0=(model.path= model.arch.hidden_size=64 model.arch.intermediate_size=160
      model.arch.num_layers=2 model.arch.num_heads=4 model.arch.num_kv_heads=2 model.arch.max_seq_len=512)
    step memcheck_train $l_mc_train memcheck_train.log "${mc[@]}" "$SRLM" train -c configs/quickstart.yaml --overwrite \
      run.backend=cuda run.out_dir="$LOG/mc" run.name=it "${m0[@]}" run.iterations=1 \
      task.prompts_per_iteration=8 task.eval_prompts=4 generate.samples_per_prompt=4 judge.replay_per_verdict=4 \
      train.batch_size=2 pairs.min_margin=0
  fi
  {
    echo "== gpu_check job on ${card:-unknown card}, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf '%s\n' "${status[@]}"
    for r in 1 3; do grep -hE '^sim_quickstart|^FAIL' "$LOG/quickstart_np$r.log" | cut -c1-200; done
    echo "== comm nccl np1: $(tail -1 "$LOG/comm_nccl_np1.log" 2>/dev/null)"
    echo "== shard bytes by NCCL, np4: $(grep -hE '^p2p:|^skipped|mpi_comm: ' "$LOG/p2p_nccl_np4.log" 2>/dev/null | tr '\n' ' ')"
    echo "== memcheck sft: $(grep -E 'ERROR SUMMARY' "$LOG/memcheck_sft.log" 2>/dev/null | tail -1)"
    echo "== memcheck train: $(grep -E 'ERROR SUMMARY' "$LOG/memcheck_train.log" 2>/dev/null | tail -1)"
  } | tee "$LOG/summary.txt"
  exit 0
fi

# The default mode's limits add up to 555 s: its steps run in order (tests, memcheck, then the
# timings), each cut to what is left of 420 s, as the attention mode's.
CAP=420
DEADLINE=$CAP
budget all 90 40 40 50 70 100 80 60 25

# 2. the tests: every CUDA op against float64 (fp32 and bf16; lacking ops are listed), and
#    the tiny models' log-probs, gradients and AdamW step on cuda against the cpu
step test_backend_ops 90 test_backend_ops.log "$TEST" cuda --dtype fp32,bf16
if [ -x "$EQUIV" ]; then
  step model_equiv 40 model_equiv.log env SRLM_SOURCE_DIR="$PWD" SRLM_TEST_BACKENDS=cuda "$EQUIV"
else
  status+=("model_equiv            skipped: $EQUIV not carried")
fi
# the NCCL transport on one rank (the only NCCL layout one GPU allows), plain and under mpirun
NCCLT=$BUILD/tests/gpu_test_comm_nccl
if [ -x "$NCCLT" ]; then
  step comm_nccl 40 comm_nccl.log "$NCCLT"
  step comm_nccl_np1 50 comm_nccl_np1.log mpiexec.openmpi -np 1 "$NCCLT"
else
  status+=("comm_nccl              skipped: $NCCLT not carried")
fi

# 3. memcheck over the bf16 test (out-of-bounds and misaligned accesses, API errors)
if command -v compute-sanitizer >/dev/null; then
  step memcheck 70 memcheck.log compute-sanitizer --tool memcheck --error-exitcode 99 "$TEST" cuda --dtype bf16
else
  status+=("memcheck               skipped: no compute-sanitizer")
fi

# 4. timings: the CUDA backend at the full shapes (bf16, then fp32; iterations fill about
#    0.3 s per case) and the CPU backend at the small ones on this machine's cores; each op
#    is checked against the CPU op and rerun bit-identical first
step bench_cuda_bf16 100 bench_cuda_bf16.txt "$BENCH" --backend cuda --dtype bf16 --size full --json "$LOG/bench_cuda_bf16.json"
# PyTorch at the same shapes on this card (and its copy bandwidth), then side by side
step torch_bf16 80 torch_bf16.txt python3 bench/gpu_torch.py --dtype bf16 --size full --json "$LOG/torch_bf16.json"
python3 bench/gpu_compare.py "$LOG/bench_cuda_bf16.json" "$LOG/torch_bf16.json" >"$LOG/compare_bf16.txt" 2>&1
python3 bench/gpu_compare.py "$LOG/bench_cuda_bf16.json" "$LOG/torch_bf16.json" --md >"$LOG/compare_bf16.md" 2>&1
step bench_cuda_fp32 60 bench_cuda_fp32.txt "$BENCH" --backend cuda --dtype fp32 --size full --json "$LOG/bench_cuda_fp32.json"
step bench_cpu 25 bench_cpu.txt "$BENCH" --backend cpu --dtype fp32 --size small


# a bench table's rows without the shape column (op, model | iters, time_us, GB/s, TFLOP/s,
# check), so the summary fits the returned tail; the full tables are in the logs
rows() { grep -v '^#' "$1" 2>/dev/null | cut -c3-44,88-; tail -1 "$1" 2>/dev/null; }

{
  echo "== gpu_check on ${card:-unknown card}, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '%s\n' "${status[@]}"
  echo "== test: $(tail -1 "$LOG/test_backend_ops.log")"
  grep -E '^backend .* lacks|FAILED' "$LOG/test_backend_ops.log" | head -12
  grep -E '^FAIL' "$LOG/test_backend_ops.log" | head -8 | cut -c1-400
  echo "== memcheck: $(grep -E 'ERROR SUMMARY' "$LOG/memcheck.log" 2>/dev/null | tail -1)"
  echo "== model equivalence: $(tail -1 "$LOG/model_equiv.log" 2>/dev/null)"
  echo "== comm nccl: $(tail -1 "$LOG/comm_nccl.log" 2>/dev/null); mpirun -np 1: $(tail -1 "$LOG/comm_nccl_np1.log" 2>/dev/null)"
  grep -hE '^FAIL|^  ' "$LOG"/comm_nccl*.log 2>/dev/null | head -6 | cut -c1-300
  echo "== srlm cuda bf16 vs torch (full shapes)"; cut -c1-150 "$LOG/compare_bf16.txt" 2>/dev/null
  echo "== bench cuda fp32 (full shapes)"; rows "$LOG/bench_cuda_fp32.txt"
  echo "== bench cpu fp32 (small shapes): $(tail -1 "$LOG/bench_cpu.txt" 2>/dev/null)"
} | tee "$LOG/summary.txt"
grep -q ' 0 failed' "$LOG/test_backend_ops.log"
