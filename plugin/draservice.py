"""The kubelet's DRA gRPC services: plugin registration and the v1 node service.

Thin: every claim is handed to the Preparer (draprepare.py), and a failing claim gets its
own error in the response, as the API asks, so the others still succeed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc

from simdev.plugin.api import dra_pb2 as pb
from simdev.plugin.api import dra_pb2_grpc as pb_grpc
from simdev.plugin.api import pluginregistration_pb2 as reg
from simdev.plugin.api import pluginregistration_pb2_grpc as reg_grpc
from simdev.plugin.draprepare import ClaimRef, PrepareError, Preparer

log = logging.getLogger("simdev.plugin")

PLUGIN_TYPE = "DRAPlugin"
# What the registration offers, as "<gRPC package>.<service>": the kubelet picks from these.
DRA_SERVICE = "v1.DRAPlugin"
# Threads for the two sockets' calls; the kubelet makes few calls at a time.
DRA_WORKERS = 4
REGISTRATION_WORKERS = 2


def _claim(message: pb.Claim) -> ClaimRef:
    return ClaimRef(message.namespace, message.name, message.uid)


class DraNodeService(pb_grpc.DRAPluginServicer):
    def __init__(self, preparer: Preparer) -> None:
        self._preparer = preparer

    def add_to(self, server: grpc.Server) -> None:
        pb_grpc.add_DRAPluginServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    def stop(self) -> None:
        """No streams to end: every call is unary."""

    def NodePrepareResources(
        self, request: pb.NodePrepareResourcesRequest, context: grpc.ServicerContext
    ) -> pb.NodePrepareResourcesResponse:
        response = pb.NodePrepareResourcesResponse()
        for message in request.claims:
            claim = _claim(message)
            try:
                devices = self._preparer.prepare(claim)
            except PrepareError as err:
                log.error(
                    "prepare refused", extra={"fields": {"claim": str(claim), "error": str(err)}}
                )
                response.claims[claim.uid].error = str(err)
                continue
            response.claims[claim.uid].devices.extend(
                pb.Device(
                    request_names=d.requests,
                    pool_name=d.pool,
                    device_name=d.device,
                    cdi_device_ids=d.cdi_ids,
                )
                for d in devices
            )
        return response

    def NodeUnprepareResources(
        self, request: pb.NodeUnprepareResourcesRequest, context: grpc.ServicerContext
    ) -> pb.NodeUnprepareResourcesResponse:
        response = pb.NodeUnprepareResourcesResponse()
        for message in request.claims:
            claim = _claim(message)
            try:
                self._preparer.unprepare(claim)
            except OSError as err:
                response.claims[claim.uid].error = f"cannot remove the CDI spec: {err}"
                continue
            response.claims[claim.uid].SetInParent()
        return response


class RegistrationService(reg_grpc.RegistrationServicer):
    """Answers the kubelet's plugin watcher, which dials our socket in plugins_registry."""

    def __init__(self, driver: str, endpoint: Path) -> None:
        self._driver = driver
        self._endpoint = endpoint
        self.registered = threading.Event()
        self.last_error = ""

    def add_to(self, server: grpc.Server) -> None:
        reg_grpc.add_RegistrationServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    def stop(self) -> None:
        """No streams to end."""

    def GetInfo(self, request: reg.InfoRequest, context: grpc.ServicerContext) -> reg.PluginInfo:
        return reg.PluginInfo(
            type=PLUGIN_TYPE,
            name=self._driver,
            endpoint=str(self._endpoint),
            supported_versions=[DRA_SERVICE],
        )

    def NotifyRegistrationStatus(
        self, request: reg.RegistrationStatus, context: grpc.ServicerContext
    ) -> reg.RegistrationStatusResponse:
        fields = {"driver": self._driver, "registered": request.plugin_registered}
        if request.plugin_registered:
            self.last_error = ""
            self.registered.set()
            log.info("DRA driver registered", extra={"fields": fields})
        else:
            self.last_error = request.error
            self.registered.clear()
            log.error("DRA driver refused", extra={"fields": {**fields, "error": request.error}})
        return reg.RegistrationStatusResponse()
