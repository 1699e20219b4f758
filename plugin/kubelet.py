"""Talking to the kubelet: its socket's identity and the Register call."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import grpc

from simdev.plugin.api import deviceplugin_pb2 as pb
from simdev.plugin.api import deviceplugin_pb2_grpc as pb_grpc

API_VERSION = "v1beta1"
REGISTER_TIMEOUT_SECONDS = 5.0

# (inode, ctime): a restarted kubelet recreates its socket, which changes both.
SocketIdentity = tuple[int, int]


class RegistrationError(Exception):
    pass


class Cancelled(Exception):
    """Registration was abandoned because the plugin is stopping."""


def socket_identity(path: Path) -> SocketIdentity | None:
    """Identifies the socket at path, or None when there is no socket."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return None
    return (st.st_ino, st.st_ctime_ns)


def register_request(
    endpoint: str, resource_name: str, options: pb.DevicePluginOptions
) -> pb.RegisterRequest:
    return pb.RegisterRequest(
        version=API_VERSION, endpoint=endpoint, resource_name=resource_name, options=options
    )


def register(
    kubelet_socket: Path,
    request: pb.RegisterRequest,
    stop: threading.Event,
    timeout: float = REGISTER_TIMEOUT_SECONDS,
) -> None:
    """Calls Registration.Register; raises RegistrationError, or Cancelled on stop."""
    with grpc.insecure_channel(f"unix:{kubelet_socket}") as channel:
        stub = pb_grpc.RegistrationStub(channel)  # type: ignore[no-untyped-call]
        call = stub.Register.future(request, timeout=timeout)
        # Poll instead of blocking so a SIGTERM during a slow kubelet is honoured.
        while not call.done():
            if stop.wait(0.05):
                call.cancel()
                raise Cancelled()
        try:
            call.result()
        except grpc.RpcError as err:
            raise RegistrationError(f"{err.code().name}: {err.details()}") from err
