"""The plugin loads grpc without OpenSSL: 4 MiB less resident, and ssl still there when needed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simdev.plugin.fakekubelet import FakeKubelet

pytestmark = pytest.mark.timeout(45)

OPENSSL_LIBRARIES = ("libssl.so", "libcrypto.so")

# What main._run imports to serve, after import_grpc; then ssl must still import and work.
SERVING_IMPORTS = """
import sys
from simdev.plugin.lean import import_grpc
import_grpc()
import simdev.plugin.main, simdev.plugin.server, simdev.plugin.service
import simdev.plugin.simulation, simdev.plugin.supervisor, simdev.plugin.kubelet
maps = open("/proc/self/maps").read()
print(sorted(m for m in ("ssl", "_ssl", "_hashlib") if m in sys.modules))
print(sorted(lib for lib in {libraries!r} if lib in maps))
import ssl
print(ssl.create_default_context().protocol.name)
"""


def test_serving_modules_load_no_openssl_yet_ssl_imports_later() -> None:
    code = SERVING_IMPORTS.format(libraries=OPENSSL_LIBRARIES)
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=30
    ).stdout.splitlines()
    assert out == ["[]", "[]", "PROTOCOL_TLS_CLIENT"]


def test_import_grpc_leaves_an_earlier_ssl_alone() -> None:
    code = (
        "import ssl, sys\n"
        "from simdev.plugin.lean import import_grpc\n"
        "import_grpc()\n"
        "print(sys.modules['ssl'] is ssl, 'grpc' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    assert out.split() == ["True", "True"]


def test_running_plugin_maps_no_openssl(
    kubelet: FakeKubelet, run_plugin: Callable[..., Any]
) -> None:
    plugin = run_plugin()
    kubelet.wait_for_registration(timeout=15).wait_for_list()
    maps = Path(f"/proc/{plugin.proc.pid}/maps").read_text()
    assert [lib for lib in OPENSSL_LIBRARIES if lib in maps] == []
