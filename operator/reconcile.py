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
from datetime import UTC, datetime
from typing import Any, cast

import kopf
import urllib3
from kubernetes.client.exceptions import ApiException

from simdev.operator import dra
from simdev.operator.audit import Audit, Listed, Stale
from simdev.operator.coalesce import Coalescer
from simdev.operator.conflicts import resolve, stale_conflicts
from simdev.operator.deployer import Deployer, Outcome, RetryLater
from simdev.operator.kube import api_error
from simdev.operator.metrics import OperatorMetrics
from simdev.operator.model import Device
from simdev.operator.node_sync import NodeSync
from simdev.operator.observed import (
    DeviceTotals,
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
from simdev.operator.world import Observe, World

logger = logging.getLogger(__name__)

RETRY_DELAY = 10.0
# The safety net re-reconciles an object this long after its last reconcile, in case an
# event was missed; events, not this, drive normal operation.
RESYNC_PERIOD = 600.0
# How often the indexes are checked against full lists from the API (see audit.py).
AUDIT_PERIOD = 120.0
# Retries of reconciles that no kopf handler retries: quick first, then backing off.
RETRY_FIRST = 1.0
RETRY_MAX = 60.0
# Watch events of Nodes, Pods and other objects wait this long for more before one recheck.
RECHECK_DELAY = 1.0
# Expected races (a failed JSON-patch test, a precondition conflict) resolve on a re-read.
RACE_STATUSES = (409, 422)


class Raced(kopf.TemporaryError):
    """A concurrent change beat one of our writes; reconciling again settles it."""


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
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self._deployer = deployer
        self._metrics = metrics or OperatorMetrics()
        self._post_event = post_event
        self._clock = clock
        self._epoch = epoch
        self._locks: dict[str, asyncio.Lock] = {}
        # The last status this process wrote, by uid: fresher than the index, whose copy
        # arrives only with the next watch event. It prevents repeated events and patches.
        self._written: dict[str, Mapping[str, Any]] = {}
        self._last_run: dict[str, float] = {}
        self._audit = Audit()
        self._audited_at: float | None = None
        self._retries: dict[str, asyncio.Task[None]] = {}
        # Metrics ports handed out on the host network, by object name (see _metrics_port).
        self._ports: dict[str, int] = {}
        self._retry_delay: dict[str, float] = {}
        # The node status no kubelet writes (fake nodes, stale keys): see node_sync.py.
        self.nodes = NodeSync(deployer, self.view, self.status_of, epoch)
        self._rechecks = Coalescer("recheck of every SimulatedDevice", delay=RECHECK_DELAY)

    def view(self, observe: Observe) -> World:
        """The indexes' world, less the entries the last audit found deleted."""
        return self._audit.view(observe())

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def status_of(self, device: Device) -> Mapping[str, Any]:
        return self._written.get(device.uid, device.status)

    def forget(self, name: str, uid: str) -> None:
        """Drops the per-object memory once an object is gone."""
        self._written.pop(uid, None)
        self._last_run.pop(uid, None)
        self._ports.pop(name, None)
        lock = self._locks.get(name)
        if lock is not None and not lock.locked():
            del self._locks[name]

    async def reconcile(self, name: str, observe: Observe, *, deploy: bool = True) -> None:
        """Converges one SimulatedDevice; raises kopf.TemporaryError when it must be retried.

        deploy=False refreshes only the status: for changes of nodes and pods, which move
        device counts but nothing the plugin objects are built from.
        """
        began = time.monotonic()
        result = "error"
        try:
            await self._reconcile(name, observe, deploy)
            result = "ok"
        except Raced:
            result = "raced"
            raise
        finally:
            # Fake nodes follow the object whatever became of its plugin objects. A status
            # refresh changes nothing they show: node events already brought it about.
            if deploy:
                self.nodes.request_sync(observe)
            self._metrics.reconciles.labels(result=result).inc()
            self._metrics.reconcile_seconds.observe(time.monotonic() - began)

    async def _reconcile(self, name: str, observe: Observe, deploy: bool) -> None:
        async with self._lock(name):
            world = self.view(observe)
            device = world.devices.get(name)
            if device is None or device.deleting:
                return
            # A status refresh never hides a failure or skips a due resync: those deploy.
            deploy = deploy or self.resync_due(device)
            if deploy:
                self._last_run[device.uid] = time.monotonic()
            previous = self.status_of(device)
            conflict = resolve(world.devices.values())[name]
            namespaces = world.namespaces_of(device, previous, terminating=False)
            error: str | None = None
            outcome = Outcome()
            try:
                if not deploy and conflict is None:
                    # The plugin objects stand as the last full reconcile left them; slices
                    # are per node, so the node changes behind a refresh move them too.
                    if device.spec.dra.enabled:
                        wanted = self._dra_objects(device, world, previous)
                        outcome.notes += await asyncio.to_thread(
                            self._deployer.dra.publish, device, wanted
                        )
                elif conflict is not None:
                    outcome = await asyncio.to_thread(self._deployer.withdraw, device, namespaces)
                else:
                    port = self._metrics_port(device, world)
                    outcome = await asyncio.to_thread(
                        self._deployer.deploy, device, namespaces, port
                    )
                    wanted = self._dra_objects(device, world, previous)
                    outcome.notes += await asyncio.to_thread(
                        self._deployer.dra.publish, device, wanted
                    )
            except ApiException as err:
                if err.status in RACE_STATUSES:
                    # Not a failure worth a status or an Event: read again and retry.
                    raise Raced(f"a concurrent change won: {api_error(err)}", delay=1) from err
                error = api_error(err)
                self._metrics.errors.labels(reason=f"http-{err.status}").inc()
            except RetryLater as err:
                error = str(err)
                self._metrics.errors.labels(reason="waiting").inc()
            except urllib3.exceptions.HTTPError as err:
                error = str(err)
                self._metrics.errors.labels(reason="connection").inc()

            world = self.view(observe)  # node counts may have moved while the steps ran
            self._metrics.set_managed(
                {
                    "SimulatedDevice": len(world.devices),
                    "DaemonSet": sum(len(d) for d in world.daemon_sets.values()),
                }
            )
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
                metrics_port=self._ports.get(name) if conflict is None else None,
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

    def _metrics_port(self, device: Device, world: World) -> int | None:
        """A host-network plugin's metrics port: kept once given, unique among the objects.

        Decided and recorded without an await in between, so two concurrent reconciles
        never hand out the same port; the status keeps it across operator restarts.
        """
        runtime = self._deployer.runtime
        if not runtime.host_network:
            return None
        taken = {
            port
            for other in world.devices.values()
            if other.name != device.name
            for port in (self._ports.get(other.name), self.status_of(other).get("metricsPort"))
            if port
        }
        mine = self._ports.get(device.name) or self.status_of(device).get("metricsPort")
        if not mine or mine in taken:
            mine = runtime.metrics_port
            while mine in taken:
                mine += 1
        self._ports[device.name] = int(mine)
        return int(mine)

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

    def _dra_objects(
        self, device: Device, world: World, status: Mapping[str, Any]
    ) -> dra.DraObjects:
        """The slices and class for the nodes and faults of now (nothing with DRA off)."""
        now = self._epoch()
        return dra.desired(device, world.nodes, fault_clock(device, status, now), now)

    def next_fault_change(self, name: str, observe: Observe) -> float | None:
        """Seconds until a fault of this object switches on or off, or None."""
        device = self.view(observe).devices.get(name)
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
            self._metrics.errors.labels(reason="status-write").inc()
            raise kopf.TemporaryError(f"status update failed: {api_error(err)}", delay=1) from err
        self._written[device.uid] = status

    async def tear_down(self, name: str, observe: Observe) -> list[str]:
        """Deletes the plugin objects of a deleted SimulatedDevice.

        Returns the namespaces whose DaemonSet is still terminating (empty when done).
        """
        async with self._lock(name):
            world = self.view(observe)
            device = world.devices.get(name)
            if device is None:
                return []
            namespaces = world.namespaces_of(device, self.status_of(device))
            try:
                left = await asyncio.to_thread(self._deployer.tear_down, device, namespaces)
            except ApiException as err:
                raise kopf.TemporaryError(api_error(err), delay=RETRY_DELAY) from err
        # A deleting object serves nothing: its resource leaves the fake nodes now.
        self.nodes.request_sync(observe)
        return left

    def recheck(self, observe: Observe) -> None:
        """Soon, reconciles the objects needing_reconcile names: one check for many events."""

        async def check() -> None:
            world = observe()
            # Only a changed conflict verdict needs the plugin objects touched.
            verdicts = set(stale_conflicts(self._current(world).values()))
            for name in self.needing_reconcile(world):
                await self.reconcile_quietly(name, observe, deploy=name in verdicts)

        self._rechecks.poke(check)

    def needing_reconcile(self, world: World) -> list[str]:
        """Objects whose status no longer matches the cluster, judged from memory alone.

        Used on changes of other objects (SimulatedDevices, Nodes), so that only the objects
        whose conflict verdict or device counts actually changed are reconciled.
        """
        world = self._audit.view(world)
        current = self._current(world)
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

    def _current(self, world: World) -> dict[str, Device]:
        """The objects with the status this process last wrote for them."""
        return {
            name: dataclasses.replace(d, status=self.status_of(d))
            for name, d in self._audit.view(world).devices.items()
        }

    def resync_due(self, device: Device) -> bool:
        """True when the safety net should reconcile: after a failure, or after a long quiet."""
        failed = any(
            c.get("type") == "Ready" and c.get("reason") == "ReconcileError"
            for c in self.status_of(device).get("conditions") or ()
        )
        last = self._last_run.get(device.uid)
        return failed or last is None or time.monotonic() - last >= RESYNC_PERIOD

    async def reconcile_quietly(self, name: str, observe: Observe, *, deploy: bool = True) -> None:
        """For triggers that kopf does not retry: retried here, within seconds, backing off.

        Retries are full reconciles.
        """
        try:
            await self.reconcile(name, observe, deploy=deploy)
        except Raced as err:
            logger.debug("reconcile of SimulatedDevice %s raced; again: %s", name, err)
            self._retry(name, observe, RETRY_FIRST)
        except kopf.TemporaryError as err:
            delay = self._retry_delay.get(name, RETRY_FIRST)
            self._retry_delay[name] = min(delay * 2, RETRY_MAX)
            logger.warning(
                "reconcile of SimulatedDevice %s will be retried in %.0fs: %s", name, delay, err
            )
            self._retry(name, observe, delay)
        else:
            self._retry_delay.pop(name, None)

    def _retry(self, name: str, observe: Observe, delay: float) -> None:
        pending = self._retries.get(name)
        if pending is not None and not pending.done():
            return

        async def later() -> None:
            await asyncio.sleep(delay)
            self._retries.pop(name, None)
            await self.reconcile_quietly(name, observe)

        self._retries[name] = asyncio.get_running_loop().create_task(later())

    def audit_due(self) -> bool:
        now = time.monotonic()
        return self._audited_at is None or now - self._audited_at >= AUDIT_PERIOD

    async def audit(self, observe: Observe) -> Stale:
        """Checks the indexes against full lists; returns (and from now on hides) stale entries.

        The snapshot is taken before the lists, so everything in it predates them.
        """
        self._audited_at = time.monotonic()
        snapshot = observe()
        listed: Listed = await asyncio.to_thread(self._deployer.list_identities)
        stale = self._audit.record(snapshot, listed)
        if stale:
            logger.warning(
                "index entries of deleted objects ignored: %d SimulatedDevices, %d Nodes, %d Pods",
                len(stale.devices),
                len(stale.nodes),
                len(stale.pods),
            )
        return stale
