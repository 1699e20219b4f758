#!/usr/bin/env bash
# A kind cluster for machines with Docker. CI does not run this path (it has no
# Docker engine); it verifies the local cluster, and the e2e suite takes either
# through a kubeconfig.
set -euo pipefail
name=${KIND_CLUSTER:-simdev}
command -v kind >/dev/null || { echo "kind.sh: kind is not installed" >&2; exit 1; }
case ${1:-} in
  up)
    mkdir -p "$(dirname "${KIND_KUBECONFIG:-$HOME/.kube/kind-$name.yaml}")"
    grep -qx "$name" <<<"$(kind get clusters 2>/dev/null)" || kind create cluster --name "$name" --wait 120s
    kind get kubeconfig --name "$name" > "${KIND_KUBECONFIG:-$HOME/.kube/kind-$name.yaml}"
    echo "${KIND_KUBECONFIG:-$HOME/.kube/kind-$name.yaml}" ;;
  down) kind delete cluster --name "$name" ;;
  *) echo "usage: kind.sh up|down" >&2; exit 2 ;;
esac
