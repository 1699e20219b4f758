#!/usr/bin/env bash
# Regenerates the Python modules for the kubelet APIs in plugin/api with
# grpcio-tools (pip install -e '.[dev]'): the device plugin API
# (deviceplugin.proto), the pod-resources API (podresources.proto), the plugin
# registration API (pluginregistration.proto) and the DRA node service (dra.proto).
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

protos=(deviceplugin podresources pluginregistration dra)

# Each proto is compiled by its bare file name, so protoc writes a top-level
# "import <name>_pb2"; the modules live in a package, hence the rewrite to a
# relative import below.
"$PYTHON" -m grpc_tools.protoc \
  -I "$repo/plugin/api" \
  --python_out="$work" \
  --pyi_out="$work" \
  --grpc_python_out="$work" \
  "${protos[@]/%/.proto}"

generated=()
for name in "${protos[@]}"; do
  sed -i "s/^import ${name}_pb2 as /from . import ${name}_pb2 as /" "$work/${name}_pb2_grpc.py"
  if grep -q "^import ${name}_pb2" "$work/${name}_pb2_grpc.py"; then
    echo "gen-proto.sh: could not make the generated import in ${name}_pb2_grpc.py relative" >&2
    exit 1
  fi
  generated+=("${name}_pb2.py" "${name}_pb2.pyi" "${name}_pb2_grpc.py")
done

mkdir -p "$out"
cp "${generated[@]/#/$work/}" "$out"/
echo "generated ${generated[*]} in $out"
