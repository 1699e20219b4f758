# KWOK fake nodes for the local cluster: kwok_up N keeps exactly N fake nodes named
# kwok-node-<i>, kwok_down stops the controller. Sourced after lib/common.sh and lib/pki.sh.
#
# The KWOK controller keeps the fake nodes Ready and runs their pods with no container. It
# manages only nodes annotated kwok.x-k8s.io/node=fake, listens on nothing (no server: no
# --server-address, node port 0), and every address it gives out is loopback: nothing ever
# connects to a fake node or its pods. The operator writes the nodes' simulated devices.
# shellcheck shell=bash

KWOK_NODE_PREFIX=kwok-node-
KWOK_LABEL=type=kwok
KWOK_ANNOTATION=kwok.x-k8s.io/node=fake
# Fake nodes' InternalIP and their pods' addresses: loopback, where nothing listens on the
# kubelet port for them (real nodes are 127.0.0.N: a fake node must never share their address).
KWOK_NODE_IP=127.63.0.1
KWOK_POD_CIDR=127.64.0.0/16

# How many fake nodes the last kwok_up kept, so a later cluster-up without KWOK_NODES keeps them.
KWOK_NODES_FILE=$SIMDEV_STATE/kwok-node-count
kwok_recorded() { if [ -f "$KWOK_NODES_FILE" ]; then cat "$KWOK_NODES_FILE"; else echo 0; fi; }

kwok_kubeconfig() { echo "$SIMDEV_STATE/kwok.kubeconfig"; }

# kwok_rbac: what the controller may do (the rules of KWOK's own ClusterRole that apply
# here: nodes and their leases, pods, events), bound to its certificate's user.
kwok_rbac() {
  kubectl_admin apply -f - >/dev/null <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: simdev-kwok
rules:
  - apiGroups: [""]
    resources: [nodes]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [nodes/status, pods/status]
    verbs: [patch, update]
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, watch, patch, update, delete]
  - apiGroups: [""]
    resources: [events]
    verbs: [create, patch, update]
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, list, watch, create, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: simdev-kwok
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: simdev-kwok}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: simdev-kwok}
YAML
}

# kwok_nodes_yaml FIRST LAST: the fake nodes FIRST..LAST as one List. Tainted like KWOK's
# own examples, so that only pods that tolerate it land there (the e2e tests' pods do not).
kwok_nodes_yaml() {
  local i name
  echo "apiVersion: v1"
  echo "kind: List"
  echo "items:"
  for (( i = $1; i <= $2; i++ )); do
    name=$KWOK_NODE_PREFIX$i
    cat <<YAML
- apiVersion: v1
  kind: Node
  metadata:
    name: $name
    labels: {type: kwok, kubernetes.io/hostname: $name, kubernetes.io/os: linux}
    annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  spec:
    taints: [{key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}]
  status:
    addresses: [{type: InternalIP, address: $KWOK_NODE_IP}, {type: Hostname, address: $name}]
    capacity: {cpu: "32", memory: 256Gi, pods: "110"}
    allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
YAML
  done
}

# kwok_node_names: the fake nodes that exist, one name a line.
kwok_node_names() {
  kubectl_admin get nodes -l "$KWOK_LABEL" -o name | sed 's,^node/,,'
}

# kwok_extra_nodes N: the fake nodes past the first N (kwok-node-N and up), or any other
# name carrying the label.
kwok_extra_nodes() {
  local keep=$1 name
  while read -r name; do
    [ -n "$name" ] || continue
    if [[ $name =~ ^$KWOK_NODE_PREFIX([0-9]+)$ ]] && (( 10#${BASH_REMATCH[1]} < keep )); then
      continue
    fi
    echo "$name"
  done <<<"$(kwok_node_names)"
}

# kwok_up N: exactly N fake nodes, and the controller running when N > 0. Idempotent.
kwok_up() {
  local want=${1:-0} extra bin have
  [[ $want =~ ^[0-9]+$ ]] || die "KWOK_NODES must be a whole number (got '$want')"
  extra=$(kwok_extra_nodes "$want")
  if [ -n "$extra" ]; then
    # shellcheck disable=SC2086 # one name per word
    kubectl_admin delete node --wait=false $extra >/dev/null
    log "deleted $(wc -w <<<"$extra") fake nodes beyond $want"
  fi
  echo "$want" > "$KWOK_NODES_FILE"
  if (( want == 0 )); then
    stop_daemon kwok
    return 0
  fi
  bin=$(bash "$(dirname "${BASH_SOURCE[0]}")/../build-kwok.sh" | tail -n1)
  issue kwok "/CN=simdev-kwok"
  kubeconfig "$(kwok_kubeconfig)" kwok simdev-kwok
  kwok_rbac
  if ! running kwok; then
    start_daemon kwok "$bin" --kubeconfig="$(kwok_kubeconfig)" \
      --config="$(dirname "${BASH_SOURCE[0]}")/../kwok/kwok.yaml" \
      --manage-nodes-with-annotation-selector="$KWOK_ANNOTATION" \
      --node-ip="$KWOK_NODE_IP" --cidr="$KWOK_POD_CIDR" --node-port=0 \
      --node-lease-duration-seconds=40 --v=WARN
    log "started kwok"
  fi
  have=$(kwok_node_names | grep -c . || true)
  if (( have < want )); then
    # Created in one request per 500 nodes; nodes that exist are left as they are.
    local first
    for (( first = 0; first < want; first += 500 )); do
      kwok_nodes_yaml "$first" "$(( first + 499 < want - 1 ? first + 499 : want - 1 ))" \
        | kubectl_admin create -f - 2>&1 >/dev/null | grep -v AlreadyExists >&2 || true
    done
  fi
  wait_until 300 "fake nodes Ready" kwok_all_ready "$want" \
    || die "the $want fake nodes did not all become Ready; see $LOGS/kwok.log"
  log "$want fake nodes Ready"
}

# kwok_all_ready N: N fake nodes report Ready.
kwok_all_ready() {
  local ready
  ready=$(kubectl_admin get nodes -l "$KWOK_LABEL" \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
  [ "$(grep -cx True <<<"$ready")" -ge "$1" ]
}

kwok_down() { stop_daemon kwok; }
