"""Snapshots of what the operator observes on the cluster: plugin DaemonSets and Nodes.

Kopf indexes keep these small, immutable summaries instead of whole objects (a Node's status
alone lists every image on it), and the status builder reads nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DaemonSetState:
    namespace: str
    name: str
    generation: int
    observed_generation: int
    desired: int
    ready: int
    updated: int
    available: int
    deleting: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> DaemonSetState:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            desired=int(status.get("desiredNumberScheduled") or 0),
            ready=int(status.get("numberReady") or 0),
            updated=int(status.get("updatedNumberScheduled") or 0),
            available=int(status.get("numberAvailable") or 0),
            deleting=bool(meta.get("deletionTimestamp")),
        )

    @property
    def rolled_out(self) -> bool:
        """The controller has seen the latest spec and every scheduled pod runs it, ready."""
        return (
            self.observed_generation >= self.generation
            and self.updated == self.desired
            and self.ready == self.desired
            and self.available == self.desired
        )


def _count(value: Any) -> int:
    # Device plugins advertise whole devices, which the kubelet reports as plain integers.
    try:
        return int(str(value))
    except ValueError:
        return 0


@dataclass(frozen=True)
class NodeResources:
    """The extended resources one Node reports (names with a domain, e.g. example.com/x)."""

    name: str
    capacity: Mapping[str, int]
    allocatable: Mapping[str, int]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> NodeResources:
        status = body.get("status") or {}

        def extended(section: str) -> dict[str, int]:
            values = status.get(section) or {}
            return {k: _count(v) for k, v in values.items() if "/" in k}

        return cls(
            name=str((body.get("metadata") or {}).get("name", "")),
            capacity=extended("capacity"),
            allocatable=extended("allocatable"),
        )


@dataclass(frozen=True)
class DeviceTotals:
    """One resource summed over all nodes.

    nodes counts the nodes that can hand out at least one device right now: once a plugin
    stops, the kubelet keeps the resource in capacity but drops its allocatable to zero.
    """

    nodes: int = 0
    capacity: int = 0
    allocatable: int = 0

    @classmethod
    def of(cls, resource: str, nodes: Iterable[NodeResources]) -> DeviceTotals:
        nodes = list(nodes)
        return cls(
            nodes=sum(1 for n in nodes if n.allocatable.get(resource, 0) > 0),
            capacity=sum(n.capacity.get(resource, 0) for n in nodes),
            allocatable=sum(n.allocatable.get(resource, 0) for n in nodes),
        )

    def as_status(self) -> dict[str, int]:
        return {"nodes": self.nodes, "capacity": self.capacity, "allocatable": self.allocatable}
