"""A gRPC server on the plugin's unix socket, restartable on a fresh socket.

Knows nothing about devices: it serves whatever a ``Servicer`` factory returns,
one new servicer per generation, and tells it to stop before shutting down.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Protocol

import grpc

log = logging.getLogger("simdev.plugin")

FLUSH_SECONDS = 0.05
CONNECT_PROBE_SECONDS = 0.5


class Servicer(Protocol):
    def add_to(self, server: grpc.Server) -> None:
        """Registers the gRPC services on server."""

    def stop(self) -> None:
        """Ends long-lived calls (streams) and waits for them; called before the server stops."""


class ServerError(Exception):
    """The socket could not be served."""


class SocketBusy(ServerError):
    """Another live server answers on our socket path; it is not ours to take."""


class PluginServer:
    def __init__(
        self,
        socket_path: Path,
        make_servicer: Callable[[], Servicer],
        workers: int,
        grace_seconds: float = 1.0,
    ) -> None:
        self.socket_path = socket_path
        self._make_servicer = make_servicer
        self._workers = workers
        self._grace = grace_seconds
        self._server: grpc.Server | None = None
        self._servicer: Servicer | None = None
        self._inode: int | None = None

    def start(self) -> None:
        """Removes whatever is left at the socket path, then serves on a new socket."""
        self._remove_stale()
        servicer = self._make_servicer()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="grpc")
        )
        servicer.add_to(server)
        try:
            bound = server.add_insecure_port(f"unix:{self.socket_path}")
        except RuntimeError as err:  # newer grpcio raises, older returns 0
            raise ServerError(f"cannot listen on {self.socket_path}: {err}") from err
        if not bound:
            raise ServerError(f"cannot listen on {self.socket_path}")
        server.start()
        self._server, self._servicer = server, servicer
        self._inode = os.lstat(self.socket_path).st_ino
        log.info("serving", extra={"fields": {"socket": str(self.socket_path)}})

    def stop(self) -> None:
        """Ends streams, stops the server and removes our socket if it is still ours."""
        server, servicer = self._server, self._servicer
        self._server = self._servicer = None
        if servicer is not None:
            servicer.stop()
            # The streams' final OK status is written by gRPC's threads after the handlers
            # return; a moment before closing lets it reach the kubelet instead of a reset.
            time.sleep(FLUSH_SECONDS)
        if server is not None:
            # Waiting matters: gRPC unlinks the socket path when a server finishes
            # stopping, which must not happen after a new server took that path.
            server.stop(self._grace).wait()
        if self._inode is not None and self.socket_intact():
            self.socket_path.unlink(missing_ok=True)
        self._inode = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def socket_intact(self) -> bool:
        """Whether the socket we bound is still at its path (the kubelet may wipe it)."""
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return False
        return stat.S_ISSOCK(st.st_mode) and st.st_ino == self._inode

    def _remove_stale(self) -> None:
        path = self.socket_path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise ServerError(f"{path} is a directory, cannot serve a socket there")
        if stat.S_ISSOCK(st.st_mode) and _answers(path):
            # Two plugins with one name would take the path from each other in turn.
            raise SocketBusy(f"{path} is served by another process")
        # A socket left by an earlier run (or any file with our name) blocks bind().
        path.unlink()
        log.info("removed stale socket", extra={"fields": {"path": str(path)}})


def _answers(path: Path) -> bool:
    """Whether something accepts connections on the unix socket at path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(CONNECT_PROBE_SECONDS)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
