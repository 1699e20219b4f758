"""What the simulation should look like on each node, and what it does: pure functions.

The operator evaluates the same faults as the plugins (``simdev.plugin.faults``), from the
clock anchors it records in ``status.faults[].since``, and puts each node in its pool by the
plugins' rule (``simdev.plugin.pools``). That gives one schedule for every node, the per-node
rows of ``status.nodeDevices`` and one Event per fault per transition, however many nodes
flap with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from simdev.operator.model import Device
from simdev.operator.observed import NodeResources
from simdev.plugin.faults import (
    PLUGIN_DOWN,
    UNHEALTHY,
    Clock,
    Fault,
    FaultError,
    is_active,
    next_change,
    parse_faults,
    recorded_clock,
    to_time,
)
from simdev.plugin.pools import NodePool, PoolError, overlay, parse_pools, pool_for

# status.nodeDevices lists at most this many nodes, the interesting ones first: about
# 200 bytes each keeps the status far below the API server's object size limit even on
# clusters of thousands of nodes (the rest are counted in nodeDevicesOmitted).
MAX_NODE_ROWS = 1000


def faults_of(device: Device) -> tuple[Fault, ...]:
    """The parsed faults; the API server validated them, so an error means none apply."""
    try:
        return parse_faults(list(device.spec.faults))
    except FaultError:
        return ()


def pools_of(device: Device) -> tuple[NodePool, ...]:
    """The parsed node pools; the API server validated them, so an error means none apply."""
    try:
        return parse_pools(list(device.spec.node_pools))
    except PoolError:
        return ()


def node_counts(device: Device, pool: NodePool | None) -> tuple[int, int]:
    """Physical devices and replicas on a node of pool (None: the top level)."""
    spec = device.spec
    top = {"numberDevices": spec.number_devices, "sharing.replicas": spec.sharing_replicas}
    settings = overlay(top, pool)
    return int(settings["numberDevices"]), int(settings["sharing.replicas"])


def fault_clock(device: Device, status: Mapping[str, Any], now: float) -> Clock:
    """Anchors for the current faults: the recorded ones where unchanged, now for new ones."""
    return Clock().advance(faults_of(device), now, recorded_clock(status))


def next_fault_change(device: Device, status: Mapping[str, Any], now: float) -> float | None:
    faults = faults_of(device)
    return next_change(faults, fault_clock(device, status, now), now)


@dataclass(frozen=True)
class NodeRow:
    name: str
    capacity: int
    allocatable: int
    allocated: int
    expected_capacity: int
    expected_allocatable: int
    active_faults: tuple[str, ...]
    # The node's pool; empty: the top level.
    pool: str = ""
    # spec.nodeSelector matches the node, so the DaemonSet may run a plugin there.
    selected: bool = True
    # The node reports the resource: a plugin registered there at some point.
    reported: bool = True

    @property
    def as_expected(self) -> bool:
        return (self.capacity, self.allocatable) == (
            self.expected_capacity,
            self.expected_allocatable,
        )

    def as_status(self) -> dict[str, Any]:
        row = {
            "name": self.name,
            "capacity": self.capacity,
            "allocatable": self.allocatable,
            "allocated": self.allocated,
            "activeFaults": list(self.active_faults),
        }
        # Absent for the top level, so objects without pools keep the status they had.
        return {**row, "pool": self.pool} if self.pool else row


def selects(device: Device, node: NodeResources) -> bool:
    """spec.nodeSelector matches the node: the DaemonSet runs a plugin there."""
    return all(node.labels.get(k) == v for k, v in device.spec.node_selector)


def node_rows(
    device: Device,
    nodes: Iterable[NodeResources],
    allocated: Mapping[str, int],
    clock: Clock,
    now: float,
) -> list[NodeRow]:
    """One row per node that runs this simulation or still reports its resource."""
    resource = device.spec.resource_name
    faults = faults_of(device)
    pools = pools_of(device)
    rows = []
    for node in nodes:
        selected = selects(device, node)
        if not selected and resource not in node.capacity:
            continue
        pool = pool_for(pools, node.labels) if selected else None
        # Faults act on physical devices; a node advertises each of them once per replica.
        count, replicas = node_counts(device, pool)
        active = (
            [f for f in faults if f.matches(node.labels) and is_active(f, clock, now)]
            if selected
            else []
        )
        broken: set[int] = set()
        for f in active:
            if f.type == UNHEALTHY:
                broken |= f.unhealthy_indices(node.name, count)
        down = any(f.type == PLUGIN_DOWN for f in active)
        rows.append(
            NodeRow(
                name=node.name,
                capacity=node.capacity.get(resource, 0),
                allocatable=node.allocatable.get(resource, 0),
                allocated=allocated.get(node.name, 0),
                expected_capacity=count * replicas if selected else 0,
                expected_allocatable=(
                    0 if down or not selected else (count - len(broken)) * replicas
                ),
                active_faults=tuple(f.name for f in active),
                pool=pool.name if pool else "",
                selected=selected,
                reported=resource in node.capacity,
            )
        )
    return rows


def listed_rows(rows: Sequence[NodeRow]) -> tuple[list[dict[str, Any]], int]:
    """The rows status.nodeDevices shows (nodes off their spec first) and how many are left."""
    ordered = sorted(
        rows, key=lambda r: (r.as_expected and not r.active_faults, r.allocated == 0, r.name)
    )
    return [r.as_status() for r in ordered[:MAX_NODE_ROWS]], max(0, len(rows) - MAX_NODE_ROWS)


def fault_entries(
    device: Device, clock: Clock, rows: Sequence[NodeRow], now: float
) -> list[dict[str, Any]]:
    """status.faults: each fault's clock anchor, whether its window is open, and where."""
    entries = []
    for f in faults_of(device):
        started = clock.started(f)
        entries.append(
            {
                "name": f.name,
                "since": to_time(now if started is None else started),
                "definition": f.definition,
                "active": is_active(f, clock, now),
                "nodes": sum(1 for r in rows if f.name in r.active_faults),
            }
        )
    return entries


@dataclass(frozen=True)
class FaultTransition:
    name: str
    type: str
    active: bool
    nodes: int


def fault_transitions(
    device: Device, old: Mapping[str, Any], new: Iterable[Mapping[str, Any]]
) -> list[FaultTransition]:
    """One transition per fault whose window opened or closed (or that was removed active)."""
    types = {f.name: f.type for f in faults_of(device)}
    before = {str(e.get("name")): e for e in old.get("faults") or ()}
    after = {str(e["name"]): e for e in new}
    changes = []
    for name, entry in after.items():
        was = before.get(name, {})
        if bool(entry["active"]) != bool(was.get("active")):
            changes.append(
                FaultTransition(name, types.get(name, ""), bool(entry["active"]), entry["nodes"])
            )
    for name, entry in before.items():
        if name not in after and entry.get("active"):
            changes.append(FaultTransition(name, "", False, 0))
    return changes
