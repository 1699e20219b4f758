#!/usr/bin/env bash
# Deletes every SimulatedDevice and waits until their plugins are gone, then removes the
# operator with everything its manifests install (admission policies, user roles) and the
# CRD. Idempotent: whatever is already gone is skipped.
#
#   KUBECONFIG   cluster to use; unset: the local cluster's (make cluster-kubeconfig)
#   KUBECTL      kubectl to run (default: kubectl on PATH; make passes the local build's
#                once it exists)
set -euo pipefail
TAG=undeploy
. "$(dirname "$0")/lib.sh"
FINALIZER=simdev.io/finalizer
PLUGINS=app.kubernetes.io/managed-by=simdev-operator
DEVICE_POLICY=simdev-simulateddevices
DEVICE_POLICY_PARAMS=simdev-admission
use_cluster
say "cluster: context $(kc config current-context)"

if kc get crd "$CRD" >/dev/null 2>&1; then
  names=$(kc get simulateddevices -o name)
  if [ -n "$names" ]; then
    # Without its ConfigMap the SimulatedDevice policy refuses every update, the removal of
    # the finalizer included, so nothing could be deleted; it has nothing left to guard.
    if kc get validatingadmissionpolicybinding "$DEVICE_POLICY" >/dev/null 2>&1 \
      && ! kc -n "$NAMESPACE" get configmap "$DEVICE_POLICY_PARAMS" >/dev/null 2>&1; then
      say "ConfigMap $NAMESPACE/$DEVICE_POLICY_PARAMS is gone: removing the binding of $DEVICE_POLICY"
      kc delete validatingadmissionpolicybinding "$DEVICE_POLICY" --ignore-not-found >/dev/null
    fi
    say "deleting $(wc -w <<<"$names") SimulatedDevice(s): $(tr '\n' ' ' <<<"$names")"
    kc delete simulateddevices --all --wait=false >/dev/null
    available=$(kc -n "$NAMESPACE" get deployment "$DEPLOYMENT" \
      -o jsonpath='{.status.availableReplicas}' 2>/dev/null || true)
    if [ "${available:-0}" -lt 1 ]; then
      # Nobody will run the finalizer: release it; owner references still let the
      # garbage collector remove the plugin objects.
      say "the operator is not running: removing its finalizer from the SimulatedDevices"
      for name in $names; do
        kc patch "$name" --type=json \
          -p "[{\"op\":\"remove\",\"path\":\"/metadata/finalizers\"}]" >/dev/null 2>&1 || true
      done
    fi
    say "waiting for the SimulatedDevices to be gone (the operator stops their plugins first)"
    for name in $names; do
      kc wait --for=delete "$name" --timeout=180s >/dev/null 2>&1 \
        || die "$name was not deleted within 180s; see: $KUBECTL describe $name"
    done
  else
    say "no SimulatedDevices"
  fi
  say "waiting for the plugin DaemonSets to be gone"
  for _ in $(seq 1 120); do
    [ -z "$(kc get daemonsets -A -l "$PLUGINS" -o name)" ] && break
    sleep 1
  done
  left=$(kc get daemonsets -A -l "$PLUGINS" -o name)
  [ -z "$left" ] || die "plugin DaemonSets still exist: $left"
else
  say "the CRD is not installed: no SimulatedDevices to delete"
fi

say "removing the operator, its admission policies, the user roles and the CRD"
# The policies go first, one at a time, while their parameters still exist: an API server
# whose policy loses its ConfigMap's namespace in the same breath may never find parameters
# again for a re-created policy (a Kubernetes bug), which would refuse every later
# SimulatedDevice until that API server restarts.
for kind in validatingadmissionpolicybinding validatingadmissionpolicy; do
  kc delete "$kind" -l app.kubernetes.io/name=simdev-admission --ignore-not-found --wait=true >&2
  sleep 1
done
kc delete -k "$repo/manifests/base" --ignore-not-found --wait=true >&2
say "done"
