#!/usr/bin/env bash
# Regenerates the Python modules for the kubelet device plugin API from
# plugin/api/deviceplugin.proto with grpcio-tools (pip install -e '.[dev]').
#
# Usage: scripts/gen-proto.sh [OUT_DIR]
#   OUT_DIR defaults to plugin/api; the staleness test generates into a temp dir
#   and compares. PYTHON selects the interpreter (default: python3 if it has
#   grpcio-tools, else the repo's .venv).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/plugin/api}"
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  if ! python3 -c 'import grpc_tools.protoc' 2>/dev/null && [[ -x "$repo/.venv/bin/python" ]]; then
    PYTHON="$repo/.venv/bin/python"
  fi
fi

if ! "$PYTHON" -c 'import grpc_tools.protoc' 2>/dev/null; then
  echo "gen-proto.sh: grpcio-tools is missing for $PYTHON (pip install -e '.[dev]')" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The proto is compiled by its bare file name, so protoc writes a top-level
# "import deviceplugin_pb2"; the modules live in a package, hence the rewrite
# to a relative import below.
"$PYTHON" -m grpc_tools.protoc \
  -I "$repo/plugin/api" \
  --python_out="$work" \
  --pyi_out="$work" \
  --grpc_python_out="$work" \
  deviceplugin.proto

sed -i 's/^import deviceplugin_pb2 as /from . import deviceplugin_pb2 as /' "$work/deviceplugin_pb2_grpc.py"
if grep -q '^import deviceplugin_pb2' "$work/deviceplugin_pb2_grpc.py"; then
  echo "gen-proto.sh: could not make the generated import relative" >&2
  exit 1
fi

mkdir -p "$out"
cp "$work"/deviceplugin_pb2.py "$work"/deviceplugin_pb2.pyi "$work"/deviceplugin_pb2_grpc.py "$out"/
echo "generated deviceplugin_pb2.py, deviceplugin_pb2.pyi, deviceplugin_pb2_grpc.py in $out"
