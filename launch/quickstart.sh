#!/usr/bin/env bash
# srlm quickstart: installs what is missing, builds Release, and runs the main job on its
# built-in default config (configs/quickstart.yaml). Extra arguments are passed on as
# config overrides, e.g.  launch/quickstart.sh run.seed=7
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash launch/install-deps.sh

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "== srlm train -c configs/quickstart.yaml $*"
build/srlm train -c configs/quickstart.yaml "$@"
