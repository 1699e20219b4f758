#!/usr/bin/env bash
# Restarts only the kubelet process of the local cluster (pods keep running),
# as a real node does on a kubelet upgrade or crash.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"
need_root
stop_daemon kubelet
exec bash "$here/up.sh"
