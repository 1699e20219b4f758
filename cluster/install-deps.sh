#!/usr/bin/env bash
# Installs the Debian packages the local cluster and the image builds need.
# Idempotent: apt is only called for packages that are missing. With arguments, installs
# just those (the venv step needs only python3-venv, not the cluster's packages).
set -euo pipefail
packages=(
  containerd runc containernetworking-plugins etcd-server buildah
  catatonit busybox-static debootstrap iproute2 iptables util-linux kmod
  openssl ca-certificates curl python3-venv
)
[ $# -eq 0 ] || packages=("$@")
installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == *"install ok installed"* ]]; }
# Docker's containerd.io ships containerd and runc too, and Debian's packages would replace
# it: use what is there (the cluster runs its own containerd process and configuration).
if installed containerd.io; then
  kept=()
  for p in "${packages[@]}"; do
    case $p in containerd | runc) ;; *) kept+=("$p") ;; esac
  done
  packages=("${kept[@]}")
  command -v containerd >/dev/null && command -v runc >/dev/null \
    || { echo "install-deps: containerd.io is installed but containerd or runc is missing" >&2; exit 1; }
fi
missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "install-deps: needs root to install: ${missing[*]}" >&2; exit 1; }
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Installing Debian's containerd starts its service; the cluster runs a private one, so stop
# only that freshly installed service, never a containerd that was already there.
if [[ " ${missing[*]} " == *" containerd "* ]] && command -v service >/dev/null \
  && service containerd status >/dev/null 2>&1; then
  service containerd stop >/dev/null 2>&1 || true
fi
