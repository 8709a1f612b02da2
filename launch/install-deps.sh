#!/usr/bin/env bash
# Installs the Debian packages srlm needs to build and test, if any are missing.
# Idempotent: does nothing when everything is present. Works as root without sudo;
# otherwise uses sudo when available, or prints the command to run.
#   launch/install-deps.sh          build + run dependencies
#   launch/install-deps.sh --test   also what the tests use (clang for the fuzzers; numpy for
#                                   tests/cli/merge.sh; Slurm and
#                                   MUNGE for tests/cluster/slurm.sh; podman, buildah and
#                                   debootstrap for tests/cluster/docker.sh)
set -euo pipefail

pkgs=(build-essential cmake pkg-config libyaml-dev libhdf5-dev libopenmpi-dev openmpi-bin
      libpcre2-dev libjansson-dev)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(clang libclang-rt-dev)
  pkgs+=(chromium) # tests/cli/report_chromium.sh: srlm report rendered headless
  command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
  # tests/cli/merge.sh checks srlm merge against numpy; other test scripts use python3 alone
  python3 -c 'import numpy' >/dev/null 2>&1 || pkgs+=(python3-numpy) # Debian's python3 (merge.sh falls back to it)
fi
# tests/cluster/: Slurm and MUNGE (slurm.sh), podman, buildah and debootstrap (docker.sh)
[ "${1:-}" = "--test" ] && pkgs+=(slurmctld slurmd slurm-client munge podman buildah debootstrap)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "srlm: all build packages present"
  exit 0
fi

echo "srlm: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo)
else
  echo "srlm: not root and no passwordless sudo; run as root:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "srlm: installed ${missing[*]}"
