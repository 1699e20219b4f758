#!/usr/bin/env bash
# Builds the project images and loads them into a cluster.
#   images.sh build       - build with docker or podman when they work, else buildah
#   images.sh load-local  - import into the local cluster's containerd
#   images.sh load-kind   - load into the kind cluster
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/lib/common.sh"

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -1)
IMAGES=(plugin operator)
out=$repo/build/images

ref() { echo "localhost/simdev-$1:$VERSION"; }

builder() {
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker
  elif command -v podman >/dev/null && podman info >/dev/null 2>&1; then echo podman
  elif command -v buildah >/dev/null; then echo buildah
  else die "no image builder: install buildah, podman or docker"
  fi
}

# The build reaches the Python package index the way this host does: the
# host's pip settings and CA bundle are handed to RUN steps as read-only mounts.
pip_mounts() {
  local conf=$1 cert
  python3 -m pip config list 2>/dev/null | sed -nE "s/^[^.]*\.([a-z-]+)='(.*)'$/\1 = \2/p" \
    | grep -Ev '^(find-links|no-index) ' | awk '!seen[$1]++' | { echo "[global]"; cat; } > "$conf"
  echo "-v $conf:/etc/pip.conf:ro"
  cert=$(sed -n 's/^cert = //p' "$conf" | head -1)
  [ -n "$cert" ] && [ -f "$cert" ] && echo "-v $cert:$cert:ro"
  return 0
}

build() {
  local tool name conf mounts
  tool=$(builder)
  mkdir -p "$out"
  if [ "$tool" = buildah ]; then
    need_root
    # The Dockerfiles start FROM python:3.11-slim-bookworm, which no registry
    # can serve here: a local stand-in with the same name is built once.
    bash "$here/base-images.sh" python
    conf=$(mktemp)
    mounts=$(pip_mounts "$conf")
  fi
  for name in "${IMAGES[@]}"; do
    local start; start=$(date +%s)
    case $tool in
      buildah)
        # shellcheck disable=SC2086
        buildah bud --quiet --pull=never --layers --network host $mounts \
          -f "$repo/Dockerfile.$name" -t "$(ref "$name")" "$repo" >/dev/null
        rm -f "$out/$name.tar"
        buildah push --quiet "$(ref "$name")" "docker-archive:$out/$name.tar:$(ref "$name")" ;;
      *)
        "$tool" build -q -f "$repo/Dockerfile.$name" -t "$(ref "$name")" "$repo" >/dev/null
        "$tool" save -o "$out/$name.tar" "$(ref "$name")" ;;
    esac
    log "built $(ref "$name") in $(( $(date +%s) - start ))s ($(du -m "$out/$name.tar" | cut -f1) MiB)"
  done
  [ -z "${conf:-}" ] || rm -f "$conf"
}

archives() {
  local name
  for name in "${IMAGES[@]}"; do
    [ -f "$out/$name.tar" ] || die "$out/$name.tar is missing: run 'make images' first"
    echo "$out/$name.tar"
  done
}

case ${1:-} in
  build) build ;;
  load-local)
    need_root
    # Every node's containerd keeps its own images.
    for node in $(seq 1 "$(recorded_nodes)"); do
      use_node "$node"
      running "containerd$SUFFIX" || die "node $NODE_NAME is not running: run 'make cluster-up'"
      for tar in $(archives); do
        ctr_k8s images import "$tar" >/dev/null
      done
    done
    log "imported $(for n in "${IMAGES[@]}"; do printf '%s ' "$(ref "$n")"; done)into the local cluster's $(recorded_nodes) node(s)" ;;
  load-kind)
    for tar in $(archives); do
      kind load image-archive --name "${KIND_CLUSTER:-simdev}" "$tar"
    done ;;
  *) die "usage: images.sh build|load-local|load-kind" ;;
esac
