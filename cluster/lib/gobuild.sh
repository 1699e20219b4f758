# Builds a Go command from a wrapper module (its go.mod pins the version, its go.sum every
# hash) into $SIMDEV_CACHE/<name>/<version>/<name>, once. Sourced by build-helm.sh and
# build-kwok.sh after lib/common.sh.
# shellcheck shell=bash

# pinned_version GOMOD MODULE: the version GOMOD requires of MODULE, read without go so that
# a cache hit needs none.
pinned_version() {
  local gomod=$1 module=${2//./\\.}
  sed -nE "s,^(require)?[[:space:]]*$module[[:space:]]+(v[^[:space:]]+).*,\2,p" "$gomod"
}

# cached_build NAME VERSION MODULE_DIR PACKAGE LDFLAGS REPORT_CMD: prints the cached binary's
# path, building it first when missing. REPORT_CMD is a function given the built binary that
# prints the version it reports, which must be VERSION.
cached_build() {
  local name=$1 version=$2 module=$3 package=$4 ldflags=$5 report=$6
  local dir=$SIMDEV_CACHE/$name/$version
  local bin=$dir/$name go tmp start built
  if [ -x "$bin" ]; then
    echo "$bin"
    return 0
  fi
  go=$(bash "$(dirname "${BASH_SOURCE[0]}")/../go-toolchain.sh" "$module/go.mod")
  mkdir -p "$dir"
  # Built to a temp name and renamed, so an interrupted build never leaves a half-written
  # binary that looks cached; what a killed one left is swept a day later.
  find "$dir" -maxdepth 1 -name ".$name.tmp.*" -mmin +1440 -delete 2>/dev/null || true
  tmp=$(mktemp "$dir/.$name.tmp.XXXXXX")
  # shellcheck disable=SC2064 # the path is fixed now
  trap "rm -f '$tmp'" EXIT
  start=$(date +%s)
  log "building $name $version with $go ($("$go" env GOVERSION)); first time only, a few minutes"
  # The chosen go builds as itself: it switches to no other toolchain, and finds its own
  # GOROOT (one from the environment belongs to whichever go set it). -mod=readonly: go.sum
  # is the pin, so a build must never rewrite it (whatever GOFLAGS says).
  (cd "$module" && GOTOOLCHAIN=local CGO_ENABLED=0 env -u GOROOT \
    "$go" build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp" "$package")
  built=$("$report" "$tmp")
  [ "$built" = "$version" ] || die "the built $name reports $built, not $version"
  mv -f "$tmp" "$bin"
  log "built $name $version in $(( $(date +%s) - start ))s"
  echo "$bin"
}
