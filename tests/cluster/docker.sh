#!/usr/bin/env bash
# docker/Dockerfile for real (issue 12), with nothing pulled from a registry:
#   1. a Debian 12 base image: debootstrap (minbase) from this machine's apt mirror, then
#      podman import;
#   2. podman build --isolation chroot of docker/Dockerfile with BASE = RUNTIME_BASE = that
#      image (the CPU build: the builder stage compiles srlm, the runtime stage gets the
#      binary, configs/ and the runtime libraries);
#   3. in a container of the image (buildah run --isolation chroot: podman run is refused by
#      this sandbox's resource limits): no compiler; `srlm help` and `srlm version` run; the tiny quickstart, 3 ranks
#      (learner, generator, judge) under the image's mpirun; its table and final weights equal
#      the same run of the host's build (SRLM_BIN).
# Takes about 7 minutes on 2 cores (debootstrap, apt inside the build, a full compile;
# bench/RESULTS.md); ctest cluster.docker, Release stage of tests/run.sh. Removes its images
# and containers at the end. Exit 77 (skipped, with the reason) where podman, buildah or
# debootstrap are missing (launch/install-deps.sh --test) or it does not run as root.
# Usage: SRLM_SOURCE_DIR=. SRLM_TMP=/tmp/x bash tests/cluster/docker.sh build/srlm
set -u
srlm=$(realpath "$1")
src=${SRLM_SOURCE_DIR:?}
tmp=${SRLM_TMP:?}
start=$(date +%s)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
skip() { echo "skipped: $*"; exit 77; }
for c in podman buildah debootstrap mpirun python3; do
  command -v "$c" >/dev/null 2>&1 || skip "$c not installed (launch/install-deps.sh --test)"
done
[ "$(id -u)" -eq 0 ] || skip "debootstrap and podman import need root; running as uid $(id -u)"

tag=$$
base=localhost/srlm-test-debian:12-$tag
image=localhost/srlm-test:$tag
ctr=
root=$(mktemp -d /tmp/srlm-docker.XXXXXX)
cleanup() {
  [ -n "$ctr" ] && { buildah umount "$ctr" >/dev/null 2>&1; buildah rm "$ctr" >/dev/null 2>&1; }
  podman rmi -f "$image" "$base" >/dev/null 2>&1
  # the builder stage's image: dangling images that were not there before
  local id
  for id in $(podman images -q --filter dangling=true 2>/dev/null); do
    grep -qx "$id" "$root/dangling-before" 2>/dev/null || podman rmi -f "$id" >/dev/null 2>&1
  done
  rm -rf "$root"
}
trap cleanup EXIT
podman images -q --filter dangling=true >"$root/dangling-before" 2>/dev/null

# this machine's Debian mirror (deb822 sources, or a one-line sources.list)
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
mirror=${mirror:-http://deb.debian.org/debian}

t0=$(date +%s)
debootstrap --variant=minbase bookworm "$root/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 \
  || { fail "debootstrap bookworm from $mirror: $(tail -n 3 "$tmp/debootstrap.log" | tr '\n' ' ')"; exit 1; }
tar -C "$root/rootfs" -c . | podman import - "$base" >"$tmp/import.log" 2>&1 \
  || { fail "podman import: $(tail -n 3 "$tmp/import.log")"; exit 1; }
rm -rf "$root/rootfs"
echo "base image $base (debootstrap from $mirror + podman import): $(( $(date +%s) - t0 )) s"

t0=$(date +%s)
podman build --isolation chroot --layers=false -f "$src/docker/Dockerfile" --build-arg BASE="$base" \
  --build-arg RUNTIME_BASE="$base" -t "$image" "$src" >"$tmp/build.log" 2>&1 \
  || { fail "podman build: $(tail -n 5 "$tmp/build.log")"; exit 1; }
echo "image $image (podman build): $(( $(date +%s) - t0 )) s, $(podman image inspect -f '{{.Size}}' "$image") bytes"
grep '^srlm image: runtime packages: ' "$tmp/build.log"

ctr=$(buildah from "$image") || { fail "buildah from $image"; exit 1; }
run() { buildah run --isolation chroot "$ctr" -- "$@"; }
run sh -c 'for c in cc gcc c++ g++ nvcc cmake; do command -v $c && exit 1; done; exit 0' >"$tmp/compilers" 2>&1 \
  || fail "the runtime image has a compiler: $(cat "$tmp/compilers")"
run srlm help >"$tmp/help.out" 2>&1 || fail "srlm help in the image: $(tail -n 3 "$tmp/help.out")"
run srlm version >"$tmp/version.out" 2>&1 || fail "srlm version in the image: $(tail -n 3 "$tmp/version.out")"
sed 's/^/  /' "$tmp/version.out"

tiny="-c configs/quickstart.yaml model.path= model.arch.hidden_size=32 model.arch.intermediate_size=64
  model.arch.num_layers=2 model.arch.num_heads=2 model.arch.max_seq_len=64 run.iterations=3
  task.prompts_per_iteration=480 task.eval_prompts=64 generate.samples_per_prompt=4 judge.replay_per_verdict=16
  train.batch_size=4 train.lr=1e-3 pairs.min_margin=0 roles.shard_prompts=8 roles.threads=1
  roles.colocate=false roles.learners=1 roles.generators=1 roles.judges=1 run.name=tiny"
t0=$(date +%s)
run mpirun --oversubscribe --bind-to none -np 3 srlm train $tiny run.out_dir=/tmp/runs >"$tmp/image.out" 2>"$tmp/image.err" \
  || { fail "the tiny quickstart in the image"; tail -n 5 "$tmp/image.err" >&2; }
echo "tiny quickstart in the image (mpirun -np 3, buildah run): $(( $(date +%s) - t0 )) s"
cat "$tmp/image.out"
(cd "$src" && rm -rf "$tmp/runs" && timeout 300 mpirun --oversubscribe --bind-to none -np 3 "$srlm" train $tiny \
  run.out_dir="$tmp/runs" >"$tmp/host.out" 2>"$tmp/host.err") || { fail "the tiny quickstart on the host"; tail -n 5 "$tmp/host.err" >&2; }

table() { awk '$1 == "iter" || $1 == "start" { NF--; print }' "$1"; }
[ "$(table "$tmp/image.out" | grep -c '^iter')" -eq 3 ] || fail "the image's table has no 3 iterations"
[ "$(table "$tmp/image.out")" = "$(table "$tmp/host.out")" ] \
  || fail "the image's table differs from the host's: $(table "$tmp/host.out" | tr '\n' '|')"
mnt=$(buildah mount "$ctr") || fail "buildah mount"
cmp -s "$mnt/tmp/runs/tiny/iter_3/model/model.safetensors" "$tmp/runs/tiny/iter_3/model/model.safetensors" \
  || fail "the image's final weights differ from the host's"

echo "docker.sh: $fails failed, $(( $(date +%s) - start )) s"
[ "$fails" -eq 0 ]
