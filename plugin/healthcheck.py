"""``simdev-plugin check``: does the running plugin answer on its socket?

Meant for an exec liveness probe. It catches a plugin whose gRPC server is stuck or
whose socket vanished without being recreated; a restart fixes both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc

from simdev.plugin.api import deviceplugin_pb2 as pb
from simdev.plugin.api import deviceplugin_pb2_grpc as pb_grpc

TIMEOUT_SECONDS = 3.0


def check(socket_path: Path) -> int:
    if not socket_path.exists():
        print(f"simdev-plugin: check failed: no socket at {socket_path}", file=sys.stderr)
        return 1
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        try:
            stub = pb_grpc.DevicePluginStub(channel)  # type: ignore[no-untyped-call]
            stub.GetDevicePluginOptions(pb.Empty(), timeout=TIMEOUT_SECONDS)
        except grpc.RpcError as err:
            print(
                f"simdev-plugin: check failed: {socket_path}: {err.code().name}",
                file=sys.stderr,
            )
            return 1
    print(f"simdev-plugin: ok: {socket_path} answers")
    return 0
