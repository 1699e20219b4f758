#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kubectl from the k8s.io/kubernetes Go module into a cache keyed by version,
# so a warm machine never rebuilds (nor needs Go). The go comes from go-toolchain.sh:
# the one on PATH when new enough, else a cached official toolchain. Prints the bin
# directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

bin=$(k8s_bin_dir)
mkdir -p "$bin"
components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

missing=()
for c in "${components[@]}"; do
  [ -x "$bin/$c" ] || missing+=("$c")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "$bin"
  exit 0
fi

major=${K8S_VERSION#v}; major=${major%%.*}
minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

go=$(bash "$here/go-toolchain.sh")
# The chosen go builds as itself: it switches to no other toolchain, and finds its own
# GOROOT (one from the environment belongs to whichever go set it).
export GOTOOLCHAIN=local
unset GOROOT
log "building with $go ($("$go" env GOVERSION))"

cd "$here/k8s"
for c in "${missing[@]}"; do
  start=$(date +%s)
  log "building $c $K8S_VERSION (first time only; several minutes each on 2 cores)"
  # Build to a temp name and rename, so an interrupted build never leaves a
  # half-written binary that looks cached.
  CGO_ENABLED=0 "$go" build -trimpath -ldflags "$ldflags" -o "$bin/.$c.tmp" "k8s.io/kubernetes/cmd/$c"
  mv "$bin/.$c.tmp" "$bin/$c"
  log "built $c in $(( $(date +%s) - start ))s"
done
echo "$bin"
