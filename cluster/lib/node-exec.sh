#!/usr/bin/env bash
# Runs a daemon of an extra node (its kubelet or containerd) once it is sure to be inside the
# node's mount namespace, where the node's own directory is the kubelet root. The kubelet
# clears sockets and orphaned pods under its root when it starts: on the host's root it would
# wreck node 1. usage: node-exec.sh NODE_KUBELET_DIR KUBELET_ROOT COMMAND...
set -euo pipefail
dir=$1 root=$2
shift 2
if [ "$(stat -c %d:%i "$root")" != "$(stat -c %d:%i "$dir")" ]; then
  echo "refusing to start $1: $root is not $dir here, so this is not the node's mount namespace" >&2
  exit 1
fi
exec "$@"
