#!/usr/bin/env bash
# Brings the local cluster up: builds what is missing, starts what is not running, and waits
# for every node to be Ready. Idempotent. NODES=N makes it N nodes (growing or shrinking an
# existing cluster); without it, an existing cluster keeps its count and a new one has one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"
. "$here/lib/pki.sh"
. "$here/lib/config.sh"
. "$here/lib/nodes.sh"
. "$here/lib/recover.sh"
# shellcheck source=lib/kwok.sh
. "$here/lib/kwok.sh"
# shellcheck source=lib/containerd2.sh
. "$here/lib/containerd2.sh"

need_root
[[ ${NODES:-1} =~ ^[1-9]$ ]] || die "NODES must be a number from 1 to $MAX_NODES, got '$NODES'"
t0=$(date +%s)
step_start=$t0
did=()
step() {
  local now; now=$(date +%s)
  did+=("$1")
  log "$1 ($(( now - step_start ))s)"
  step_start=$now
}

bash "$here/install-deps.sh"
bash "$here/build-k8s.sh" >/dev/null
if [ "$SIMDEV_CONTAINERD" = built ]; then
  ctrd_bin=$(bash "$here/build-containerd.sh" | tail -n1)
  # containerd looks its shim up on PATH first; the distribution's 1.6 shim may be there.
  CONTAINERD_CMD=(env "PATH=$ctrd_bin:$PATH" "$ctrd_bin/containerd")
elif [ "$SIMDEV_CONTAINERD" = system ]; then
  CONTAINERD_CMD=(containerd)
else
  die "SIMDEV_CONTAINERD must be built or system, got '$SIMDEV_CONTAINERD'"
fi
bash "$here/base-images.sh" pause busybox
step "checked dependencies, binaries and base images"

# Before anything is written: the kubelet root must be ours (see kubelet_root_ours).
claim_kubelet_root
mkdir -p "$SIMDEV_STATE" "$SIMDEV_RUN" "$LOGS"
make_pki
recorded=$(recorded_nodes)
nodes=${NODES:-$recorded}
# The larger count is recorded first, so down and clean cover every node started from here.
echo $(( nodes > recorded ? nodes : recorded )) > "$NODES_FILE"

# start_runtime: containerd of the node chosen by use_node, with its configuration, network
# and base images; recovers what a killed run of the node left behind.
start_runtime() {
  local image ref
  node_pki
  runtime_matches_state
  if [ "$SIMDEV_CONTAINERD" = built ]; then write_containerd2_config; else write_containerd_config; fi
  write_cni_config
  write_kubelet_config
  make_node_cgroups
  if ! running "containerd$SUFFIX"; then
    if [ -n "$(our_shims)" ]; then
      # containerd died alone: its shims still run the containers. Like a real node, restart
      # only containerd, which reattaches to them from its state; the pods never notice.
      rm -f "$(pidfile "containerd$SUFFIX")"
      log "containerd of node $NODE_NAME is down but its containers run on: restarting it alone"
    else
      # Nothing of the node is alive: whatever a killed cluster left behind goes first.
      sweep_leftovers
      step "swept leftovers of a previous run of node $NODE_NAME"
    fi
  fi
  setup_network
  [ "$NODE_INDEX" -eq 1 ] || ensure_node_ns
  if ! running "containerd$SUFFIX"; then
    node_exec
    start_daemon "containerd$SUFFIX" "${NODE_EXEC[@]}" "${CONTAINERD_CMD[@]}" \
      --config "$NODE_STATE/containerd/config.toml"
    wait_until 60 "containerd" ctr --address "$CONTAINERD_SOCK" version \
      || die "containerd did not start; see $LOGS/containerd$SUFFIX.log"
    step "started containerd$SUFFIX"
  fi
  for image in pause busybox; do
    ref=$(base_image_ref "$image")
    # Listed first, then searched: grep -q closing the pipe early would fail pipefail.
    if ! grep -qx "$ref" <<<"$(ctr_k8s images ls -q)"; then
      ctr_k8s images import --no-unpack=false "$(base_image_tar "$image")" >/dev/null
      step "imported $ref into node $NODE_NAME"
    fi
  done
}
for n in $(seq 1 "$nodes"); do
  use_node "$n"
  start_runtime
