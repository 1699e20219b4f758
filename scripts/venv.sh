#!/usr/bin/env bash
# Makes the project's venv, or mends it: a venv left half-made (an interrupted
# `python3 -m venv`, a Python upgraded underneath it, ensurepip missing) is made again
# rather than patched, since pip inside it cannot be trusted.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=${VENV:-.venv}

healthy() {
  "$venv/bin/python" -c 'import pip, sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

if [ -e "$venv" ] && ! healthy; then
  echo "venv: $venv is incomplete or broken; making it again" >&2
  rm -rf "$venv"
fi
if [ ! -e "$venv" ]; then
  # Debian splits ensurepip into python3-venv; without it `-m venv` leaves a venv with no pip.
  if ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
    bash cluster/install-deps.sh python3-venv
  fi
  "$python" -m venv "$venv"
  healthy || { echo "venv: $python made a venv without a working pip" >&2; exit 1; }
fi
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -e '.[dev]'
