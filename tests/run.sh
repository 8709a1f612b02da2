#!/usr/bin/env bash
# Builds srlm and runs every test: an AddressSanitizer + UndefinedBehaviorSanitizer build (unit,
# CLI and simulated-kernel tests), a ThreadSanitizer build of the simulated-kernel tests only
# (label sim: a missing __syncthreads in a CUDA kernel is a reported race), then a Release
# build (all tests, including the fuzz smoke run, a localhost Slurm and the container image: label
# cluster, and bench/e2e.sh's harness at the tiny shape: label bench).
# Ends with ctest's summary line. Usage: tests/run.sh  (from anywhere)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash launch/install-deps.sh --test

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
jobs=$(nproc 2>/dev/null || echo 2)

echo "== sanitizer build (ASan + UBSan): unit, CLI and simulated-kernel tests"
# (SRLM_SANITIZE builds Debug at -O1: CMakeLists.txt)
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSRLM_SANITIZE=ON -DSRLM_CUDA=OFF >/dev/null
cmake --build build-asan -j"$jobs"
# cli.sim_quickstart and cli.sim_quickstart_np3 are the Release build's: their kernels run under ASan in unit.backend_ops.cuda_sim and
# the sim tests already, and the simulator under ASan would make them the slowest tests (3 min)
# SRLM_TEST_QUICK: the kill-and-resume and signal tests leave their repetitions (more kill
# points, the same signal through mpirun) to the Release stage. cli.resume (kills at 5
# points, 9 minutes under ASan on 2 loaded cores) is the Release stage's too: checkpoints,
# kills and resumes run under ASan in cli.consist, rewards, warp, zero, countdown and meta.
(cd build-asan && SRLM_TEST_QUICK=1 ctest -L 'unit|cli|sim' \
  -E 'cli.sim_quickstart|cli.resume' \
  --output-on-failure -j"$jobs")

echo "== ThreadSanitizer build: simulated-kernel tests"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSRLM_TSAN=ON -DSRLM_CUDA=OFF >/dev/null
cmake --build build-tsan -j"$jobs" --target srlm_sim_tests
(cd build-tsan && ctest -L sim --output-on-failure -j"$jobs")

echo "== Release build (CUDA compiled when nvcc is found): all tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
cd build
ctest --output-on-failure -j"$jobs"
