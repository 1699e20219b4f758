# Shared settings and helpers for the local-cluster scripts. Sourced, not run.
# shellcheck shell=bash

K8S_VERSION=${K8S_VERSION:-v1.34.4}
CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Compiled binaries and base images live outside the repo, keyed by version, and
# survive `make cluster-clean`.
SIMDEV_CACHE=${SIMDEV_CACHE:-/var/cache/simdev}
# Cluster state: certificates, etcd data, containerd images, logs.
SIMDEV_STATE=${SIMDEV_STATE:-/var/lib/simdev-cluster}
# Runtime files (PID files, sockets); gone after a reboot, as they should be.
SIMDEV_RUN=${SIMDEV_RUN:-/run/simdev-cluster}
# The kubelet keeps its standard root by default, so /var/lib/kubelet/device-plugins is the
# path plugin pods mount. Settable for a machine whose /var/lib/kubelet belongs to another
# kubelet (plugin pods then need their device-plugin hostPath changed to match).
KUBELET_ROOT=${KUBELET_ROOT:-/var/lib/kubelet}
# Records that the cluster created KUBELET_ROOT (or found it empty) and may clean it.
KUBELET_ROOT_MARK=$SIMDEV_STATE/kubelet-root.ours

# kubelet_root_ours: true when the records say KUBELET_ROOT is this cluster's. The record
# holds the path it was made for. State from before the record existed always used
# /var/lib/kubelet; claim_kubelet_root runs before any state is written, so state without a
# record can only be that.
kubelet_root_ours() {
  if [ -f "$KUBELET_ROOT_MARK" ]; then
    [ "$(cat "$KUBELET_ROOT_MARK")" = "$KUBELET_ROOT" ]
    return
  fi
  if [ -d "$SIMDEV_STATE" ] && [ "$KUBELET_ROOT" = /var/lib/kubelet ]; then
    echo "$KUBELET_ROOT" > "$KUBELET_ROOT_MARK"
    return 0
  fi
  return 1
}

API_PORT=6443
ETCD_CLIENT_PORT=2379
ETCD_PEER_PORT=2380
# Services are never routed (no kube-proxy).
SERVICE_CIDR=10.96.0.0/16

PKI=$SIMDEV_STATE/pki
LOGS=$SIMDEV_STATE/logs
ADMIN_KUBECONFIG=$SIMDEV_STATE/admin.kubeconfig
# How many nodes the cluster has, recorded so a later cluster-up without NODES keeps them.
NODES_FILE=$SIMDEV_STATE/node-count
# Extra nodes' mount namespaces are pinned to files here (see lib/nodes.sh).
NS_DIR=$SIMDEV_RUN/ns
MAX_NODES=9

# recorded_nodes: the node count of the existing cluster, 1 when there is none.
recorded_nodes() {
  if [ -f "$NODES_FILE" ]; then cat "$NODES_FILE"; else echo 1; fi
}

# use_node N: sets the per-node settings for node N (1-based). Node 1 keeps the layout of a
# single-node cluster; node N > 1 keeps its files under nodes/N and runs its kubelet and
# containerd in a mount namespace where its own directory is /var/lib/kubelet.
use_node() {
  NODE_INDEX=$1
  # The node is named by its address: the kubelet refuses a loopback --node-ip but takes the
  # address from a node name that is an IP, and loopback is all anything here may reach.
  NODE_NAME=127.0.0.$NODE_INDEX
  # Pods live on a bridge with a subnet of their node's.
  POD_CIDR=10.244.$((NODE_INDEX - 1)).0/24
  BRIDGE=simdev$((NODE_INDEX - 1))
  if [ "$NODE_INDEX" -eq 1 ]; then
    SUFFIX=
    NODE_STATE=$SIMDEV_STATE
    NODE_RUN=$SIMDEV_RUN
    KUBELET_DIR=$KUBELET_ROOT
    CGROUP_ROOT=/
    KUBELET_CERT=kubelet
  else
    SUFFIX=-$NODE_INDEX
    NODE_STATE=$SIMDEV_STATE/nodes/$NODE_INDEX
    NODE_RUN=$SIMDEV_RUN/nodes/$NODE_INDEX
    KUBELET_DIR=$NODE_STATE/kubelet
    CGROUP_ROOT=/simdev-node-$NODE_INDEX
    KUBELET_CERT=kubelet-$NODE_INDEX
  fi
  NODE_NS=$NS_DIR/$NODE_INDEX
  CONTAINERD_SOCK=$NODE_RUN/containerd/containerd.sock
}
use_node 1

# The container runtime of every node: `built` is containerd 2.x from the Go module proxy
# (build-containerd.sh), which applies CDI devices (the DRA driver's claims need them);
# `system` is the distribution's containerd (Debian's 1.6 has no CDI).
SIMDEV_CONTAINERD=${SIMDEV_CONTAINERD:-built}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

k8s_bin_dir() { echo "$SIMDEV_CACHE/k8s/$K8S_VERSION/bin"; }
BIN=$(k8s_bin_dir)

need_root() { [ "$(id -u)" -eq 0 ] || die "the local cluster needs root (it runs containerd and the kubelet)"; }

ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

pidfile() { echo "$SIMDEV_RUN/$1.pid"; }

# running NAME: true when the PID file names a live process still running our binary
# (an extra node's daemons are named with the node's number: kubelet-2 runs kubelet).
running() {
  local f pid
  f=$(pidfile "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -qa -- "${1%-[0-9]}" "/proc/$pid/cmdline" 2>/dev/null
}

# start_daemon NAME CMD...: starts CMD in its own session, logging to LOGS/NAME.log.
start_daemon() {
  local name=$1; shift
  mkdir -p "$LOGS" "$SIMDEV_RUN"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$(pidfile "$name")"
}

# stop_daemon NAME: SIGTERM, then SIGKILL after 15 s; removes the PID file.
stop_daemon() {
  local name=$1 pid i
  if running "$name"; then
    pid=$(cat "$(pidfile "$name")")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then
      log "$name did not stop on SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$(pidfile "$name")"
}

# wait_until SECONDS WHAT CMD...: polls CMD every half second.
wait_until() {
  local limit=$1 what=$2 deadline; shift 2
  deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

# Base images built locally (no registry is reachable): name -> reference.
base_image_ref() {
  case $1 in
    pause) echo "localhost/pause:3.10" ;;
    busybox) echo "docker.io/library/busybox:1.36" ;;
    python) echo "docker.io/library/python:3.11-slim-bookworm" ;;
    *) die "unknown base image $1" ;;
  esac
}
base_image_tar() { echo "$SIMDEV_CACHE/images/$1.tar"; }
