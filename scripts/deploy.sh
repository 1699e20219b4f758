#!/usr/bin/env bash
# Builds the images, loads them into the current cluster and installs the SimulatedDevice
# CRD and the operator with its admission policies and user roles (all from the kustomize
# base), then waits until the operator is available. Idempotent.
#
#   KUBECONFIG   cluster to use; unset: the local cluster's (make cluster-kubeconfig)
#   KUBECTL      kubectl to run (default: kubectl on PATH; make passes the local build's
#                once it exists)
#   SKIP_IMAGES  1: the images are already built and loaded (the e2e tests do that)
#
# Only the local simdev cluster and kind clusters are supported: they are the ones the
# images can be loaded into without a registry.
set -euo pipefail
TAG=deploy
. "$(dirname "$0")/lib.sh"
use_cluster

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

say "applying the CRD, the operator, its admission policies and roles (manifests/overlays/$overlay)"
kc apply -k "$repo/manifests/overlays/$overlay"
kc wait --for=condition=Established "crd/$CRD" --timeout=60s >/dev/null

# The image tags never change, so a rebuilt image would not replace the running one.
# Stamping the built operator image's ID on the pod template rolls the operator exactly when
# its image changed; handing the plugin image's ID to the operator (which puts it on the
# plugin pod templates) rolls the plugins exactly when theirs changed. Either leaves
# everything alone otherwise.
image_id() {  # $1: image name; prints the ID of build/images/$1.tar, or nothing
  local archive=$repo/build/images/$1.tar id=
  if [ -f "$archive" ]; then
    id=$(tar -xOf "$archive" manifest.json 2>/dev/null | python3 -c \
      'import json,sys; print(json.load(sys.stdin)[0]["Config"].split("/")[-1].removesuffix(".json")[:32])' \
      2>/dev/null || true)
    [ -n "$id" ] || say "warning: cannot read the image ID from $archive; the $1 is not rolled"
  fi
  echo "$id"
}
deployed() { kc -n "$NAMESPACE" get deployment "$DEPLOYMENT" -o jsonpath="$1"; }

operator_id=$(image_id operator)
plugin_id=$(image_id plugin)
template=()
if [ -n "$operator_id" ] \
  && [ "$(deployed '{.spec.template.metadata.annotations.simdev\.io/image-id}')" != "$operator_id" ]; then
  say "operator image changed: rolling the operator"
  template+=("\"metadata\":{\"annotations\":{\"simdev.io/image-id\":\"$operator_id\"}}")
fi
if [ -n "$plugin_id" ] && [ "$(deployed \
  '{.spec.template.spec.containers[?(@.name=="operator")].env[?(@.name=="SIMDEV_PLUGIN_IMAGE_ID")].value}')" \
  != "$plugin_id" ]; then
  say "plugin image changed: the restarted operator rolls the plugin DaemonSets"
  template+=("\"spec\":{\"containers\":[{\"name\":\"operator\",\"env\":[{\"name\":\"SIMDEV_PLUGIN_IMAGE_ID\",\"value\":\"$plugin_id\"}]}]}")
fi
if [ "${#template[@]}" -gt 0 ]; then
  # One strategic merge patch (containers and env merge by name): one operator rollout.
  kc -n "$NAMESPACE" patch deployment "$DEPLOYMENT" --type=strategic \
    -p "{\"spec\":{\"template\":{$(IFS=,; echo "${template[*]}")}}}" >/dev/null
fi

say "waiting for the operator to be available"
if ! kc -n "$NAMESPACE" rollout status "deployment/$DEPLOYMENT" --timeout=180s >&2; then
  kc -n "$NAMESPACE" get pods -o wide >&2 || true
  kc -n "$NAMESPACE" logs "deployment/$DEPLOYMENT" --tail=30 >&2 || true
  die "the operator did not become available"
fi
say "done: the operator runs in namespace $NAMESPACE; try: $KUBECTL apply -f manifests/samples/simulateddevice.yaml"
