#!/usr/bin/env bash
# The main demo: brings up the local cluster, deploys the operator, applies the
# sample SimulatedDevice, and shows the node's new resource and what a consumer
# pod received. Safe to run again.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
say() { printf '\n== %s\n' "$*"; }

say "local cluster"
make -s cluster-up
KUBECONFIG=$(make -s cluster-kubeconfig)
KUBECTL=$(make -s cluster-kubectl)
export KUBECONFIG KUBECTL
kc() { "$KUBECTL" "$@"; }

say "operator (images, CRD, RBAC, Deployment)"
bash scripts/deploy.sh

say "a SimulatedDevice: kubectl apply -f manifests/samples/simulateddevice.yaml"
kc apply -f manifests/samples/simulateddevice.yaml
resource=example.com/simple-device
for _ in $(seq 1 120); do
  n=$(kc get nodes -o jsonpath="{.items[0].status.allocatable.example\.com/simple-device}")
  [ "${n:-0}" -ge 1 ] && break
  sleep 1
done
[ "${n:-0}" -ge 1 ] || { kc get simdev -o yaml; echo "the node never offered $resource" >&2; exit 1; }
kc get nodes -o custom-columns="NODE:.metadata.name,CAPACITY:.status.capacity.example\.com/simple-device,ALLOCATABLE:.status.allocatable.example\.com/simple-device"

say "a consumer pod asking for 1 $resource"
kc delete -f manifests/samples/consumer-pod.yaml --ignore-not-found --wait=true >/dev/null
kc apply -f manifests/samples/consumer-pod.yaml
kc wait --for=jsonpath='{.status.phase}'=Succeeded pod/simple-device-consumer --timeout=120s >/dev/null
echo "its env and device files:"
kc logs simple-device-consumer | grep -E '^SIMPLE_| simple-device-[0-9]+$'

say "kubectl get simdev"
kc get simdev
cat <<TXT

Try it yourself:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$KUBECTL
  kubectl get simdev -o yaml
  kubectl apply -f manifests/samples/simulateddevice-fpga.yaml
TXT
