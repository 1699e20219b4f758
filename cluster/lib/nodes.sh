# Extra nodes (2, 3, ...) on this one machine: their mount namespaces, cgroups and removal.
# Each runs its kubelet and containerd in a private mount namespace where the node's own
# directory is bind-mounted on the kubelet root (and its own pod-log directories on the
# host's), so a plugin pod's hostPath /var/lib/kubelet/device-plugins reaches its own node's
# kubelet. The namespace is pinned to a file, so it outlives restarts of either daemon.
# Sourced, after common.sh; functions act on the node chosen by use_node.
# shellcheck shell=bash

POD_LOG_DIRS=(/var/log/pods /var/log/containers)

is_mount() { awk -v p="$1" '$5 == p {found=1} END {exit !found}' /proc/self/mountinfo; }

# node_ns_ready: the node's namespace exists and has its kubelet root in place.
node_ns_ready() {
  is_mount "$NODE_NS" && nsenter --mount="$NODE_NS" -- \
    bash -c '[ "$(stat -c %d:%i "$1")" = "$(stat -c %d:%i "$2")" ]' _ "$KUBELET_ROOT" "$KUBELET_DIR"
}

ensure_node_ns() {
  node_ns_ready && return 0
  drop_node_ns
  mkdir -p "$NS_DIR" "$KUBELET_DIR" "${POD_LOG_DIRS[@]}" \
    "$NODE_STATE/log/pods" "$NODE_STATE/log/containers"
  # A namespace file can only be pinned on a mount that does not propagate.
  if ! is_mount "$NS_DIR"; then
    mount --bind "$NS_DIR" "$NS_DIR"
    mount --make-private "$NS_DIR"
  fi
  touch "$NODE_NS"
  unshare --mount="$NODE_NS" --propagation private true
  # Inside: drop the copies of node 1's pod and container mounts (they would pin its
  # volumes), then put the node's own directories in place.
  nsenter --mount="$NODE_NS" -- bash -c '
    set -e
    awk "{print \$5}" /proc/self/mountinfo | grep -E "^($1|$2|$3)/" | sort -r \
      | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    mount --bind "$4" "$3"
    mount --make-rshared "$3"
    mount --bind "$5/log/pods" /var/log/pods
    mount --bind "$5/log/containers" /var/log/containers
  ' _ "$SIMDEV_RUN" "$SIMDEV_STATE/containerd" "$KUBELET_ROOT" "$KUBELET_DIR" "$NODE_STATE"
  log "made the mount namespace of node $NODE_NAME"
}

# drop_node_ns: releases the pinned namespace; its mounts go once no process uses them.
drop_node_ns() {
  if is_mount "$NODE_NS"; then umount "$NODE_NS" 2>/dev/null || umount -l "$NODE_NS"; fi
  rm -f "$NODE_NS"
}

# node_exec: the command prefix that runs a daemon of the node: nothing for node 1, its
# namespace behind the guard for the others. Sets the array NODE_EXEC.
node_exec() {
  NODE_EXEC=()
  [ "$NODE_INDEX" -eq 1 ] && return 0
  NODE_EXEC=(nsenter --mount="$NODE_NS" -- bash "$CLUSTER_DIR/lib/node-exec.sh"
    "$KUBELET_DIR" "$KUBELET_ROOT")
}

cgroup_hierarchies() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts; }

# The kubelet wants its cgroup root in every hierarchy (name=systemd and the unified one
# too); cgroup v1 cpusets start empty, so they take the root's CPUs and memory nodes.
make_node_cgroups() {
  local h
  [ "$CGROUP_ROOT" != / ] || return 0
  for h in $(cgroup_hierarchies); do
    mkdir -p "$h$CGROUP_ROOT"
    if [ -f "$h/cpuset.cpus" ] && [ -z "$(cat "$h$CGROUP_ROOT/cpuset.cpus")" ]; then
      cat "$h/cpuset.cpus" > "$h$CGROUP_ROOT/cpuset.cpus"
      cat "$h/cpuset.mems" > "$h$CGROUP_ROOT/cpuset.mems"
    fi
  done
}

# kill_cgroup_orphans: the processes left in the node's cgroups. A container whose shim was
# killed lives on, re-parented, holding its node's namespace, cgroups and host ports. An
# extra node's cgroup root is its own, so whatever is in it is the node's; node 1's root is
# the machine's, and only its kubelet's pod cgroups (kubepods) are the node's.
kill_cgroup_orphans() {
  local h pids root=$CGROUP_ROOT
  [ "$root" != / ] || root=/kubepods
  pids=$(for h in $(cgroup_hierarchies); do
    [ ! -d "$h$root" ] || find "$h$root" -name cgroup.procs -exec cat {} +
  done | sort -u)
  [ -n "$pids" ] || return 0
  log "killing what is left in the cgroups of node $NODE_NAME: $(echo $pids)"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

# remove_cgroups PATTERN: the matching cgroups (an extra node's root) in every hierarchy,
# deepest first; a cgroup still holding processes stays, named in the log.
remove_cgroups() {
  local h d
  for h in $(cgroup_hierarchies); do
    for d in "$h"/$1; do
      [ -d "$d" ] || continue
      find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || log "could not remove cgroup $d"
    done
  done
}

# remove_node: takes the node chosen by use_node out of the cluster for good. DaemonSet pods
# ignore a drain, so a NoExecute taint evicts them; the kubelet stops before its Node is
# deleted, or it would register the node again.
remove_node() {
  if running "kubelet$SUFFIX"; then
    kubectl_admin taint node "$NODE_NAME" simdev.io/removed=:NoExecute --overwrite >/dev/null
    wait_until 90 "pods of $NODE_NAME to leave" node_empty \
      || log "pods still on $NODE_NAME after 90s: stopping them with the node"
  fi
  stop_daemon "kubelet$SUFFIX"
  stop_node_containers
  stop_node_runtime
  kubectl_admin delete node "$NODE_NAME" --ignore-not-found >/dev/null
  remove_cgroups "${CGROUP_ROOT#/}"
  rm -rf --one-file-system "$NODE_STATE" "$NODE_RUN"
  rm -f "$PKI/$KUBELET_CERT.crt" "$PKI/$KUBELET_CERT.key"
}

node_empty() {
  [ -z "$(kubectl_admin get pods -A --field-selector "spec.nodeName=$NODE_NAME" -o name)" ]
}
