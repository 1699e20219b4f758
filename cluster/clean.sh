#!/usr/bin/env bash
# Stops the cluster and removes its state (certificates, etcd data, images in
# the cluster's containerd, kubelet data, the extra nodes' cgroups). Compiled binaries stay cached.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"
. "$here/lib/nodes.sh"
need_root
bash "$here/down.sh"
removed=("$SIMDEV_STATE")
# The kubelet root is emptied only when the records say it is ours; it may itself be a
# mount point, so it is emptied rather than removed. --one-file-system: never follow a
# mount that somehow survived into the host.
if kubelet_root_ours && [ -d "$KUBELET_ROOT" ]; then
  find "$KUBELET_ROOT" -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system {} +
  removed+=("$KUBELET_ROOT")
fi
remove_cgroups "simdev-node-*"
# The extra nodes' kubelet roots are under the state; their mounts lived in namespaces that
# down.sh released, so nothing is mounted below it here.
rm -rf --one-file-system "$SIMDEV_STATE" "$SIMDEV_RUN"
log "removed cluster state (${removed[*]}); binaries stay in $(k8s_bin_dir)"
