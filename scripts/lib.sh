# Shared by deploy.sh and undeploy.sh. Sourced after setting TAG.
# shellcheck shell=bash

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBECTL=${KUBECTL:-kubectl}
NAMESPACE=simdev-system
DEPLOYMENT=simdev-operator
CRD=simulateddevices.simdev.io

say() { printf '[%s] %s\n' "$TAG" "$*" >&2; }
die() { say "error: $*"; exit 1; }
kc() { "$KUBECTL" "$@"; }

# Honours KUBECONFIG; without it, uses the local cluster's admin kubeconfig.
use_cluster() {
  if [ -z "${KUBECONFIG:-}" ]; then
    local local_kubeconfig
    local_kubeconfig=$(make -s -C "$repo" cluster-kubeconfig)
    [ -f "$local_kubeconfig" ] \
      || die "KUBECONFIG is unset and the local cluster has no kubeconfig: run 'make cluster-up' or set KUBECONFIG"
    export KUBECONFIG=$local_kubeconfig
    say "KUBECONFIG unset: using the local cluster ($KUBECONFIG)"
  fi
}
