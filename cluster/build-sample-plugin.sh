#!/usr/bin/env bash
# Builds the kubelet's sample device plugin (test/images/sample-device-plugin of the
# k8s.io/kubernetes module) at the version the local cluster runs, into the same cache as
# the cluster's binaries; bench/peer_allocate.py measures simdev against it. A warm machine
# never rebuilds it. Prints the binary's path on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

bin=$(k8s_bin_dir)
out=$bin/sample-device-plugin
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$bin"

go=$(bash "$here/go-toolchain.sh")
# As in build-k8s.sh: the chosen go builds as itself, with its own GOROOT.
export GOTOOLCHAIN=local
unset GOROOT
log "building sample-device-plugin $K8S_VERSION with $go ($("$go" env GOVERSION))"
start=$(date +%s)
cd "$here/k8s"
# A temp name and a rename: an interrupted build never leaves a binary that looks cached.
tmp=$bin/.sample-device-plugin.tmp.$$
trap 'rm -f "$tmp"' EXIT
CGO_ENABLED=0 "$go" build -trimpath -ldflags "-s -w" -o "$tmp" \
  k8s.io/kubernetes/test/images/sample-device-plugin
mv "$tmp" "$out"
log "built sample-device-plugin in $(( $(date +%s) - start ))s"
echo "$out"
