#!/usr/bin/env bash
# Stops the cluster and removes its state (certificates, etcd data, images in
# the cluster's containerd, kubelet data). Compiled binaries stay cached.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"
need_root
bash "$here/down.sh"
# --one-file-system: never follow a mount that somehow survived into the host.
rm -rf --one-file-system "$SIMDEV_STATE" "$SIMDEV_RUN"
# The kubelet root may itself be a mount point: empty it rather than remove it.
[ -d "$KUBELET_ROOT" ] && find "$KUBELET_ROOT" -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system {} +
log "removed cluster state ($SIMDEV_STATE, $KUBELET_ROOT); binaries stay in $(k8s_bin_dir)"
