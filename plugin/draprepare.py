"""Preparing DRA claims on this node: which devices a claim got, and their CDI spec.

No gRPC here (see draservice.py). The kubelet names a claim by namespace, name and UID;
the devices come from the ResourceClaim's status.allocation, read from the API. The same
faults as Allocate act here: AllocateDelay waits, AllocateError fails the claim. A claim
already prepared (its CDI file exists) is answered from that file, faults or not, so a
repeated call and a restarted plugin or kubelet give the same answer.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from simdev.plugin.allocation import AllocationError, AllocationSettings, plan_allocation
from simdev.plugin.apiwatch import APIError, InClusterAPI
from simdev.plugin.cdi import CdiStore, PreparedDevice, cdi_id, claim_spec, recorded_devices
from simdev.plugin.devices import Device, Snapshot, numa_node_of
from simdev.plugin.draids import device_uuid, index_of
from simdev.plugin.faults import ALLOCATE_DELAY, UNHEALTHY, Fault
from simdev.plugin.simulation import State

log = logging.getLogger("simdev.plugin")

RESOURCE_CLAIMS = "/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims/{name}"


class PrepareError(Exception):
    """A claim cannot be prepared; the message goes back to the kubelet for that claim."""


@dataclass(frozen=True)
class ClaimRef:
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Allocated:
    """One device result of a claim's allocation."""

    request: str
    pool: str
    device: str


def allocation_of(obj: Mapping[str, Any], claim: ClaimRef, driver: str) -> list[Allocated]:
    """This driver's devices in a ResourceClaim's status.allocation; raises PrepareError."""
    uid = (obj.get("metadata") or {}).get("uid")
    if uid != claim.uid:
        raise PrepareError(f"ResourceClaim {claim} has UID {uid}, not {claim.uid}: replaced")
    allocation = (obj.get("status") or {}).get("allocation")
    if not allocation:
        raise PrepareError(f"ResourceClaim {claim} is not allocated")
    results = (allocation.get("devices") or {}).get("results") or ()
    return [
        Allocated(str(r.get("request", "")), str(r.get("pool", "")), str(r.get("device", "")))
        for r in results
        if r.get("driver") == driver
    ]


class ClaimSource(Protocol):
    def allocated(self, claim: ClaimRef) -> list[Allocated]:
        """This driver's devices of the claim; raises PrepareError."""


class APIClaims:
    """Reads ResourceClaims from the API server with the plugin's stdlib client."""

    def __init__(self, api: InClusterAPI, driver: str) -> None:
        self._api = api
        self._driver = driver

    def allocated(self, claim: ClaimRef) -> list[Allocated]:
        path = RESOURCE_CLAIMS.format(
            namespace=urllib.parse.quote(claim.namespace), name=urllib.parse.quote(claim.name)
        )
        try:
            obj = self._api.get(path)
        except (APIError, OSError, ValueError) as err:
            raise PrepareError(f"cannot read ResourceClaim {claim}: {err}") from err
        if obj is None:
            raise PrepareError(f"ResourceClaim {claim} does not exist")
        return allocation_of(obj, claim, self._driver)


class NoClaims:
    """Where the plugin has no API server: no claim can be looked up."""

    def allocated(self, claim: ClaimRef) -> list[Allocated]:
        raise PrepareError(f"cannot read ResourceClaim {claim}: no Kubernetes API here")


class Behaviour(Protocol):
    """What preparing needs of the simulation (simulation.Simulation provides it)."""

    @property
    def state(self) -> State: ...

    def allocation_settings(self) -> AllocationSettings: ...

    def allocate_faults(self) -> Sequence[Fault]: ...

    def draw(self, fault: Fault) -> float: ...


