#!/usr/bin/env bash
# Builds the KWOK controller (sigs.k8s.io/kwok's cmd/kwok; the wrapper module in cluster/kwok,
# whose go.mod pins the version) into $SIMDEV_CACHE/kwok/<version>/kwok, so a warm machine
# never rebuilds (nor needs Go). The go comes from go-toolchain.sh, as for helm. Prints the
# binary's path on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"
# shellcheck source=lib/gobuild.sh
. "$here/lib/gobuild.sh"

module=$here/kwok
version=$(pinned_version "$module/go.mod" sigs.k8s.io/kwok)
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] \
  || die "$module/go.mod: cannot read the sigs.k8s.io/kwok version (got '$version')"

# kwok's release builds stamp the version it reports (its hack/releases.sh).
ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$version"
# `kwok --version` prints "kwok version <version> go<go version> (<os>/<arch>)".
reported() { "$1" --version | awk '{print $3; exit}'; }
cached_build kwok "$version" "$module" sigs.k8s.io/kwok/cmd/kwok "$ldflags" reported
