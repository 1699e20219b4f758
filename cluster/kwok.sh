#!/usr/bin/env bash
# Fake nodes on the local cluster: `kwok.sh up N` keeps exactly N (KWOK_NODES, else the recorded count, by default),
# `kwok.sh down` stops their controller (the nodes stay, NotReady, until the next up).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"
# shellcheck source=lib/pki.sh
. "$here/lib/pki.sh"
# shellcheck source=lib/kwok.sh
. "$here/lib/kwok.sh"

case ${1:-} in
  up) kwok_up "${2:-${KWOK_NODES:-$(kwok_recorded)}}" ;;
  count) kwok_recorded ;;
  down) kwok_down ;;
  *) die "usage: $0 up [N] | down | count" ;;
esac
