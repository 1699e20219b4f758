"""The one level-based reconcile of a SimulatedDevice.

Every trigger (create, update, resume, a change of its DaemonSet, of a Node or of another
SimulatedDevice, the safety-net timer) calls the same function with only a name. It reads
the latest snapshots from the kopf indexes, decides with the pure modules, runs the blocking
steps in a worker thread and writes the status. Calls for one object are serialised, so a
slow reconcile never races a newer one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf
import urllib3
from kubernetes.client.exceptions import ApiException

from simdev.operator.conflicts import resolve, stale_conflicts
from simdev.operator.deployer import Deployer, Outcome, RetryLater
from simdev.operator.kube import api_error
from simdev.operator.model import Device
from simdev.operator.observed import (
    DaemonSetState,
    DeviceTotals,
    NodeResources,
    PodDevices,
    allocated_on,
)
from simdev.operator.simulation import (
    NodeRow,
    fault_clock,
    fault_entries,
    listed_rows,
    next_fault_change,
    node_rows,
)
from simdev.operator.status import (
    Event,
    build_status,
    fault_events,
    status_patch,
    transition_events,
)

logger = logging.getLogger(__name__)

RETRY_DELAY = 10.0
# The safety net re-reconciles an object this long after its last reconcile, in case an
# event was missed; events, not this, drive normal operation.
RESYNC_PERIOD = 600.0


@dataclass(frozen=True)
class World:
    """What the operator knows about the cluster at one moment, from its indexes."""

    devices: Mapping[str, Device] = field(default_factory=dict)
    # DaemonSets labelled as ours, by the name of the SimulatedDevice they serve.
    daemon_sets: Mapping[str, tuple[DaemonSetState, ...]] = field(default_factory=dict)
    nodes: tuple[NodeResources, ...] = ()
    # Pods that hold extended resources, whatever their resource.
    pods: tuple[PodDevices, ...] = ()

    def namespaces_of(
        self, device: Device, status: Mapping[str, Any], *, terminating: bool = True
    ) -> set[str]:
        """Every namespace this object may have deployed into: spec, index and status.

        terminating=False leaves out DaemonSets already being deleted: nothing is left to
        do about them but wait.
        """
        found = {device.spec.namespace}
        found.update(
            ds.namespace
            for ds in self.daemon_sets.get(device.name, ())
            if terminating or not ds.deleting
        )
        recorded = (status.get("daemonSet") or {}).get("namespace")
        if recorded:
            found.add(str(recorded))
        return found

    def daemon_set_in(self, device: Device, namespace: str) -> DaemonSetState | None:
        return next(
            (d for d in self.daemon_sets.get(device.name, ()) if d.namespace == namespace), None
        )


Observe = Callable[[], World]
PostEvent = Callable[[Device, Event], None]


def post_kopf_event(device: Device, event: Event) -> None:
    target = kopf.Body(cast(kopf.RawBody, device.event_target()))
    kopf.event(target, type=event.type, reason=event.reason, message=event.message)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(
        self,
        deployer: Deployer,
        post_event: PostEvent = post_kopf_event,
        clock: Callable[[], str] = _now,
        epoch: Callable[[], float] = time.time,
    ) -> None:
        self._deployer = deployer
        self._post_event = post_event
        self._clock = clock
        self._epoch = epoch
        self._locks: dict[str, asyncio.Lock] = {}
        # The last status this process wrote, by uid: fresher than the index, whose copy
        # arrives only with the next watch event. It prevents repeated events and patches.
        self._written: dict[str, Mapping[str, Any]] = {}
        self._last_run: dict[str, float] = {}

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def status_of(self, device: Device) -> Mapping[str, Any]:
        return self._written.get(device.uid, device.status)

    def forget(self, name: str, uid: str) -> None:
        """Drops the per-object memory once an object is gone."""
        self._written.pop(uid, None)
        self._last_run.pop(uid, None)
        lock = self._locks.get(name)
        if lock is not None and not lock.locked():
            del self._locks[name]

    async def reconcile(self, name: str, observe: Observe) -> None:
        """Converges one SimulatedDevice; raises kopf.TemporaryError when it must be retried."""
        async with self._lock(name):
            world = observe()
            device = world.devices.get(name)
            if device is None or device.deleting:
                return
            self._last_run[device.uid] = time.monotonic()
            previous = self.status_of(device)
            conflict = resolve(world.devices.values())[name]
            namespaces = world.namespaces_of(device, previous, terminating=False)
            error: str | None = None
            outcome = Outcome()
            try:
                if conflict is not None:
                    outcome = await asyncio.to_thread(self._deployer.withdraw, device, namespaces)
                else:
                    outcome = await asyncio.to_thread(self._deployer.deploy, device, namespaces)
            except ApiException as err:
                error = api_error(err)
            except (RetryLater, urllib3.exceptions.HTTPError) as err:
                error = str(err)

            world = observe()  # node counts may have moved while the steps ran
            daemon_set = outcome.daemon_set
            if daemon_set is None and conflict is None:
                daemon_set = world.daemon_set_in(device, device.spec.namespace)
            totals, rows, faults = self._observed(device, world, previous)
            status = build_status(
                device,
                conflict=conflict,
                daemon_set=daemon_set,
                totals=totals,
                now=self._clock(),
                error=error,
                rows=rows,
                faults=faults,
            )
            await self._write_status(device, previous, status)
            for note in outcome.notes:
                # Notes start with their verb: "Created ...", "Deleted ...".
                self._post_event(device, Event("Normal", note.split(" ", 1)[0], note))
            for event in transition_events(previous, status) + fault_events(
                device, previous, status
            ):
                self._post_event(device, event)
            if error is not None:
                raise kopf.TemporaryError(error, delay=RETRY_DELAY)

    def _observed(
        self, device: Device, world: World, status: Mapping[str, Any]
    ) -> tuple[DeviceTotals, list[NodeRow], list[dict[str, Any]]]:
        """Totals, node rows and fault entries for one object, from the world and its clock."""
        now = self._epoch()
        resource = device.spec.resource_name
        clock = fault_clock(device, status, now)
        allocated = allocated_on(resource, world.pods)
        rows = node_rows(device, world.nodes, allocated, clock, now)
        totals = DeviceTotals.of(resource, world.nodes, allocated)
        return totals, rows, fault_entries(device, clock, rows, now)

    def next_fault_change(self, name: str, observe: Observe) -> float | None:
        """Seconds until a fault of this object switches on or off, or None."""
        device = observe().devices.get(name)
        if device is None or device.deleting:
            return None
        now = self._epoch()
        due = next_fault_change(device, self.status_of(device), now)
        return None if due is None else max(0.0, due - now)

    async def _write_status(
        self, device: Device, previous: Mapping[str, Any], status: Mapping[str, Any]
    ) -> None:
        patch = status_patch(previous, status)
        if patch is None:
            return
        try:
            await asyncio.to_thread(self._deployer.patch_status, device, patch)
        except ApiException as err:
            if err.status == 404:  # deleted meanwhile: nothing left to report on
                return
            raise kopf.TemporaryError(f"status update failed: {api_error(err)}", delay=1) from err
        self._written[device.uid] = status

    async def tear_down(self, name: str, observe: Observe) -> list[str]:
        """Deletes the plugin objects of a deleted SimulatedDevice.

        Returns the namespaces whose DaemonSet is still terminating (empty when done).
        """
        async with self._lock(name):
            world = observe()
            device = world.devices.get(name)
            if device is None:
                return []
            namespaces = world.namespaces_of(device, self.status_of(device))
            try:
                return await asyncio.to_thread(self._deployer.tear_down, device, namespaces)
            except ApiException as err:
                raise kopf.TemporaryError(api_error(err), delay=RETRY_DELAY) from err

    def needing_reconcile(self, world: World) -> list[str]:
        """Objects whose status no longer matches the cluster, judged from memory alone.

        Used on changes of other objects (SimulatedDevices, Nodes), so that only the objects
        whose conflict verdict or device counts actually changed are reconciled.
        """
        current = {
            name: dataclasses.replace(d, status=self.status_of(d))
            for name, d in world.devices.items()
        }
        names = set(stale_conflicts(current.values()))
        for device in current.values():
            if device.deleting:
                continue
            totals, rows, faults = self._observed(device, world, device.status)
            listed, omitted = listed_rows(rows)
            if (
                device.status.get("devices") != totals.as_status()
                or device.status.get("nodeDevices") != listed
                or device.status.get("nodeDevicesOmitted") != omitted
                or device.status.get("faults") != faults
            ):
                names.add(device.name)
        return sorted(names)

    def resync_due(self, device: Device) -> bool:
        """True when the safety net should reconcile: after a failure, or after a long quiet."""
        failed = any(
            c.get("type") == "Ready" and c.get("reason") == "ReconcileError"
            for c in self.status_of(device).get("conditions") or ()
        )
        last = self._last_run.get(device.uid)
        return failed or last is None or time.monotonic() - last >= RESYNC_PERIOD

    async def reconcile_quietly(self, name: str, observe: Observe) -> None:
        """For triggers that kopf does not retry: failures are already in the status."""
        try:
            await self.reconcile(name, observe)
        except kopf.TemporaryError as err:
            logger.warning("reconcile of SimulatedDevice %s will be retried: %s", name, err)
