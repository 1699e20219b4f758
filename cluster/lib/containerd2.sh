# Configuration of containerd 2.x (cluster/build-containerd.sh), which applies CDI devices:
# the same settings as write_containerd_config writes for Debian's 1.6, in config version 3.
# Sourced; takes the variables of lib/common.sh for the node chosen by use_node.
# shellcheck shell=bash

CONTAINERD2_MODULE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../containerd" && pwd)

# containerd2_version: the version the wrapper module's go.mod pins, read without go.
containerd2_version() {
  local v
  v=$(sed -nE 's,^(require)?[[:space:]]*github\.com/containerd/containerd/v2[[:space:]]+(v[^[:space:]]+).*,\2,p' \
    "$CONTAINERD2_MODULE/go.mod")
  [[ $v =~ ^v2\.[0-9]+\.[0-9]+$ ]] \
    || die "$CONTAINERD2_MODULE/go.mod: cannot read the containerd version (got '$v')"
  echo "$v"
}

# containerd2_bin_dir: where build-containerd.sh caches containerd, its shim and ctr.
# containerd finds its shim on PATH before its own dir, and Debian's containerd package puts
# its 1.6 shim in /usr/bin: start the daemon with this dir first on PATH (ctr's shims too).
containerd2_bin_dir() { echo "$SIMDEV_CACHE/containerd/$(containerd2_version)/bin"; }

# CDI spec dirs: the standard ones, where DRA drivers write their specs.
CDI_SPEC_DIRS=${CDI_SPEC_DIRS:-/etc/cdi /var/run/cdi}

# toml_strings WORD...: the words as a TOML array of strings.
toml_strings() {
  local out="" w
  for w in "$@"; do out+="${out:+, }\"$w\""; done
  echo "[$out]"
}

write_containerd2_config() {
  local cdi_dirs
  # shellcheck disable=SC2086 # a space-separated list of paths
  cdi_dirs=$(toml_strings $CDI_SPEC_DIRS)
  mkdir -p "$NODE_STATE/containerd/certs.d/docker.io" "$NODE_STATE/cni/net.d"
  # Version 3 reads in every containerd 2.x; 2.4 migrates it to its version 4 in memory at
  # each start (a warning, no cost worth a second format). A version 4 file would have to
  # set the ttrpc socket itself: only before 4 is it derived from the grpc address, and its
  # own default is the host's /run/containerd.
  cat > "$NODE_STATE/containerd/config.toml" <<CFG
version = 3
root = "$NODE_STATE/containerd/root"
state = "$NODE_RUN/containerd/state"
# Built without btrfs, devmapper, zfs and tracing (build-containerd.sh); these stay off
# should another build have them.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "localhost/pause:3.10"
  [plugins."io.containerd.cri.v1.images".registry]
    # Every image is imported locally. Should a pull happen anyway, it goes to
    # loopback and fails there instead of leaving the machine.
    config_path = "$NODE_STATE/containerd/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false
  # This VM withholds CAP_SYS_RESOURCE, so no process may lower its OOM score;
  # clamp the kubelet's negative scores instead of failing every sandbox.
  restrict_oom_score_adj = true
  # Pod network namespaces under our own state directory, not the host's /run/netns:
  # cleanup then finds them there and never touches anyone else's.
  netns_mounts_under_state_dir = true
  # CDI is always on from containerd 2.4 (enable_cdi is gone); devices named by DRA
  # drivers or CDI annotations are looked up in these dirs.
  cdi_spec_dirs = $cdi_dirs
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      # Our shim by its path, whatever PATH the daemon got (Debian's 1.6 shim is on it).
      runtime_path = "$(containerd2_bin_dir)/containerd-shim-runc-v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$NODE_RUN/runc"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$NODE_STATE/cni/net.d"

[plugins."io.containerd.grpc.v1.cri"]
  # The streaming server (exec, attach, port-forward) listens on loopback only.
  stream_server_address = "127.0.0.1"
CFG
  cat > "$NODE_STATE/containerd/certs.d/docker.io/hosts.toml" <<CFG
server = "http://127.0.0.1:1"
CFG
}

# runtime_matches_state: the node's containerd state was made by the runtime SIMDEV_CONTAINERD
# names (recorded on first start); the two runtimes' metadata are not to be mixed.
runtime_matches_state() {
  local mark=$NODE_STATE/containerd/runtime had
  mkdir -p "$NODE_STATE/containerd"
  if [ -d "$NODE_STATE/containerd/root" ] && [ ! -f "$mark" ]; then
    had=system  # state from before the record: only the distribution's runtime made it
  elif [ -f "$mark" ]; then
    had=$(cat "$mark")
  else
    had=$SIMDEV_CONTAINERD
  fi
  [ "$had" = "$SIMDEV_CONTAINERD" ] || die "node $NODE_NAME's containerd state was made by the $had runtime; run \`make cluster-clean\` to start over with SIMDEV_CONTAINERD=$SIMDEV_CONTAINERD, or set SIMDEV_CONTAINERD=$had"
  echo "$SIMDEV_CONTAINERD" > "$mark"
}
