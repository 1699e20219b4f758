#!/usr/bin/env bash
# Builds the images, loads them into the current cluster and installs the SimulatedDevice
# CRD and the operator, then waits until the operator is available. Idempotent.
#
#   KUBECONFIG   cluster to use; unset: the local cluster's (make cluster-kubeconfig)
#   KUBECTL      kubectl to run (default: kubectl)
#   SKIP_IMAGES  1: the images are already built and loaded (the e2e tests do that)
#
# Only the local simdev cluster and kind clusters are supported: they are the ones the
# images can be loaded into without a registry.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
KUBECTL=${KUBECTL:-kubectl}
NAMESPACE=simdev-system
DEPLOYMENT=simdev-operator
CRD=simulateddevices.simdev.io

say() { printf '[deploy] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
kc() { "$KUBECTL" "$@"; }

if [ -z "${KUBECONFIG:-}" ]; then
  local_kubeconfig=$(make -s -C "$repo" cluster-kubeconfig)
  [ -f "$local_kubeconfig" ] || die "KUBECONFIG is unset and the local cluster has no kubeconfig: run 'make cluster-up' or set KUBECONFIG"
  export KUBECONFIG=$local_kubeconfig
  say "KUBECONFIG unset: using the local cluster ($KUBECONFIG)"
fi

context=$(kc config current-context)
server=$(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')
if [ "$context" = simdev-local ] && [ "$server" = https://127.0.0.1:6443 ]; then
  overlay=local load=cluster-load-images
elif [[ $context == kind-* ]]; then
  overlay=kind load=kind-load-images
  export KIND_CLUSTER=${context#kind-}
else
  die "context $context ($server) is neither the local simdev cluster nor a kind cluster"
fi
say "cluster: context $context at $server (overlay $overlay)"

if [ "${SKIP_IMAGES:-}" = 1 ]; then
  say "SKIP_IMAGES=1: using the images already loaded"
else
  say "building the images (make images)"
  make -s -C "$repo" images
  say "loading them into the cluster (make $load)"
  make -s -C "$repo" "$load"
fi

say "applying the CRD and the operator (manifests/overlays/$overlay)"
kc apply -k "$repo/manifests/overlays/$overlay"
kc wait --for=condition=Established "crd/$CRD" --timeout=60s >/dev/null

# The image tag never changes, so a rebuilt image would not replace the running one.
# Stamping the built image's ID on the pod template rolls the operator exactly when the
# image changed, and leaves it alone otherwise.
archive=$repo/build/images/operator.tar
image_id=
if [ -f "$archive" ]; then
  image_id=$(tar -xOf "$archive" manifest.json 2>/dev/null | python3 -c \
    'import json,sys; print(json.load(sys.stdin)[0]["Config"].split("/")[-1].removesuffix(".json")[:32])' \
    2>/dev/null || true)
  [ -n "$image_id" ] || say "warning: cannot read the image ID from $archive; the operator is not rolled"
fi
if [ -n "$image_id" ]; then
  current=$(kc -n "$NAMESPACE" get deployment "$DEPLOYMENT" \
    -o jsonpath='{.spec.template.metadata.annotations.simdev\.io/image-id}')
  if [ "$current" != "$image_id" ]; then
    say "operator image changed: rolling the operator"
    kc -n "$NAMESPACE" patch deployment "$DEPLOYMENT" --type=merge -p \
      "{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"simdev.io/image-id\":\"$image_id\"}}}}}" >/dev/null
  fi
fi

say "waiting for the operator to be available"
if ! kc -n "$NAMESPACE" rollout status "deployment/$DEPLOYMENT" --timeout=180s >&2; then
  kc -n "$NAMESPACE" get pods -o wide >&2 || true
  kc -n "$NAMESPACE" logs "deployment/$DEPLOYMENT" --tail=30 >&2 || true
  die "the operator did not become available"
fi
say "done: the operator runs in namespace $NAMESPACE; try: $KUBECTL apply -f manifests/samples/simulateddevice.yaml"
