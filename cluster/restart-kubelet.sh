#!/usr/bin/env bash
# Restarts only one node's kubelet process (pods keep running), as a real node does on a
# kubelet upgrade or crash. NODE=127.0.0.N chooses the node; node 1 by default.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"
need_root
node=${NODE:-127.0.0.1}
[[ $node =~ ^127\.0\.0\.([1-9])$ ]] && [ "${BASH_REMATCH[1]}" -le "$(recorded_nodes)" ] \
  || die "NODE must name a node of the cluster (127.0.0.1 to 127.0.0.$(recorded_nodes)), got '$node'"
use_node "${BASH_REMATCH[1]}"
stop_daemon "kubelet$SUFFIX"
exec bash "$here/up.sh"
