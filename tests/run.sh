#!/usr/bin/env bash
# Builds srlm and runs every test: an AddressSanitizer + UndefinedBehaviorSanitizer build (unit,
# CLI and simulated-kernel tests), a ThreadSanitizer build of the simulated-kernel tests only
# (label sim: a missing __syncthreads in a CUDA kernel is a reported race), then a Release
# build (the unit and sim tests again, the CLI tests the sanitizer stage did not run in full,
# the fuzz smoke run, a localhost Slurm and the container image: label cluster, and
# bench/e2e.sh's harness at the tiny shape: label bench).
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
# Which CLI tests run in which stage: their labels (tests/CMakeLists.txt). release_only (the
# quickstart on cuda-sim, cli.resume) stay out of this stage; SRLM_TEST_QUICK: the scripts that
# read it (kill-and-resume, signals) leave their repetitions to the Release stage.
(cd build-asan && SRLM_TEST_QUICK=1 ctest -L 'unit|cli|sim' -LE release_only --output-on-failure -j"$jobs")

echo "== ThreadSanitizer build: simulated-kernel tests"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSRLM_TSAN=ON -DSRLM_CUDA=OFF >/dev/null
cmake --build build-tsan -j"$jobs" --target srlm_sim_tests
(cd build-tsan && ctest -L sim --output-on-failure -j"$jobs")

echo "== Release build (CUDA compiled when nvcc is found): every test but the CLI tests the sanitizer stage ran in full"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
cd build
# label full_in_asan: CLI scripts the sanitizer stage ran whole against the same sources; the
# unit and sim tests (bits of the optimized code) and every other CLI, cluster, fuzz and bench
# test run here. `ctest` in build/ runs them all.
ctest -LE full_in_asan --output-on-failure -j"$jobs"
