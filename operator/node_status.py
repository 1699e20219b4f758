"""The node status the operator writes itself: pure functions.

Two cases where no kubelet keeps a simulated resource right:

- Fake nodes (KWOK's, annotated ``kwok.x-k8s.io/node: fake``) have no kubelet and run no
  plugin, so the operator writes each selecting SimulatedDevice's resource into their
  ``status.capacity`` and ``status.allocatable``: pools and Unhealthy faults apply as on a
  real node (the same rows as ``status.nodeDevices``), and the key goes once no object
  serves it any more.
- On real nodes the kubelet keeps a resource whose plugin went away at capacity 0 forever,
  once its 5-minute grace period is over (before that, capacity stays and allocatable is 0).
  Such a key is removed when it was a SimulatedDevice's and no object serves it there now.

Which keys were a SimulatedDevice's is recorded on the node itself, in the annotation
RESOURCES_ANNOTATION, so it survives operator restarts and never covers another plugin's
resource. The annotation and the status go in one patch of the node's status subresource
(which takes metadata too), so the record and the keys never disagree for long.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from simdev.operator.model import Device
from simdev.operator.observed import RESOURCES_ANNOTATION, NodeResources
from simdev.operator.simulation import node_rows
from simdev.plugin.faults import Clock


@dataclass(frozen=True)
class Served:
    """What one SimulatedDevice offers on one node: (capacity, allocatable)."""

    capacity: int
    allocatable: int


def served_on(
    nodes: Sequence[NodeResources], devices: Iterable[tuple[Device, Clock]], now: float
) -> dict[str, dict[str, Served]]:
    """By node name: the resources the given objects (in force, not conflicting) serve there.

    The counts are the ones a kubelet would report with a healthy plugin: pools and the
    faults active now applied, the same as the node's row in ``status.nodeDevices``. Each
    object's rows are computed for all nodes at once, its faults and pools parsed once.
    """
    served: dict[str, dict[str, Served]] = {n.name: {} for n in nodes}
    for device, clock in devices:
        for row in node_rows(device, nodes, {}, clock, now):
            if row.selected:
                served[row.name][device.spec.resource_name] = Served(
                    row.expected_capacity, row.expected_allocatable
                )
    return served


@dataclass(frozen=True)
class NodePatch:
    """The change one node's status needs: keys to write, keys to drop, the new record."""

    node: str
    write: Mapping[str, Served]
    remove: tuple[str, ...]
    recorded: frozenset[str]

    def as_merge_patch(self) -> dict[str, Any]:
        """A JSON merge patch for the node's status subresource (null removes a key)."""
        capacity: dict[str, str | None] = {r: str(s.capacity) for r, s in self.write.items()}
        allocatable: dict[str, str | None] = {r: str(s.allocatable) for r, s in self.write.items()}
        for resource in self.remove:
            capacity[resource] = None
            allocatable[resource] = None
        record = ",".join(sorted(self.recorded)) or None
        patch: dict[str, Any] = {"metadata": {"annotations": {RESOURCES_ANNOTATION: record}}}
        if capacity:
            patch["status"] = {"capacity": capacity, "allocatable": allocatable}
        return patch


def node_patch(node: NodeResources, served: Mapping[str, Served]) -> NodePatch | None:
    """What one node needs so that its status shows exactly what simdev serves there.

    None when nothing is to change. A real node's keys are the kubelet's to write: the
    operator only records them and, once the kubelet has zeroed one nobody serves, drops it.
    """
    write: dict[str, Served] = {}
    remove: list[str] = []
    recorded = set(node.recorded)
    if node.fake:
        for resource, want in served.items():
            have = Served(node.capacity.get(resource, -1), node.allocatable.get(resource, -1))
            if have != want:
                write[resource] = want
            recorded.add(resource)
        remove = sorted(
            r
            for r in node.recorded
            if r not in served and (r in node.capacity or r in node.allocatable)
        )
    else:
        # The kubelet reported it: a plugin of ours registered here.
        recorded.update(r for r in served if r in node.capacity)
        remove = sorted(
            r
            for r in node.recorded
            if r not in served and r in node.capacity and node.capacity[r] == 0
        )
    # A record is dropped with its key, or when the key is gone by other means.
    recorded -= set(remove)
    recorded = {r for r in recorded if r in served or r in node.capacity or r in write}
    if not write and not remove and recorded == node.recorded:
        return None
    return NodePatch(node.name, write, tuple(remove), frozenset(recorded))


def node_patches(
    nodes: Sequence[NodeResources], devices: Sequence[tuple[Device, Clock]], now: float
) -> list[NodePatch]:
    """The patches every given node needs; nodes already right are left out."""
    served = served_on(nodes, devices, now)
    patches = []
    for node in nodes:
        patch = node_patch(node, served[node.name])
        if patch is not None:
            patches.append(patch)
    return patches
