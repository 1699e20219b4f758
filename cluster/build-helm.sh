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
# shellcheck source=lib/gobuild.sh
. "$here/lib/gobuild.sh"

module=$here/helm
version=$(pinned_version "$module/go.mod" helm.sh/helm/v3)
[[ $version =~ ^v3\.[0-9]+\.[0-9]+$ ]] \
  || die "$module/go.mod: cannot read the helm.sh/helm/v3 version (got '$version')"
if [ -x "$SIMDEV_CACHE/helm/$version/helm" ]; then
  echo "$SIMDEV_CACHE/helm/$version/helm"
  exit 0
fi

# The flags of helm's own release builds (its Makefile): the version it reports, and the
# Kubernetes version that `helm template` and `helm lint` assume, derived from client-go's.
go=$(bash "$here/go-toolchain.sh" "$module/go.mod")
client_go=$(cd "$module" && GOTOOLCHAIN=local env -u GOROOT \
  "$go" list -mod=readonly -m -f '{{.Version}}' k8s.io/client-go)
[[ $client_go =~ ^v0\.([0-9]+)\. ]] || die "cannot read the client-go version (got '$client_go')"
k8s_minor=${BASH_REMATCH[1]}
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

reported() { "$1" version --template '{{.Version}}'; }
cached_build helm "$version" "$module" helm.sh/helm/v3/cmd/helm "$ldflags" reported
