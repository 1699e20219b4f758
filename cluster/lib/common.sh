# Shared settings for the local-cluster scripts. Sourced, not run.
# shellcheck shell=bash

K8S_VERSION=${K8S_VERSION:-v1.34.4}
# Compiled binaries and base images live outside the repo, keyed by version.
SIMDEV_CACHE=${SIMDEV_CACHE:-/var/cache/simdev}
# Cluster state (certificates, etcd data, logs, PID files).
SIMDEV_STATE=${SIMDEV_STATE:-/var/lib/simdev-cluster}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

k8s_bin_dir() { echo "$SIMDEV_CACHE/k8s/$K8S_VERSION/bin"; }
