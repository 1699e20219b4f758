#!/usr/bin/env bash
# Builds containerd 2.x from the github.com/containerd/containerd/v2 Go module (the wrapper
# module in cluster/containerd, whose go.mod pins the version) into
# $SIMDEV_CACHE/containerd/<version>/bin: containerd, containerd-shim-runc-v2 and ctr. A warm
# machine never rebuilds (nor needs Go). The go comes from go-toolchain.sh, as for helm.
# Prints the bin dir on its last line. Debian's containerd 1.6 applies no CDI devices; this
# one does (see cluster/lib/containerd2.sh for its configuration).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"
# shellcheck source=lib/containerd2.sh
. "$here/lib/containerd2.sh"

module=$CONTAINERD2_MODULE
pkg=github.com/containerd/containerd/v2
version=$(containerd2_version)
dir=$(dirname "$(containerd2_bin_dir)")
top=$(dirname "$dir")
binaries=(containerd containerd-shim-runc-v2 ctr)
cached() {
  local b
  for b in "${binaries[@]}"; do [ -x "$1/bin/$b" ] || return 1; done
}
if cached "$dir"; then
  echo "$dir/bin"
  exit 0
fi

go=$(bash "$here/go-toolchain.sh" "$module/go.mod")
# The chosen go builds as itself: it switches to no other toolchain, and finds its own
# GOROOT (one from the environment belongs to whichever go set it).
export GOTOOLCHAIN=local
unset GOROOT
cd "$module"

# Built into a temp dir renamed whole, so an interrupted build never leaves binaries that
# look cached; what a killed one left is swept a day later.
mkdir -p "$top"
find "$top" -mindepth 1 -maxdepth 1 -name ".$version.tmp.*" -mmin +1440 \
  -exec rm -rf {} + 2>/dev/null || true
tmp=$(mktemp -d "$top/.$version.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"

# What containerd's release Makefile passes: the version it reports, the tag that drops the
# CLI's doc generators, and for the shim no_grpc (it speaks ttrpc only). CGO_ENABLED=0 makes
# static binaries that need no C library headers: cgo serves only the btrfs snapshotter,
# which the cluster disables, as it does devmapper and zfs (no_* drops them from the build).
# no_tracing leaves out the OTLP exporter: nothing here may send traffic off loopback.
ldflags="-s -w -X $pkg/version.Version=$version -X $pkg/version.Package=$pkg"
tags=urfave_cli_no_docs
daemon_tags="$tags no_btrfs no_devmapper no_zfs no_tracing"
# -mod=readonly: go.sum is the pin, so a build must never rewrite it (whatever GOFLAGS says).
build() {
  CGO_ENABLED=0 "$go" build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp/bin/" "$@"
}

start=$(date +%s)
log "building containerd $version with $go ($("$go" env GOVERSION)); first time only, a few minutes"
mkdir -p "$tmp/bin"
build -tags "$daemon_tags" "$pkg/cmd/containerd" "$pkg/cmd/ctr"
build -tags "$tags no_grpc" "$pkg/cmd/containerd-shim-runc-v2"
built=$("$tmp/bin/containerd" --version)
[[ " $built " == *" $version "* ]] || die "the built containerd reports '$built', not $version"
cached "$tmp" || die "the build left no ${binaries[*]} in $tmp/bin"

# Another run may have finished first; its copy is as good.
if ! cached "$dir"; then
  rm -rf "$dir"
  mv -T "$tmp" "$dir"
fi
log "built containerd $version in $(( $(date +%s) - start ))s"
echo "$dir/bin"
