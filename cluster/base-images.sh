#!/usr/bin/env bash
# Builds the base images that would normally be pulled from a registry, from
# Debian packages, with buildah. Cached in SIMDEV_CACHE/images; rebuilt only
# when missing. Usage: base-images.sh [pause] [busybox] [python]
#   pause   - the pod sandbox image: a static catatonit in pause mode
#   busybox - a small shell image tagged busybox:1.36, for ordinary manifests
#   python  - a stand-in for python:3.11-slim-bookworm, the Dockerfiles' base,
#             made with debootstrap and Debian's Python 3.11
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"
need_root
mkdir -p "$SIMDEV_CACHE/images"

# commit_image CONTAINER NAME: commits a working container and saves a docker-archive.
commit_image() {
  local ctr=$1 name=$2 ref tar
  ref=$(base_image_ref "$name")
  tar=$(base_image_tar "$name")
  buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
  rm -f "$tar.tmp"
  buildah push --quiet "$ref" "docker-archive:$tar.tmp:$ref" >/dev/null
  mv "$tar.tmp" "$tar"
  log "built base image $ref"
}

# present NAME: the image is in buildah's storage and its archive is cached.
present() {
  [ -f "$(base_image_tar "$1")" ] && buildah inspect --type image "$(base_image_ref "$1")" >/dev/null 2>&1
}

build_pause() {
  local c
  c=$(buildah from scratch)
  buildah copy --quiet "$c" /usr/bin/catatonit /pause >/dev/null
  buildah config --entrypoint '["/pause", "-P"]' --user 65535:65535 "$c"
  commit_image "$c" pause
}

build_busybox() {
  local c root
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc"
  cp /usr/bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  chmod 1777 "$root/tmp"
  echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
  echo "root:x:0:" > "$root/etc/group"
  c=$(buildah from scratch)
  buildah copy --quiet "$c" "$root" / >/dev/null
  buildah config --cmd '["sh"]' --env PATH=/bin "$c"
  commit_image "$c" busybox
  rm -rf "$root"
}

# The Debian mirror the host already uses for bookworm's main archive, so
# nothing new is named here.
host_mirror() {
  local uri
  uri=$(apt-cache policy | awk -v arch="$(dpkg --print-architecture)" \
    '$3 == "bookworm/main" && $4 == arch {print $2; exit}')
  [ -n "$uri" ] || die "no Debian bookworm mirror found in the host's apt sources"
  echo "$uri"
}

build_python() {
  local c root
  root=$(mktemp -d)
  log "debootstrapping a Debian bookworm root with Python 3.11 (a few minutes, once)"
  debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,ca-certificates,netbase \
    bookworm "$root" "$(host_mirror)" >/dev/null
  # Match the official image's layout: python and pip on /usr/local/bin, and
  # pip allowed to install into the system interpreter.
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python3"
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  c=$(buildah from scratch)
  buildah copy --quiet "$c" "$root" / >/dev/null
  buildah config --cmd '["python3"]' --env LANG=C.UTF-8 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  commit_image "$c" python
  rm -rf "$root"
}

for name in "${@:-pause busybox python}"; do
  for n in $name; do
    present "$n" || "build_$n"
  done
done
