"""Snapshots of what the operator observes on the cluster: plugin DaemonSets and Nodes.

Kopf indexes keep these small, immutable summaries instead of whole objects (a Node's status
alone lists every image on it), and the status builder reads nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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


# The resources of SimulatedDevices a node offered, written there by the operator: the
# record that lets it drop such a key later and never another plugin's (node_status.py).
RESOURCES_ANNOTATION = "simdev.io/resources"
# KWOK's mark of the fake nodes it keeps alive: no kubelet runs there.
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAKE_NODE_VALUE = "fake"
# The label fake nodes carry (cluster/lib/kwok.sh): what scheduling rules can see of them.
FAKE_NODE_LABEL = ("type", "kwok")


def recorded_resources(annotations: Mapping[str, str]) -> frozenset[str]:
    """The resources a node's record names (comma-separated; blanks ignored)."""
    raw = annotations.get(RESOURCES_ANNOTATION) or ""
    return frozenset(r.strip() for r in raw.split(",") if r.strip())


def is_fake(annotations: Mapping[str, str]) -> bool:
    return annotations.get(FAKE_NODE_ANNOTATION) == FAKE_NODE_VALUE


def _count(value: Any) -> int:
    # Device plugins advertise whole devices, which the kubelet reports as plain integers.
    try:
        return int(str(value))
    except ValueError:
        return 0


@dataclass(frozen=True)
class NodeResources:
    """The extended resources one Node reports (names with a domain, e.g. example.com/x).

    Labels are kept too: fault node selectors match on them. Of the annotations only two
    facts are: whether KWOK fakes the node, and which resources were a SimulatedDevice's
    (see node_status.py).
    """

    name: str
    capacity: Mapping[str, int]
    allocatable: Mapping[str, int]
    labels: Mapping[str, str] = field(default_factory=dict)
    uid: str = ""
    fake: bool = False
    recorded: frozenset[str] = frozenset()

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> NodeResources:
        status = body.get("status") or {}
        meta = body.get("metadata") or {}
        annotations = meta.get("annotations") or {}

        def extended(section: str) -> dict[str, int]:
            values = status.get(section) or {}
            return {k: _count(v) for k, v in values.items() if "/" in k}

        return cls(
            name=str(meta.get("name", "")),
            capacity=extended("capacity"),
            allocatable=extended("allocatable"),
            labels=dict(meta.get("labels") or {}),
            uid=str(meta.get("uid", "")),
            fake=is_fake(annotations),
            recorded=recorded_resources(annotations),
        )


FINISHED_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class PodDevices:
    """The extended resources one unfinished, scheduled Pod holds on its node."""

    node: str
    held: Mapping[str, int]
    # "namespace/name" and uid: what the audit compares with the API's list.
    ref: str = ""
    uid: str = ""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodDevices | None:
        """None for a Pod that holds no device: unscheduled, finished, or asking for none."""
        spec = body.get("spec") or {}
        node = spec.get("nodeName")
        if not node or (body.get("status") or {}).get("phase") in FINISHED_PHASES:
            return None
        held = requested_devices(spec)
        if not held:
            return None
        meta = body.get("metadata") or {}
        ref = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        return cls(node=str(node), held=held, ref=ref, uid=str(meta.get("uid", "")))


def requested_devices(pod_spec: Mapping[str, Any]) -> dict[str, int]:
    """The extended resources a pod spec asks for (what the kubelet allocates it)."""

    def wants(container: Mapping[str, Any]) -> dict[str, int]:
        # Extended resources must have requests equal to limits; either may be given.
        res = container.get("resources") or {}
        merged = {**(res.get("requests") or {}), **(res.get("limits") or {})}
        return {k: _count(v) for k, v in merged.items() if "/" in k}

    held: dict[str, int] = {}
    for c in pod_spec.get("containers") or ():
        for k, v in wants(c).items():
            held[k] = held.get(k, 0) + v
    # Init containers run one at a time before the others, so the pod holds their maximum
    # when that is larger than what the app containers need together.
    for c in pod_spec.get("initContainers") or ():
        for k, v in wants(c).items():
            held[k] = max(held.get(k, 0), v)
    return {k: v for k, v in held.items() if v > 0}


def allocated_on(resource: str, pods: Iterable[PodDevices]) -> dict[str, int]:
    """Devices of one resource held by unfinished pods, by node."""
    held: dict[str, int] = {}
    for pod in pods:
        count = pod.held.get(resource, 0)
        if count:
            held[pod.node] = held.get(pod.node, 0) + count
    return held


@dataclass(frozen=True)
class DeviceTotals:
    """One resource summed over all nodes.

    nodes counts the nodes that can hand out at least one device right now: once a plugin
    stops, the kubelet keeps the resource in capacity but drops its allocatable to zero.
    unhealthy is what the kubelet holds back: capacity minus allocatable.
    """

    nodes: int = 0
    capacity: int = 0
    allocatable: int = 0
    allocated: int = 0

    @property
    def unhealthy(self) -> int:
        return self.capacity - self.allocatable

    @classmethod
    def of(
        cls,
        resource: str,
        nodes: Iterable[NodeResources],
        allocated: Mapping[str, int] | None = None,
    ) -> DeviceTotals:
        nodes = list(nodes)
        return cls(
            nodes=sum(1 for n in nodes if n.allocatable.get(resource, 0) > 0),
            capacity=sum(n.capacity.get(resource, 0) for n in nodes),
            allocatable=sum(n.allocatable.get(resource, 0) for n in nodes),
            allocated=sum((allocated or {}).values()),
        )

    def as_status(self) -> dict[str, int]:
        return {
            "nodes": self.nodes,
            "capacity": self.capacity,
            "allocatable": self.allocatable,
            "allocated": self.allocated,
            "unhealthy": self.unhealthy,
        }
