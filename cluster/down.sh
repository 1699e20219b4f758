#!/usr/bin/env bash
# Stops every process the local cluster started, by PID, stops all pod
# containers, unmounts what was mounted and removes the routes. Keeps state.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"
. "$here/lib/recover.sh"
need_root

# The kubelet goes first so it does not restart the containers stopped below.
stop_daemon kubelet
if running containerd; then
  tasks=$(ctr_k8s tasks ls -q 2>/dev/null || true)
  for t in $tasks; do
    # --force kills a running task and waits for it before deleting it.
    ctr_k8s tasks delete --force "$t" >/dev/null 2>&1 || log "could not stop container $t"
  done
  [ -z "$tasks" ] || log "stopped $(echo "$tasks" | wc -w) pod containers"
fi
for name in kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do
  stop_daemon "$name"
done
kill_shims
unmount_ours
rm -rf "$SIMDEV_RUN/cni-ipam"
teardown_network
log "cluster down"
