"""The simulated device model: the device records and their change notification.

Nothing here knows about gRPC. Every change bumps a version number and wakes the
waiters of a condition variable, so each ListAndWatch stream blocks until there is
something new to send.

A physical device has an index and an ID. With NUMA topology it sits on one NUMA node;
with sharing it is advertised as several replicas, ``<device ID>::<replica>``, each its
own entry in the model, so that the kubelet counts and hands them out one by one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

log = logging.getLogger("simdev.plugin")

HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"


@dataclass(frozen=True)
class Device:
    index: int
    id: str
    healthy: bool = True
    # NUMA node the device sits on; None when the simulation has no topology.
    numa_node: int | None = None
    # What made it unhealthy (the fault names), for error messages and logs.
    reason: str = ""
    # Which replica of the physical device this entry is; None without sharing.
    replica: int | None = None

    @property
    def health(self) -> str:
        return HEALTHY if self.healthy else UNHEALTHY

    @property
    def physical_id(self) -> str:
        """The physical device's ID: the ID without the replica suffix."""
        return self.id if self.replica is None else self.id.rpartition(REPLICA_SEPARATOR)[0]


REPLICA_SEPARATOR = "::"


def device_id(prefix: str, node_name: str, index: int) -> str:
    return f"{prefix}-{node_name}-{index}"


def replica_id(physical_id: str, replica: int) -> str:
    return f"{physical_id}{REPLICA_SEPARATOR}{replica}"


def numa_node_of(index: int, count: int, numa_nodes: int) -> int:
    """The NUMA node of device index among count devices split over numa_nodes.

    Contiguous blocks, as on real machines: when numa_nodes does not divide count, the
    first count % numa_nodes nodes hold one device more (10 over 4: 3, 3, 2, 2). With
    fewer devices than nodes, device i sits on node i and the last nodes stay empty.
    """
    base, extra = divmod(count, numa_nodes)
    big = extra * (base + 1)  # devices on the nodes that hold one more
    if index < big:
        return index // (base + 1)
    return extra + (index - big) // base


def make_devices(
    prefix: str,
    node_name: str,
    count: int,
    unhealthy: Mapping[int, str] | None = None,
    numa_nodes: int | None = None,
    replicas: int = 1,
) -> list[Device]:
    """Indexes 0..count-1; those in unhealthy (index -> reason) are Unhealthy.

    numa_nodes (None: no topology) places each device on a NUMA node. replicas above 1
    advertise every device that many times, all replicas sharing its health and node.
    """
    broken = unhealthy or {}
    devices: list[Device] = []
    for i in range(count):
        physical = device_id(prefix, node_name, i)
        numa = None if numa_nodes is None else numa_node_of(i, count, numa_nodes)
        base = Device(
            index=i, id=physical, healthy=i not in broken, numa_node=numa, reason=broken.get(i, "")
        )
        if replicas == 1:
            devices.append(base)
        else:
            devices += [
                replace(base, id=replica_id(physical, r), replica=r) for r in range(replicas)
            ]
    return devices


@dataclass(frozen=True)
class Snapshot:
    """An immutable view of the devices at one version, in index (then replica) order."""

    version: int
    devices: Mapping[str, Device]

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)


class DeviceModel:
    """The device set of one resource, safe to use from any thread."""

    def __init__(self, devices: Iterable[Device]) -> None:
        self._cond = threading.Condition()
        self._snapshot = Snapshot(0, self._freeze(devices))

    @staticmethod
    def _freeze(devices: Iterable[Device]) -> Mapping[str, Device]:
        ordered = sorted(devices, key=lambda d: (d.index, d.replica or 0))
        by_id = {d.id: d for d in ordered}
        if len(by_id) != len(ordered):
            raise ValueError("device IDs must be unique")
        return MappingProxyType(by_id)

    def snapshot(self) -> Snapshot:
        with self._cond:
            return self._snapshot

    def set_health(self, device_id: str, healthy: bool) -> bool:
        """Marks one device (un)healthy; returns whether anything changed.

        Raises KeyError for an unknown ID.
        """
        with self._cond:
            current = self._snapshot.devices[device_id]
            if current.healthy == healthy:
                return False
            updated = dict(self._snapshot.devices)
            updated[device_id] = replace(current, healthy=healthy)
            self._publish(updated.values())
        log.info(
            "device health changed",
            extra={"fields": {"device": device_id, "health": HEALTHY if healthy else UNHEALTHY}},
        )
        return True

    def set_devices(self, devices: Iterable[Device]) -> bool:
        """Replaces the whole device set; returns whether anything changed.

        An unchanged set keeps its version, so no ListAndWatch stream sends a duplicate.
        """
        frozen = self._freeze(devices)
        with self._cond:
            if list(frozen.values()) == list(self._snapshot.devices.values()):
                return False
            self._publish(frozen.values())
        return True

    def _publish(self, devices: Iterable[Device]) -> None:
        # Caller holds the condition.
        self._snapshot = Snapshot(self._snapshot.version + 1, self._freeze(devices))
        self._cond.notify_all()

    def wait_for_change(
        self, seen_version: int, timeout: float, cancel: threading.Event | None = None
    ) -> Snapshot:
        """Blocks until the version differs from seen_version, cancel is set, or timeout.

        Returns the current snapshot either way; callers compare versions. Whoever
        sets cancel must call wake_all afterwards so the waiter re-checks at once.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    self._snapshot.version != seen_version
                    or (cancel is not None and cancel.is_set())
                ),
                timeout,
            )
            return self._snapshot

    def wake_all(self) -> None:
        """Wakes every waiter without a change, so it re-checks its cancel event."""
        with self._cond:
            self._cond.notify_all()
