#!/usr/bin/env bash
# Stops every process the local cluster started, by PID, stops all pod
# containers, unmounts what was mounted and removes the routes, on every node. Keeps state.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"
. "$here/lib/nodes.sh"
. "$here/lib/recover.sh"
need_root

nodes=$(recorded_nodes)
# The kubelets go first so they do not restart the containers stopped below.
for n in $(seq 1 "$nodes"); do
  use_node "$n"
  stop_daemon "kubelet$SUFFIX"
done
for n in $(seq 1 "$nodes"); do
  use_node "$n"
  stop_node_containers
done
for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  stop_daemon "$name"
done
for n in $(seq 1 "$nodes"); do
  use_node "$n"
  stop_node_runtime
done
if is_mount "$NS_DIR"; then umount "$NS_DIR"; fi
log "cluster down"
