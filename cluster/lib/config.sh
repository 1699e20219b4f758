# Configuration files for containerd, CNI and the kubelet of the node chosen by use_node. Sourced.
# shellcheck shell=bash

write_containerd_config() {
  mkdir -p "$NODE_STATE/containerd/certs.d/docker.io" "$NODE_STATE/cni/net.d"
  cat > "$NODE_STATE/containerd/config.toml" <<CFG
version = 2
root = "$NODE_STATE/containerd/root"
state = "$NODE_RUN/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$CONTAINERD_SOCK"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.10"
  enable_unprivileged_ports = false
  # This VM withholds CAP_SYS_RESOURCE, so no process may lower its OOM score;
  # clamp the kubelet's negative scores instead of failing every sandbox.
  restrict_oom_score_adj = true
  # Pod network namespaces under our own state directory, not the host's /run/netns:
  # cleanup then finds them there and never touches anyone else's.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$NODE_RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    # Every image is imported locally. Should a pull happen anyway, it goes to
    # loopback and fails there instead of leaving the machine.
    config_path = "$NODE_STATE/containerd/certs.d"
CFG
  cat > "$NODE_STATE/containerd/certs.d/docker.io/hosts.toml" <<CFG
server = "http://127.0.0.1:1"
CFG
}

write_cni_config() {
  # A bridge with a gateway address (so the kubelet can probe pod IPs) but no
  # default route inside pods and no masquerading: pods reach nothing outside.
  cat > "$NODE_STATE/cni/net.d/10-simdev.conflist" <<CFG
{
  "cniVersion": "1.0.0",
  "name": "simdev",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "dataDir": "$NODE_RUN/cni-ipam"
      }
    },
    {"type": "loopback"}
  ]
}
CFG
}

write_kubelet_config() {
  # Pods must never ask a real DNS server: their resolv.conf names only loopback.
  echo "nameserver 127.0.0.1" > "$NODE_STATE/resolv.conf"
  cat > "$NODE_STATE/kubelet-config.yaml" <<CFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# Every node listens on its own loopback address, so all of them keep the standard ports.
address: $NODE_NAME
port: 10250
readOnlyPort: 0
healthzBindAddress: $NODE_NAME
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
# Each node's pods under a cgroup of its own (/ for node 1, as on a single-node cluster).
cgroupRoot: $CGROUP_ROOT
failSwapOn: false
# See restrict_oom_score_adj in the containerd configuration.
oomScoreAdj: 0
failCgroupV1: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
resolvConf: $NODE_STATE/resolv.conf
clusterDomain: cluster.local
podCIDR: $POD_CIDR
maxPods: 110
serializeImagePulls: false
# A developer machine's disk is shared with everything else: evict only when
# nearly full, and never garbage-collect the locally imported images.
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 876000h
registerNode: true
rotateCertificates: false
serverTLSBootstrap: false
CFG
}
