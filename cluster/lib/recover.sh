# Cleanup of what a stopped or killed cluster leaves behind, and the host
# network rules the cluster needs. Sourced.
# shellcheck shell=bash

our_shims() { pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK" || true; }

# Shims outlive containerd; they are ours when they name our containerd socket.
kill_shims() {
  local pids
  pids=$(our_shims)
  [ -n "$pids" ] || return 0
  log "killing leftover containerd shims and their containers: $(echo $pids)"
  # The shim's children are the containers; take them down with it.
  for pid in $pids; do
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# Every mount point of node 1 under the cluster's own directories, deepest first. Pod network
# namespaces live under $SIMDEV_RUN (containerd's state); the kubelet's pod volumes count
# only when the kubelet root is recorded as ours. The pinned namespaces of the other nodes
# are theirs (see drop_node_ns); their other mounts live inside those namespaces.
our_mounts() {
  local roots="$SIMDEV_RUN|$SIMDEV_STATE/containerd"
  if kubelet_root_ours; then roots+="|$KUBELET_ROOT/pods"; fi
  awk '{print $5}' /proc/self/mountinfo | grep -E "^($roots)(/|$)" \
    | grep -Ev "^$NS_DIR(/|$)" | sort -r || true
}

unmount_ours() {
  local m n=0
  while read -r m; do
    [ -n "$m" ] || continue
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
    n=$((n + 1))
  done < <(our_mounts)
  [ "$n" -eq 0 ] || log "unmounted $n leftover mounts"
}

# The kubelet clears and owns whatever is under its root: use one only if it is ours (made
# by this cluster, or found empty), never another kubelet's.
claim_kubelet_root() {
  if kubelet_root_ours; then
    return 0
  fi
  if [ -d "$KUBELET_ROOT" ] && [ -n "$(ls -A "$KUBELET_ROOT")" ]; then
    die "$KUBELET_ROOT is in use by something else; set KUBELET_ROOT to a directory of its own"
  fi
  mkdir -p "$KUBELET_ROOT" "$SIMDEV_STATE"
  echo "$KUBELET_ROOT" > "$KUBELET_ROOT_MARK"
}

# Called for the node chosen by use_node when its containerd is not running and no shim of
# it is left (after a reboot, or after cluster-down): nothing of the node can still be in
# use. Node 1's sweep takes the control plane down too; the others' only their own kubelet.
sweep_leftovers() {
  local name
  if [ "$NODE_INDEX" -eq 1 ]; then
    for name in kwok kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
      stop_daemon "$name"
    done
    kill_shims
    kill_cgroup_orphans
    unmount_ours
  else
    stop_daemon "kubelet$SUFFIX"
    kill_shims
    kill_cgroup_orphans
    drop_node_ns
  fi
  # Pod IP leases and runtime state describe sandboxes that no longer exist.
  rm -rf "$NODE_RUN/cni-ipam" "$NODE_RUN/containerd/state"
  rm -f "$(pidfile "containerd$SUFFIX")"
}

# setup_network: the service route, and the rule of the node chosen by use_node.
setup_network() {
  # A packet to a service IP would otherwise follow the default route off the machine.
  ip route replace blackhole "$SERVICE_CIDR"
  # Pods have no default route; this also drops anything forwarded out of the pod subnet.
  iptables -C FORWARD -s "$POD_CIDR" ! -d "$POD_CIDR" -j DROP 2>/dev/null \
    || iptables -I FORWARD -s "$POD_CIDR" ! -d "$POD_CIDR" -j DROP
}

# teardown_network: the node's rule and bridge; the service route goes with the last node.
teardown_network() {
  [ "$NODE_INDEX" -ne 1 ] || ip route del blackhole "$SERVICE_CIDR" 2>/dev/null || true
  while iptables -D FORWARD -s "$POD_CIDR" ! -d "$POD_CIDR" -j DROP 2>/dev/null; do :; done
  ip link del "$BRIDGE" 2>/dev/null || true
}

# stop_node_containers: every pod container of the node chosen by use_node (its kubelet
# stopped first, so it does not start them again).
stop_node_containers() {
  local tasks t
  running "containerd$SUFFIX" || return 0
  tasks=$(ctr_k8s tasks ls -q 2>/dev/null || true)
  for t in $tasks; do
    # --force kills a running task and waits for it before deleting it.
    ctr_k8s tasks delete --force "$t" >/dev/null 2>&1 || log "could not stop container $t"
  done
  [ -z "$tasks" ] || log "stopped $(echo "$tasks" | wc -w) pod containers of node $NODE_NAME"
}

# stop_node_runtime: the node's containerd, shims, mounts, IP leases and network.
stop_node_runtime() {
  stop_daemon "containerd$SUFFIX"
  kill_shims
  kill_cgroup_orphans
  if [ "$NODE_INDEX" -eq 1 ]; then
    unmount_ours
  else
    drop_node_ns
  fi
  rm -rf "$NODE_RUN/cni-ipam"
  teardown_network
}
