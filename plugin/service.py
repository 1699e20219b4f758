"""The v1beta1.DevicePlugin gRPC service over the simulated device model.

Translates between protobuf messages and the model; decisions live in ``devices``
and ``allocation``. One instance serves one server generation: ``stop`` ends its
ListAndWatch streams so a restart or shutdown is not held up by them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

import grpc

from simdev.plugin.allocation import (
    AllocationError,
    AllocationSettings,
    ContainerAllocation,
    Failure,
    plan_allocation,
)
from simdev.plugin.api import deviceplugin_pb2 as pb
from simdev.plugin.api import deviceplugin_pb2_grpc as pb_grpc
from simdev.plugin.devices import Device, DeviceModel, Snapshot
from simdev.plugin.faults import ALLOCATE_DELAY, Fault
from simdev.plugin.policies import AllocationPolicy, preferred_allocation

log = logging.getLogger("simdev.plugin")

# Each ListAndWatch stream holds a server thread for its whole life (the kubelet
# keeps one open, a second only while it replaces the first). Capping them keeps threads
# free for Allocate and friends; the server's pool is sized MAX_WATCH_STREAMS +
# UNARY_WORKERS. The kubelet calls Allocate and GetPreferredAllocation while admitting
# pods, one pod at a time; more threads only contend for the GIL: with 8 busy clients,
# 4 threads served 20% more calls than 8.
MAX_WATCH_STREAMS = 2
UNARY_WORKERS = 2
# How often an idle stream checks that its client is still there.
STREAM_RECHECK_SECONDS = 1.0

_STATUS = {
    Failure.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Failure.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Failure.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
}


class Behaviour(Protocol):
    """What may change between calls: the allocation settings (policies included) and faults."""

    def allocation_settings(self) -> AllocationSettings: ...

    def allocate_faults(self) -> Sequence[Fault]:
        """Active AllocateDelay and AllocateError faults, delays first."""
        ...

    def draw(self, fault: Fault) -> float:
        """A number in [0, 1) from the fault's random stream, compared to its probability."""
        ...


@dataclass(frozen=True)
class Fixed:
    """Settings that never change and no faults."""

    settings: AllocationSettings = field(default_factory=AllocationSettings)

    def allocation_settings(self) -> AllocationSettings:
        return self.settings

    def allocate_faults(self) -> Sequence[Fault]:
        return ()

    def draw(self, fault: Fault) -> float:
        return 0.0


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)  # raises; the line below only informs the type checker
    raise AssertionError("grpc context.abort returned")


def plugin_options(policy: AllocationPolicy = AllocationPolicy.PACKED) -> pb.DevicePluginOptions:
    """What the plugin advertises, both in Register and in GetDevicePluginOptions."""
    # PreStartContainer is implemented but has nothing to do, so the kubelet need not
    # wait for it before every container start. With the policy None the kubelet picks
    # devices alone.
    return pb.DevicePluginOptions(
        pre_start_required=False,
        get_preferred_allocation_available=policy != AllocationPolicy.NONE,
    )


def device_message(device: Device) -> pb.Device:
    msg = pb.Device(ID=device.id, health=device.health)
    if device.numa_node is not None:
        msg.topology.nodes.add(ID=device.numa_node)
    return msg


def list_response(snapshot: Snapshot) -> pb.ListAndWatchResponse:
    return pb.ListAndWatchResponse(devices=[device_message(d) for d in snapshot.devices.values()])


def container_response(plan: ContainerAllocation) -> pb.ContainerAllocateResponse:
    return pb.ContainerAllocateResponse(
        envs=plan.envs,
        devices=[
            pb.DeviceSpec(container_path=n.path, host_path=n.host_path, permissions=n.permissions)
            for n in plan.device_nodes
        ],
        annotations=plan.annotations,
    )


