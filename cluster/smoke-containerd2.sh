#!/usr/bin/env bash
# Smoke test of containerd 2.x (build-containerd.sh) with its cluster configuration
# (lib/containerd2.sh), on a private instance: its own root, state, socket and CDI dir under
# DIR (a new temp dir by default), never the cluster's. It checks that the CRI plugin loads
# with the CDI dir, that a container runs with Debian's runc under cgroup v1, and, when
# CRICTL names a crictl, that a CRI container gets the env of a CDI device. Then it starts
# Debian's containerd 1.6 the same way and prints start time and idle RSS of both.
# Everything it started is stopped and DIR is removed on exit.
# Usage: smoke-containerd2.sh [DIR]   (as root; DIR must not exist)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"
# shellcheck source=lib/config.sh
. "$here/lib/config.sh"
# shellcheck source=lib/containerd2.sh
. "$here/lib/containerd2.sh"
need_root

dir=${1:-$(mktemp -u /tmp/containerd2-smoke.XXXXXX)}
[ ! -e "$dir" ] || die "$dir exists; give a new dir"
bin=$(bash "$here/build-containerd.sh" | tail -1)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

pids=()
pod_cgroup=containerd2-smoke-$$-pod
# cleanup: removes the containers left in the instances' runc roots, stops the daemons this
# script started and their shims (by session: each daemon leads its own), unmounts what they
# left under DIR, removes DIR.
cleanup() {
  local pid m root id
  for root in "$dir"/*/run/runc; do
    [ -d "$root" ] || continue
    for id in $(runc --root "$root" list -q 2>/dev/null); do
      runc --root "$root" delete -f "$id" 2>/dev/null || true
    done
  done
  for pid in "${pids[@]}"; do
    pkill -TERM -s "$pid" 2>/dev/null || true
  done
  sleep 1
  for pid in "${pids[@]}"; do
    pkill -KILL -s "$pid" 2>/dev/null || true
  done
  rmdir /sys/fs/cgroup/*/"$pod_cgroup" 2>/dev/null || true
  # Deepest first.
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
  rm -rf "$dir"
}
trap cleanup EXIT