done

# Output is captured before matching: grep -q closing a pipe early would trip pipefail.
etcd_healthy() { [[ $(curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health") == *'"health":"true"'* ]]; }
start_etcd() {
  start_daemon etcd etcd --name simdev --data-dir "$SIMDEV_STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "simdev=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "http://127.0.0.1:2381" \
    --quota-backend-bytes 2147483648 --auto-compaction-retention 1h
}
if ! running etcd; then
  start_etcd
  if ! wait_until 60 "etcd" etcd_healthy; then
    # Data a killed etcd left unreadable is not worth more than a working cluster.
    stop_daemon etcd
    mv "$SIMDEV_STATE/etcd" "$SIMDEV_STATE/etcd.broken.$(date +%s)"
    log "etcd could not use its data; moved it aside and starting empty"
    start_etcd
    wait_until 60 "etcd" etcd_healthy || die "etcd did not start; see $LOGS/etcd.log"
  fi
  step "started etcd"
fi

apiserver_ready() {
  [[ $(curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz") == ok ]]
}
if ! running kube-apiserver; then
  start_daemon kube-apiserver "$BIN/kube-apiserver" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --endpoint-reconciler-type=none \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --client-ca-file="$PKI/ca.crt" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --profiling=false --v=1
  wait_until 120 "kube-apiserver" apiserver_ready \
    || die "kube-apiserver did not become ready; see $LOGS/kube-apiserver.log"
  step "started kube-apiserver"
fi

if ! running kube-controller-manager; then
  start_daemon kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$SIMDEV_STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$SIMDEV_STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$SIMDEV_STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --profiling=false --v=1
  step "started kube-controller-manager"
fi

if ! running kube-scheduler; then
  start_daemon kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$SIMDEV_STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$SIMDEV_STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$SIMDEV_STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false --v=1
  step "started kube-scheduler"
fi

# Nodes beyond the asked count leave once the API server can evict their pods.
for n in $(seq "$recorded" -1 $((nodes + 1))); do
  use_node "$n"
  remove_node
  echo $((n - 1)) > "$NODES_FILE"
  step "removed node $NODE_NAME"
done

for n in $(seq 1 "$nodes"); do
  use_node "$n"
  if ! running "kubelet$SUFFIX"; then
    node_exec
    start_daemon "kubelet$SUFFIX" "${NODE_EXEC[@]}" "$BIN/kubelet" \
      --config="$NODE_STATE/kubelet-config.yaml" \
      --kubeconfig="$NODE_STATE/kubelet.kubeconfig" \
      --hostname-override="$NODE_NAME" \
      --root-dir="$KUBELET_ROOT" --v=1
    step "started kubelet$SUFFIX"
  fi
done

node_ready() {
  [[ $(kubectl_admin get node "$NODE_NAME" 2>/dev/null \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}
for n in $(seq 1 "$nodes"); do
  use_node "$n"
  if ! node_ready; then
    wait_until 180 "node Ready" node_ready \
      || die "node $NODE_NAME did not become Ready; see $LOGS/kubelet$SUFFIX.log"
    step "node $NODE_NAME Ready"
  fi
done

# Fake nodes: KWOK_NODES=N keeps exactly N; without it, the count the last one recorded.
kwok_want=${KWOK_NODES:-$(kwok_recorded)}
if [ "$kwok_want" != 0 ] || [ -n "$(kwok_node_names)" ] || running kwok; then
  kwok_up "$kwok_want"
  step "$kwok_want fake nodes"
fi

# Pods are refused until the controllers have made the default service account.
sa_ready() { kubectl_admin -n default get serviceaccount default >/dev/null 2>&1; }
sa_ready || wait_until 60 "default service account" sa_ready \
  || die "kube-controller-manager made no service accounts; see $LOGS/kube-controller-manager.log"

if [ ${#did[@]} -eq 1 ]; then
  log "cluster already up ($(( $(date +%s) - t0 ))s)"
else
  log "cluster up in $(( $(date +%s) - t0 ))s; kubeconfig: $ADMIN_KUBECONFIG"
fi
