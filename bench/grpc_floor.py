"""The least a Python gRPC device plugin can do: grpcio's own cost, for the peer bench.

Serves the device-plugin API on a unix socket with grpcio's threaded server, as simdev's
plugin does, but answers from constants: two devices, and an Allocate response with one
environment variable. bench/peer_allocate.py drives it with the same kubelet-like Go client
as simdev and the Go peer, which shows how much of simdev's time is grpcio's and how much
its own. Not a plugin: it never registers.
Run: python bench/grpc_floor.py SOCKET (stops on SIGTERM).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

from simdev.plugin.api import deviceplugin_pb2 as pb
from simdev.plugin.api import deviceplugin_pb2_grpc as pb_grpc

DEVICES = ("Dev-1", "Dev-2")
# As many threads as simdev's plugin serves with: two streams and two unary calls.
WORKERS = 4


class Floor(pb_grpc.DevicePluginServicer):
    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping

    def ListAndWatch(self, request: pb.Empty, context: Any) -> Iterator[pb.ListAndWatchResponse]:
        yield pb.ListAndWatchResponse(devices=[pb.Device(ID=i, health="Healthy") for i in DEVICES])
        while context.is_active() and not self._stopping.wait(0.5):
            pass

    def Allocate(self, request: pb.AllocateRequest, context: Any) -> pb.AllocateResponse:
        return pb.AllocateResponse(
            container_responses=[
                pb.ContainerAllocateResponse(envs={"FLOOR_VISIBLE_DEVICES": "Dev-1"})
                for _ in request.container_requests
            ]
        )


def main() -> None:
    stopping = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS))
    pb_grpc.add_DevicePluginServicer_to_server(Floor(stopping), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"unix:{sys.argv[1]}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    stopping.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