# use_instance NAME: points the cluster's variables at a private instance under DIR.
use_instance() {
  SIMDEV_STATE=$dir/$1/state
  SIMDEV_RUN=$dir/$1/run
  # The config writers write the files of the node use_node chose: this instance's.
  NODE_STATE=$SIMDEV_STATE
  NODE_RUN=$SIMDEV_RUN
  LOGS=$dir/$1/logs
  CONTAINERD_SOCK=$SIMDEV_RUN/containerd/containerd.sock
  # Unix socket paths are limited; the longest is containerd's ttrpc socket beside this one.
  (( ${#CONTAINERD_SOCK} + 6 <= 104 )) \
    || die "DIR: $dir is too long for containerd's sockets under it; give a shorter one"
  mkdir -p "$SIMDEV_STATE" "$SIMDEV_RUN" "$LOGS"
}

# start_containerd PATH CONTAINERD: starts it in its own session and records its PID for
# cleanup (so never in a subshell); sets `took` to the seconds until it answers (polled
# every 50 ms, for at most 60 s).
start_containerd() {
  local t0 pid i
  t0=$(date +%s.%N)
  PATH=$1 setsid "$2" --config "$SIMDEV_STATE/containerd/config.toml" \
    >>"$LOGS/containerd.log" 2>&1 </dev/null &
  pid=$!
  pids+=("$pid")
  echo "$pid" >"$SIMDEV_RUN/containerd.pid"
  for ((i = 0; i < 1200; i++)); do
    [ -d "/proc/$pid" ] || break
    if "$ctr" --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; then
      took=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.2f", a - b}')
      return
    fi
    sleep 0.05
  done
  cat "$LOGS/containerd.log" >&2
  die "containerd did not start"
}

# restart_containerd PATH CONTAINERD: stops the instance's containerd (SIGTERM, as
# cluster-down does) and starts it again on its existing root; sets `took` likewise.
restart_containerd() {
  local pid
  pid=$(cat "$SIMDEV_RUN/containerd.pid")
  kill -TERM "$pid"
  while [ -d "/proc/$pid" ]; do sleep 0.05; done
  start_containerd "$@"
}

# idle_rss: containerd's RSS in MiB after it has settled.
idle_rss() {
  sleep 5
  awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$(cat "$SIMDEV_RUN/containerd.pid")/status"
}

# --- containerd 2.x ---
use_instance v2
CDI_SPEC_DIRS=$dir/cdi
write_containerd2_config
# Loopback only: no bridge, no other network. Sandboxes below use the host's network anyway.
cat >"$SIMDEV_STATE/cni/net.d/10-loopback.conflist" <<'CFG'
{"cniVersion": "1.0.0", "name": "smoke", "plugins": [{"type": "loopback"}]}
CFG
ctr=$bin/ctr
# ctr repeats the daemon's cgroup v1 deprecation warning on every call; once in the log is enough.
c() {
  "$ctr" --address "$CONTAINERD_SOCK" --namespace k8s.io "$@" \
    2> >(grep -v 'DEPRECATION: The support for cgroup v1' >&2)
}
start_containerd "$bin:$PATH" "$bin/containerd"
v2_start=$took
log "containerd $("$bin/containerd" --version | awk '{print $3}') answered after ${v2_start}s"

plugins=$(c plugins ls)
for p in io.containerd.grpc.v1.cri io.containerd.cri.v1.runtime io.containerd.cri.v1.images; do
  # Columns: type, id, platforms, status.
  [ -n "$(awk -v p="$p" '$1 "." $2 == p && $NF == "ok"' <<<"$plugins")" ] \
    || { echo "$plugins" >&2; die "plugin $p is not ok"; }
done
# The config it logs is JSON in a quoted string.
grep -qF -- '\"cdiSpecDirs\":[\"'"$CDI_SPEC_DIRS"'\"]' "$LOGS/containerd.log" \
  || { grep -i cdi "$LOGS/containerd.log" >&2; die "the CRI plugin's config does not show cdiSpecDirs [$CDI_SPEC_DIRS]"; }
log "the CRI plugins are ok, with CDI spec dirs [$CDI_SPEC_DIRS] (CDI is always on in 2.4)"

# The cluster scripts import with Debian's ctr (ctr_k8s): it must work against 2.x too.
c images import --no-unpack=false "$(base_image_tar pause)" >/dev/null
ctr --address "$CONTAINERD_SOCK" --namespace k8s.io images import --no-unpack=false \
  "$(base_image_tar busybox)" >/dev/null
busybox=$(base_image_ref busybox)
grep -qx "$busybox" <<<"$(c images ls -q)" || die "Debian's ctr did not import $busybox"
log "imported the base images, busybox with Debian's $(ctr --version | awk '{print $3}') ctr"
# A memory limit in the cgroup v1 memory hierarchy: the host reads it from the container's
# cgroup (ctr's spec mounts no cgroupfs in the container). A cgroup of its own at the top:
# runc removes it with the container, where the default /k8s.io/ID would leave /k8s.io.
limit=$((64 << 20))
id=containerd2-smoke-$$
c run -d --runc-root "$SIMDEV_RUN/runc" --cgroup "/$id" --memory-limit "$limit" "$busybox" "$id" \
  sleep 60 >/dev/null
out=$(c tasks exec --exec-id probe "$id" sh -c 'echo hi; grep :memory: /proc/self/cgroup')
[[ $out == hi$'\n'[0-9]*:memory:/$id ]] || die "ctr exec printed '$out'"
host_limit=$(cat "/sys/fs/cgroup/memory/$id/memory.limit_in_bytes")
# The cluster's recovery (our_shims in lib/recover.sh) finds shims by their command line.
shim=$(pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK" | head -1)
[ -n "$shim" ] || die "no shim with -address $CONTAINERD_SOCK on its command line"
# And it is 2.x's shim, found first on the daemon's PATH, not Debian's 1.6 one.
[ "$(readlink "/proc/$shim/exe")" = "$bin/containerd-shim-runc-v2" ] \
  || die "the shim runs $(readlink "/proc/$shim/exe"), not $bin/containerd-shim-runc-v2"
c tasks delete -f "$id" >/dev/null
c containers delete "$id"
[ "$host_limit" = "$limit" ] || die "the container's memory cgroup has limit $host_limit, not $limit"
[ ! -e "/sys/fs/cgroup/memory/$id" ] || die "the container's cgroup outlived it"
log "ctr run with Debian's $(runc --version | head -1): hi, in v1 memory cgroup /$id" \
  "with its limit $limit"

if [ -n "${CRICTL:-}" ]; then
  # A CDI spec giving an env var, requested both ways the kubelet can: the CDIDevices
  # field (what DRA drivers use) and the older cdi.k8s.io annotation.
  mkdir -p "$CDI_SPEC_DIRS"
  cat >"$CDI_SPEC_DIRS/smoke.json" <<'CFG'
{"cdiVersion": "0.6.0", "kind": "smoke.simdev.io/device",
 "devices": [{"name": "dev0", "containerEdits": {"env": ["SMOKE_CDI_DEVICE=dev0"]}},
             {"name": "dev1", "containerEdits": {"env": ["SMOKE_CDI_ANNOTATED=dev1"]}}]}
CFG
  # The host's network (2 is NODE): no CNI call. A cgroup parent of its own, removed on exit.
  cat >"$dir/pod.json" <<CFG
{"metadata": {"name": "smoke", "namespace": "default", "uid": "smoke-uid"},
 "linux": {"cgroup_parent": "/$pod_cgroup",
           "security_context": {"namespace_options": {"network": 2}}},
 "log_directory": "$dir/pod-logs"}
CFG
  cat >"$dir/container.json" <<CFG
{"metadata": {"name": "env"}, "image": {"image": "$busybox"},
 "command": ["sh", "-c", "env; sleep 60"], "log_path": "env.log",
 "CDI_devices": [{"name": "smoke.simdev.io/device=dev0"}],
 "annotations": {"cdi.k8s.io/smoke": "smoke.simdev.io/device=dev1"}}
CFG
  : >"$dir/crictl.yaml"
  cri() {
    "$CRICTL" --config "$dir/crictl.yaml" --runtime-endpoint "unix://$CONTAINERD_SOCK" \
      --timeout 60s "$@"
  }
  pod=$(cri runp "$dir/pod.json")
  cid=$(cri create "$pod" "$dir/container.json" "$dir/pod.json")
  cri start "$cid" >/dev/null
  wait_until 30 "container env" grep -q SMOKE_CDI "$dir/pod-logs/env.log" || true
  env=$(cat "$dir/pod-logs/env.log")
  cri stopp "$pod" >/dev/null
  cri rmp "$pod" >/dev/null
  for want in SMOKE_CDI_DEVICE=dev0 SMOKE_CDI_ANNOTATED=dev1; do
    grep -q "$want\$" <<<"$env" || { echo "$env" >&2; die "the CRI container has no $want"; }
  done
  log "CRI: a container got the env of its CDI devices (CDIDevices field and annotation)"
fi

restart_containerd "$bin:$PATH" "$bin/containerd"
v2_restart=$took
v2_rss=$(idle_rss)

# --- Debian's containerd 1.6, for comparison ---
use_instance v16
write_containerd_config
ctr=$(command -v ctr)
start_containerd "$PATH" "$(command -v containerd)"
v16_start=$took
c images import --no-unpack=false "$(base_image_tar pause)" >/dev/null
restart_containerd "$PATH" "$(command -v containerd)"
v16_restart=$took
v16_rss=$(idle_rss)
log "containerd 2.x: answered after ${v2_start}s on a new root, ${v2_restart}s on a restart;" \
  "idle RSS ${v2_rss} MiB"
log "Debian's $(containerd --version | awk '{print $3}'): answered after ${v16_start}s on a new" \
  "root, ${v16_restart}s on a restart; idle RSS ${v16_rss} MiB"
log "binaries: $(cd "$bin" && du -h containerd containerd-shim-runc-v2 ctr | tr '\t\n' ': ')"
log "smoke test passed"
