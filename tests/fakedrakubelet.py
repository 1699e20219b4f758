"""The kubelet's side of DRA, for protocol tests: the plugin watcher and the DRA client.

Like the kubelet, it finds a registration socket in the registry folder, asks it GetInfo,
accepts the driver only for a DRA plugin that offers the v1 service (telling it so with
NotifyRegistrationStatus), then dials the endpoint the plugin named and calls
NodePrepareResources / NodeUnprepareResources over that real unix socket.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from simdev.plugin.api import dra_pb2 as pb
from simdev.plugin.api import dra_pb2_grpc as pb_grpc
from simdev.plugin.api import pluginregistration_pb2 as reg
from simdev.plugin.api import pluginregistration_pb2_grpc as reg_grpc

# The kubelet 1.34 speaks these, most preferred first.
KUBELET_SERVICES = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
CALL_TIMEOUT = 10.0

Claim = tuple[str, str, str]  # namespace, name, uid


class FakeDraKubelet:
    def __init__(self, registry_dir: Path) -> None:
        self.registry_dir = registry_dir
        self.info: reg.PluginInfo | None = None
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.DRAPluginStub | None = None

    def register(self, timeout: float = 5.0) -> reg.PluginInfo:
        """Waits for a registration socket, then registers the driver behind it."""
        deadline = time.monotonic() + timeout
        sockets: list[Path] = []
        while not sockets:
            sockets = sorted(self.registry_dir.glob("*.sock"))
            if not sockets and time.monotonic() > deadline:
                raise TimeoutError(f"no registration socket in {self.registry_dir}")
            time.sleep(0.02)
        with grpc.insecure_channel(f"unix:{sockets[0]}") as channel:
            stub = reg_grpc.RegistrationStub(channel)  # type: ignore[no-untyped-call]
            info: reg.PluginInfo = stub.GetInfo(reg.InfoRequest(), timeout=CALL_TIMEOUT)
            problem = ""
            if info.type != "DRAPlugin":
                problem = f"plugin type {info.type!r} is not DRAPlugin"
            elif not set(info.supported_versions) & set(KUBELET_SERVICES):
                problem = f"none of {list(info.supported_versions)} is served by this kubelet"
            stub.NotifyRegistrationStatus(
                reg.RegistrationStatus(plugin_registered=not problem, error=problem),
                timeout=CALL_TIMEOUT,
            )
        if problem:
            raise RuntimeError(problem)
        self.close()
        self.info = info
        self._channel = grpc.insecure_channel(f"unix:{info.endpoint}")
        self._stub = pb_grpc.DRAPluginStub(self._channel)  # type: ignore[no-untyped-call]
        return info

    def _claims(self, claims: tuple[Claim, ...]) -> list[pb.Claim]:
        return [pb.Claim(namespace=ns, name=name, uid=uid) for ns, name, uid in claims]

    def prepare(self, *claims: Claim) -> pb.NodePrepareResourcesResponse:
        assert self._stub is not None, "register first"
        request = pb.NodePrepareResourcesRequest(claims=self._claims(claims))
        response: pb.NodePrepareResourcesResponse = self._stub.NodePrepareResources(
            request, timeout=CALL_TIMEOUT
        )
        return response

    def unprepare(self, *claims: Claim) -> pb.NodeUnprepareResourcesResponse:
        assert self._stub is not None, "register first"
        request = pb.NodeUnprepareResourcesRequest(claims=self._claims(claims))
        response: pb.NodeUnprepareResourcesResponse = self._stub.NodeUnprepareResources(
            request, timeout=CALL_TIMEOUT
        )
        return response

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None
