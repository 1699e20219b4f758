#!/usr/bin/env bash
# Builds allocclient (cluster/k8s/allocclient), the kubelet-like gRPC client that
# bench/peer_allocate.py drives the plugins with, in the module that builds the local
# cluster's kubelet: the same grpc-go and device-plugin API versions. It is the project's own
# code, so it is built every time (Go's build cache makes that quick), into build/bench/.
# Prints the binary's path on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

out=$here/../build/bench/allocclient
mkdir -p "$(dirname "$out")"
go=$(bash "$here/go-toolchain.sh")
# As in build-k8s.sh: the chosen go builds as itself, with its own GOROOT.
export GOTOOLCHAIN=local
unset GOROOT
cd "$here/k8s"
CGO_ENABLED=0 "$go" build -trimpath -o "$out" ./allocclient
echo "$(cd "$(dirname "$out")" && pwd)/allocclient"
