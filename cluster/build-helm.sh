#!/usr/bin/env bash
# Builds helm from the helm.sh/helm/v3 Go module (the wrapper module in cluster/helm, whose
# go.mod pins the version) into $SIMDEV_CACHE/helm/<version>/helm, so a warm machine never
# rebuilds (nor needs Go). The go comes from go-toolchain.sh: the one on PATH when new enough
# for cluster/helm/go.mod, else a cached official toolchain. Prints the binary's path on its
# last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

module=$here/helm
# The version go.mod requires, read without go so that a cache hit needs none.
version=$(sed -nE 's,^(require)?[[:space:]]*helm\.sh/helm/v3[[:space:]]+(v[^[:space:]]+).*,\2,p' \
  "$module/go.mod")
[[ $version =~ ^v3\.[0-9]+\.[0-9]+$ ]] \
  || die "$module/go.mod: cannot read the helm.sh/helm/v3 version (got '$version')"
dir=$SIMDEV_CACHE/helm/$version
bin=$dir/helm
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

go=$(bash "$here/go-toolchain.sh" "$module/go.mod")
# The chosen go builds as itself: it switches to no other toolchain, and finds its own
# GOROOT (one from the environment belongs to whichever go set it).
export GOTOOLCHAIN=local
unset GOROOT
cd "$module"

# The flags of helm's own release builds (its Makefile): the version it reports, and the
# Kubernetes version that `helm template` and `helm lint` assume, derived from client-go's.
client_go=$("$go" list -mod=readonly -m -f '{{.Version}}' k8s.io/client-go)
[[ $client_go =~ ^v0\.([0-9]+)\. ]] || die "cannot read the client-go version (got '$client_go')"
k8s_minor=${BASH_REMATCH[1]}
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

mkdir -p "$dir"
# Built to a temp name and renamed, so an interrupted build never leaves a half-written
# binary that looks cached; what a killed one left is swept a day later.
find "$dir" -maxdepth 1 -name '.helm.tmp.*' -mmin +1440 -delete 2>/dev/null || true
tmp=$(mktemp "$dir/.helm.tmp.XXXXXX")
trap 'rm -f "$tmp"' EXIT

start=$(date +%s)
log "building helm $version with $go ($("$go" env GOVERSION)); first time only, a few minutes"
# -mod=readonly: go.sum is the pin, so a build must never rewrite it (whatever GOFLAGS says).
CGO_ENABLED=0 "$go" build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp" \
  helm.sh/helm/v3/cmd/helm
built=$("$tmp" version --template '{{.Version}}')
[ "$built" = "$version" ] || die "the built helm reports $built, not $version"
mv -f "$tmp" "$bin"
log "built helm $version in $(( $(date +%s) - start ))s"
echo "$bin"