class DevicePluginService(pb_grpc.DevicePluginServicer):
    def __init__(
        self,
        model: DeviceModel,
        behaviour: Behaviour,
        observe_allocate: Callable[[str, float], None] | None = None,
    ) -> None:
        self._model = model
        self._behaviour = behaviour
        # Told every Allocate's gRPC code and duration (the metrics), if set.
        self._observe_allocate = observe_allocate
        self._stopping = threading.Event()
        self._streams = threading.Condition()
        self._open_streams = 0

    # Framework hooks (see server.Servicer).

    def add_to(self, server: grpc.Server) -> None:
        # Generated gRPC code is untyped.
        pb_grpc.add_DevicePluginServicer_to_server(self, server)  # type: ignore[no-untyped-call]

    def stop(self, timeout: float = STREAM_RECHECK_SECONDS) -> None:
        """Ends every ListAndWatch stream and waits (bounded) until their handlers returned."""
        self._stopping.set()
        self._model.wake_all()
        with self._streams:
            self._streams.wait_for(lambda: self._open_streams == 0, timeout)

    # v1beta1.DevicePlugin

    def GetDevicePluginOptions(
        self, request: pb.Empty, context: grpc.ServicerContext
    ) -> pb.DevicePluginOptions:
        return plugin_options(self._behaviour.allocation_settings().policy)

    def ListAndWatch(
        self, request: pb.Empty, context: grpc.ServicerContext
    ) -> Iterator[pb.ListAndWatchResponse]:
        with self._streams:
            full = self._open_streams >= MAX_WATCH_STREAMS
            if not full:
                self._open_streams += 1
        if full:
            log.error("refused ListAndWatch: too many open streams")
            _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"at most {MAX_WATCH_STREAMS} ListAndWatch streams at a time",
            )
        try:
            snapshot = self._model.snapshot()
            yield list_response(snapshot)
            while not self._stopping.is_set() and context.is_active():
                latest = self._model.wait_for_change(
                    snapshot.version, STREAM_RECHECK_SECONDS, cancel=self._stopping
                )
                if latest.version != snapshot.version and not self._stopping.is_set():
                    snapshot = latest
                    yield list_response(snapshot)
            # Returning ends the stream with status OK: a clean end for the kubelet.
        finally:
            with self._streams:
                self._open_streams -= 1
                self._streams.notify_all()

    def GetPreferredAllocation(
        self, request: pb.PreferredAllocationRequest, context: grpc.ServicerContext
    ) -> pb.PreferredAllocationResponse:
        snapshot = self._model.snapshot()
        settings = self._behaviour.allocation_settings()
        return pb.PreferredAllocationResponse(
            container_responses=[
                pb.ContainerPreferredAllocationResponse(
                    # The repeated fields are read as they are: a copy of 10,000 IDs
                    # costs as much as the ranking.
                    deviceIDs=preferred_allocation(
                        snapshot,
                        r.available_deviceIDs,
                        r.must_include_deviceIDs,
                        r.allocation_size,
                        settings.policy,
                        settings.sharing_policy,
                    )
                )
                for r in request.container_requests
            ]
        )

    def Allocate(
        self, request: pb.AllocateRequest, context: grpc.ServicerContext
    ) -> pb.AllocateResponse:
        observe = self._observe_allocate
        if observe is None:
            return self._allocate(request, context)
        began = time.perf_counter()
        code = "UNKNOWN"
        try:
            response = self._allocate(request, context)
            code = "OK"
            return response
        except Exception:
            # context.abort raised; the code it set is the answer the kubelet gets.
            code = getattr(context.code(), "name", "UNKNOWN")
            raise
        finally:
            observe(code, time.perf_counter() - began)

    def _allocate(
        self, request: pb.AllocateRequest, context: grpc.ServicerContext
    ) -> pb.AllocateResponse:
        requests = [list(r.devices_ids) for r in request.container_requests]
        for fault in self._behaviour.allocate_faults():
            self._inject(fault, context)
        try:
            plans = plan_allocation(
                self._model.snapshot(), requests, self._behaviour.allocation_settings()
            )
        except AllocationError as err:
            log.error(
                "allocation refused",
                extra={"fields": {"code": _STATUS[err.failure].name, "error": err.message}},
            )
            _abort(context, _STATUS[err.failure], err.message)
        log.info(
            "allocated",
            extra={
                "fields": {
                    "containers": ";".join(",".join(p.device_ids) for p in plans),
                }
            },
        )
        return pb.AllocateResponse(container_responses=[container_response(p) for p in plans])

    def _inject(self, fault: Fault, context: grpc.ServicerContext) -> None:
        fields = {"fault": fault.name, "type": fault.type}
        if fault.type == ALLOCATE_DELAY:
            log.info("delaying Allocate", extra={"fields": {**fields, "delay": fault.delay}})
            time.sleep(fault.delay)
            return
        if self._behaviour.draw(fault) >= fault.probability:
            return
        code = grpc.StatusCode[fault.code]
        message = (
            f"simdev fault {fault.name!r} ({fault.type}) failed this Allocate with {code.name}"
        )
        log.error("allocation failed by fault", extra={"fields": {**fields, "code": code.name}})
        _abort(context, code, message)

    def PreStartContainer(
        self, request: pb.PreStartContainerRequest, context: grpc.ServicerContext
    ) -> pb.PreStartContainerResponse:
        # Simulated devices need no preparation before a container starts.
        return pb.PreStartContainerResponse()