class Preparer:
    def __init__(
        self,
        driver: str,
        node: str,
        store: CdiStore,
        claims: ClaimSource,
        simulation: Behaviour,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._driver = driver
        self._node = node
        self._store = store
        self._claims = claims
        self._simulation = simulation
        self._sleep = sleep
        # One claim's check-and-write at a time: two calls never both write its file.
        self._lock = threading.Lock()

    def prepare(self, claim: ClaimRef) -> list[PreparedDevice]:
        recorded = self._recorded(claim)
        if recorded is not None:
            return recorded
        self._inject_faults(claim)
        allocated = self._claims.allocated(claim)
        devices = self._devices(claim, allocated)
        settings = self._simulation.allocation_settings()
        snapshot = Snapshot(0, {d.id: d for d in devices})
        try:
            (plan,) = plan_allocation(snapshot, [[d.id for d in devices]], settings)
        except AllocationError as err:
            raise PrepareError(f"ResourceClaim {claim}: {err.message}") from err
        prepared = self._answer(claim, allocated)
        spec = claim_spec(self._driver, str(claim), claim.uid, plan, prepared)
        with self._lock:
            again = self._recorded(claim)
            if again is not None:
                return again
            self._store.write(claim.uid, spec)
        log.info(
            "prepared claim",
            extra={"fields": {"claim": str(claim), "uid": claim.uid, "devices": len(devices)}},
        )
        return prepared

    def unprepare(self, claim: ClaimRef) -> None:
        if self._store.remove(claim.uid):
            log.info("unprepared claim", extra={"fields": {"claim": str(claim), "uid": claim.uid}})

    def _recorded(self, claim: ClaimRef) -> list[PreparedDevice] | None:
        spec = self._store.read(claim.uid)
        if spec is None:
            return None
        try:
            return recorded_devices(spec)
        except ValueError:
            return None  # not a file we can answer from: prepare it anew

    def _inject_faults(self, claim: ClaimRef) -> None:
        for fault in self._simulation.allocate_faults():
            fields = {"fault": fault.name, "type": fault.type, "claim": str(claim)}
            if fault.type == ALLOCATE_DELAY:
                log.info("delaying NodePrepareResources", extra={"fields": fields})
                self._sleep(fault.delay)
            elif self._simulation.draw(fault) < fault.probability:
                log.error("prepare failed by fault", extra={"fields": fields})
                raise PrepareError(
                    f"simdev fault {fault.name!r} ({fault.type}) failed NodePrepareResources "
                    f"with {fault.code}"
                )

    def _devices(self, claim: ClaimRef, allocated: Sequence[Allocated]) -> list[Device]:
        """The simulated devices of the allocation, checked against this node's now."""
        state = self._simulation.state
        count, numa = state.config.number_devices, state.config.numa_nodes
        broken: set[int] = set()
        for fault in state.faults_of(UNHEALTHY):
            broken |= fault.unhealthy_indices(self._node, count)
        devices = []
        for a in allocated:
            index = index_of(a.device)
            if a.pool != self._node or index is None or index >= count:
                raise PrepareError(
                    f"ResourceClaim {claim}: device {a.pool}/{a.device} is not a device of "
                    f"node {self._node}"
                )
            if index in broken:
                raise PrepareError(f"ResourceClaim {claim}: device {a.device} is not healthy")
            devices.append(
                Device(
                    index=index,
                    id=device_uuid(self._driver, self._node, index),
                    numa_node=None if numa is None else numa_node_of(index, count, numa),
                )
            )
        return devices

    def _answer(self, claim: ClaimRef, allocated: Sequence[Allocated]) -> list[PreparedDevice]:
        """The kubelet's view: one CDI device for the whole claim, named on its first device.

        Its edits list every device of the claim (as Allocate does for a container); naming
        it once keeps the runtime from applying it twice. The first device lists every
        request of the claim, so a container that names any of them gets it.
        """
        requests = tuple(dict.fromkeys(a.request for a in allocated))
        return [
            PreparedDevice(requests, a.pool, a.device, (cdi_id(self._driver, claim.uid),))
            if n == 0
            else PreparedDevice((a.request,), a.pool, a.device)
            for n, a in enumerate(allocated)
        ]
