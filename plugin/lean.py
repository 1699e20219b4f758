"""Loading grpc without Python's ssl module, which the plugin's gRPC never uses.

grpc's Cython core imports asyncio, and asyncio imports ssl when it can; ssl maps OpenSSL's
libssl and libcrypto, which with hashlib's share (imported only for faults) are 5 MiB
resident, an eighth of the plugin. The plugin serves a unix socket and never runs an event
loop, so ssl is hidden while grpc loads: asyncio then lives without TLS, and code that needs
ssl later (the API watcher, prometheus_client's server) imports it as usual.
"""

from __future__ import annotations

import sys


def import_grpc() -> None:
    """Imports grpc, keeping ssl unloaded unless something loaded it before."""
    hide = "ssl" not in sys.modules
    if hide:
        # A None entry makes "import ssl" raise ImportError, which asyncio expects.
        sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        import grpc  # noqa: F401
    finally:
        if hide and "ssl" in sys.modules and sys.modules["ssl"] is None:
            del sys.modules["ssl"]
