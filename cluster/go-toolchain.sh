#!/usr/bin/env bash
# Prints the path of a go new enough for a go.mod (its `go` line, and its `toolchain` line
# when there is one): the one given as the first argument, cluster/k8s/go.mod by default.
# That is the go on PATH when it is new enough; otherwise the official toolchain of the
# version go.mod names, fetched once as the module golang.org/toolchain (the zips and
# checksums go itself uses to switch toolchains) into $SIMDEV_CACHE/go/go<version>. That
# copy only builds what the go.mod is for (Kubernetes, helm): it never goes on PATH.
# Debian 12's own go (1.19) is too old to read go.mod, but it can fetch the module: it is
# installed for that when there is no go at all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

gomod=${1:-$here/k8s/go.mod}
[ -f "$gomod" ] || die "no such go.mod: $gomod"

# version_fields V: V (1.24.0, 1.21rc2, 1.20) as "major minor kind pre patch", fields that
# order like go's own versions: 1.21 (a language version) < 1.21rc1 < 1.21.0 < 1.21.1.
version_fields() {
  local re='^([0-9]+)\.([0-9]+)((beta|rc)([0-9]+)|\.([0-9]+))?$'
  [[ $1 =~ $re ]] || return 1
  local kind=0 pre=0 patch=0
  case ${BASH_REMATCH[4]} in
    beta) kind=1 pre=${BASH_REMATCH[5]} ;;
    rc) kind=2 pre=${BASH_REMATCH[5]} ;;
    *) [ -z "${BASH_REMATCH[6]}" ] || { kind=3; patch=${BASH_REMATCH[6]}; } ;;
  esac
  echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]} $kind $pre $patch"
}

# version_ge A B: A is B or newer.
version_ge() {
  local fa fb i
  fa=$(version_fields "$1") && fb=$(version_fields "$2") || return 1
  local -a a b
  read -ra a <<<"$fa"
  read -ra b <<<"$fb"
  for i in 0 1 2 3 4; do
    if (( 10#${a[i]} != 10#${b[i]} )); then
      (( 10#${a[i]} > 10#${b[i]} ))
      return
    fi
  done
}

# required_version: what go.mod asks for, the newer of its go and toolchain lines.
required_version() {
  local key val want=
  while read -r key val _; do
    case $key in
      go) ;;
      # go1.25.1, or go1.25.1-custom for a vendor's build of that release.
      toolchain) [ "$val" != default ] || continue; val=${val#go}; val=${val%%[-+]*} ;;
      *) continue ;;
    esac
    version_fields "$val" >/dev/null || die "$gomod: cannot read the version in '$key $val'"
    if [ -z "$want" ] || ! version_ge "$want" "$val"; then want=$val; fi
  done < "$gomod"
  [ -n "$want" ] || die "$gomod has no go line"
  echo "$want"
}

# go_version BIN: the release BIN reports (1.24.0), or failure when it does not run.
# Each go finds its own GOROOT; one from the environment belongs to some other go.
# GOTOOLCHAIN=local: report this binary's version, never a toolchain it would switch to.
go_version() {
  local out
  out=$(cd / && GOTOOLCHAIN=local env -u GOROOT "$1" version 2>/dev/null) || return 1
  out=${out#go version go}
  echo "${out%% *}"
}

usable() {
  local v
  v=$(go_version "$1") && version_ge "$v" "$want"
}

want=$(required_version)
if path_go=$(command -v go) && usable "$path_go"; then
  echo "$path_go"
  exit 0
fi

# A bare 1.N names a release only before 1.21 (go1.20); from 1.21 on, releases are 1.N.0.
release=$want
if [[ $want =~ ^1\.([0-9]+)$ ]] && (( BASH_REMATCH[1] >= 21 )); then
  release=$want.0
fi
dest=$SIMDEV_CACHE/go/go$release
if usable "$dest/bin/go"; then
  echo "$dest/bin/go"
  exit 0
fi

# Toolchain zips are named by GOOS-GOARCH; 32-bit ARM has only armv6l builds.
case $(dpkg --print-architecture) in
  amd64 | arm64 | s390x | riscv64 | loong64) arch=$(dpkg --print-architecture) ;;
  armhf | armel) arch=armv6l ;;
  i386) arch=386 ;;
  ppc64el) arch=ppc64le ;;
  *) die "no Go toolchain is published for $(dpkg --print-architecture)" ;;
esac
module=golang.org/toolchain@v0.0.1-go$release.linux-$arch

if [ -n "${path_go:-}" ]; then
  fetcher=$path_go
  log "$fetcher is go $(go_version "$fetcher" || echo '(does not run)'); go.mod needs $want"
else
  log "no go on PATH: installing Debian's golang-go to fetch go$release with"
  bash "$here/install-deps.sh" golang-go
  fetcher=$(command -v go) || die "golang-go is installed but no go is on PATH ($PATH)"
fi

mkdir -p "$SIMDEV_CACHE/go"
# Downloads land in a hidden temp dir and only a verified, complete toolchain is renamed to
# its cached name; what a killed run left behind is swept a day later.
find "$SIMDEV_CACHE/go" -mindepth 1 -maxdepth 1 -name '.go*.tmp.*' -mmin +1440 \
  -exec rm -rf {} + 2>/dev/null || true
tmp=$(mktemp -d "$SIMDEV_CACHE/go/.go$release.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
log "fetching Go $release ($module, about 80 MB; first time only)"
# Outside any module (cwd /), `go mod download` takes the module from GOPROXY and checks its
# zip against the checksum database (GOSUMDB), both from the environment or go's defaults.
# -modcacherw leaves the directories writable, so the rename and the clean-up below work.
(cd / && GOMODCACHE=$tmp/mod GO111MODULE=on GOTOOLCHAIN=local exec env -u GOROOT \
  "$fetcher" mod download -modcacherw -json "$module") >"$tmp/download.json" &
fetch=$!
# Run in the background so a signal reaches this script at once: it stops the download
# before the temp dir goes, rather than leaving it to write into a deleted one.
stop_fetch() { { kill "$fetch" && wait "$fetch"; } 2>/dev/null || true; }
trap 'stop_fetch; exit 130' INT
trap 'stop_fetch; exit 143' TERM HUP
if ! wait "$fetch"; then
  cat "$tmp/download.json" >&2
  die "could not fetch $module"
fi
trap - INT TERM HUP
dir=$tmp/mod/${module}
[ -f "$dir/bin/go" ] || { cat "$tmp/download.json" >&2; die "$module has no bin/go"; }
# Module zips carry no file modes; go sets these same execute bits when it switches.
find "$dir/bin" "$dir/pkg/tool" -type f -exec chmod a+x {} +
usable "$dir/bin/go" || die "the fetched toolchain reports go $(go_version "$dir/bin/go" \
  || echo '(does not run)'), not $want or newer"

# Another run may have finished first; its copy is as good.
if ! usable "$dest/bin/go"; then
  rm -rf "$dest"
  mv -T "$dir" "$dest"
fi
log "fetched Go $release into $dest in $(( $(date +%s) - start ))s"
echo "$dest/bin/go"
