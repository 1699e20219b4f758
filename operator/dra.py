"""Pure builders for Dynamic Resource Allocation: a SimulatedDevice's DeviceClass and slices.

One ``resource.k8s.io/v1`` ResourceSlice pool per node and driver, named after the node,
holds the devices that the spec, the node's pool and the active faults give that node.
Unhealthy devices leave their slice: device taints (``spec.devices[].taints``) need the
DRADeviceTaints feature gate, alpha and off by default in Kubernetes 1.34, and an API
server without the gate drops the field, so a taint would silently do nothing.

The limits repeated here are the API server's own (``k8s.io/api/resource/v1``), so that
every object built passes its validation.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from simdev.operator.builders import common_labels
from simdev.operator.model import Device
from simdev.operator.observed import NodeResources
from simdev.operator.simulation import faults_of, node_counts, pools_of, selects
from simdev.plugin.devices import numa_node_of
from simdev.plugin.draids import device_name, device_uuid
from simdev.plugin.faults import UNHEALTHY, Clock, is_active
from simdev.plugin.pools import overlay, pool_for

RESOURCE_API = "resource.k8s.io/v1"
# ResourceSliceMaxDevices: a pool with more devices spans several slices.
MAX_DEVICES_PER_SLICE = 128
# ResourceSliceMaxAttributesAndCapacitiesPerDevice, of which the built-in ones take three.
MAX_ATTRIBUTES_AND_CAPACITIES = 32
BUILT_IN_ATTRIBUTES = ("index", "numaNode", "uuid")
# Object names are DNS subdomains of at most 253 characters; a slice name ends in "-<k>".
MAX_SLICE_BASE = 240
POOL_DIGEST_ANNOTATION = "simdev.io/pool-digest"


@dataclass(frozen=True)
class NodeDevices:
    """The DRA view of one node: which physical devices it offers now."""

    node: str
    indices: tuple[int, ...]
    count: int
    numa_nodes: int | None


def node_devices(
    device: Device, nodes: Iterable[NodeResources], clock: Clock, now: float
) -> list[NodeDevices]:
    """The devices of every node that spec.nodeSelector selects, real or fake alike.

    A node's pool sets its count and topology; devices an active Unhealthy fault hits are
    left out. PluginDown leaves the slices alone: the operator, not the plugin, publishes
    them, and a crashed driver's slices stay too.
    """
    faults = faults_of(device)
    pools = pools_of(device)
    found = []
    for node in sorted(nodes, key=lambda n: n.name):
        if not selects(device, node):
            continue
        pool = pool_for(pools, node.labels)
        count, _ = node_counts(device, pool)
        numa = overlay({"topology.numaNodes": device.spec.numa_nodes}, pool)["topology.numaNodes"]
        broken: set[int] = set()
        for f in faults:
            if f.type == UNHEALTHY and f.matches(node.labels) and is_active(f, clock, now):
                broken |= f.unhealthy_indices(node.name, count)
        healthy = tuple(i for i in range(count) if i not in broken)
        found.append(NodeDevices(node.name, healthy, count, None if numa is None else int(numa)))
    return found


def _attribute(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One typed attribute as the API takes it: exactly one of string, int, bool, version."""
    return {k: raw[k] for k in ("string", "int", "bool", "version") if k in raw}


def slice_device(device: Device, node: NodeDevices, index: int) -> dict[str, Any]:
    dra = device.spec.dra
    attributes: dict[str, Any] = {name: _attribute(value) for name, value in dra.attributes}
    attributes["index"] = {"int": index}
    attributes["uuid"] = {"string": device_uuid(dra.driver_name, node.node, index)}
    if node.numa_nodes is not None:
        attributes["numaNode"] = {"int": numa_node_of(index, node.count, node.numa_nodes)}
    entry: dict[str, Any] = {"name": device_name(index), "attributes": attributes}
    if dra.capacity:
        entry["capacity"] = {name: {"value": value} for name, value in dra.capacity}
    return entry


def slice_base_name(node: str, driver: str) -> str:
    """ "<node>-<driver>", shortened with a digest when it would make too long a name.

    The driver is part of the name because a slice's driver cannot change: a new driver
    name gets new slices, and the old ones are pruned.
    """
    base = f"{node}-{driver}"
    if len(base) <= MAX_SLICE_BASE:
        return base
    digest = hashlib.sha256(base.encode()).hexdigest()[:10]
    return f"{base[: MAX_SLICE_BASE - 11].rstrip('.-')}-{digest}"


def dra_labels(device: Device) -> dict[str, str]:
    return {**common_labels(device), "app.kubernetes.io/component": "dra-driver"}


def _metadata(device: Device, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "labels": dra_labels(device),
        "ownerReferences": [device.owner_reference()],
    }


def resource_slices(device: Device, node: NodeDevices, generation: int = 1) -> list[dict[str, Any]]:
    """The slices of one node's pool: at most 128 devices each, at least one slice.

    A node whose devices are all unhealthy keeps one empty slice, so that the scheduler
    sees a complete pool with nothing in it rather than a pool that is gone.
    """
    driver = device.spec.dra.driver_name
    devices = [slice_device(device, node, i) for i in node.indices]
    count = max(1, math.ceil(len(devices) / MAX_DEVICES_PER_SLICE))
    base = slice_base_name(node.node, driver)
    return [
        {
            "apiVersion": RESOURCE_API,
            "kind": "ResourceSlice",
            "metadata": _metadata(device, f"{base}-{k}"),
            "spec": {
                "driver": driver,
                "nodeName": node.node,
                "pool": {"name": node.node, "generation": generation, "resourceSliceCount": count},
                "devices": devices[k * MAX_DEVICES_PER_SLICE : (k + 1) * MAX_DEVICES_PER_SLICE],
            },
        }
        for k in range(count)
    ]


def device_class(device: Device) -> dict[str, Any]:
    """A DeviceClass named after the driver that selects every device of that driver.

    No extendedResourceName: the classic resource and the DRA devices are separate sets
    (see docs/dra.md), so a pod asking for the extended resource never lands on these.
    """
    driver = device.spec.dra.driver_name
    return {
        "apiVersion": RESOURCE_API,
        "kind": "DeviceClass",
        "metadata": _metadata(device, driver),
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]},
    }


def pool_digest(slices: Sequence[Mapping[str, Any]]) -> str:
    """A digest of what a pool publishes: its slices' names and specs, generation left out.

    Kept on every slice of the pool: the API server may rewrite quantities into their
    canonical form, so the live spec cannot be compared with the desired one as it is.
    """

    def without_generation(spec: Mapping[str, Any]) -> dict[str, Any]:
        pool = {k: v for k, v in spec["pool"].items() if k != "generation"}
        return {**spec, "pool": pool}

    content = {s["metadata"]["name"]: without_generation(s["spec"]) for s in slices}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _recorded_digest(obj: Mapping[str, Any]) -> str:
    return str((obj["metadata"].get("annotations") or {}).get(POOL_DIGEST_ANNOTATION, ""))


def pool_unchanged(desired: Sequence[Mapping[str, Any]], live: Sequence[Mapping[str, Any]]) -> bool:
    """The live slices are the desired ones already, all at one generation."""
    generations = {int(s["spec"]["pool"].get("generation") or 0) for s in live}
    digest = pool_digest(desired)
    return (
        len(generations) == 1
        and {s["metadata"]["name"] for s in live} == {s["metadata"]["name"] for s in desired}
        and all(_recorded_digest(s) == digest for s in live)
    )


def pool_generation(desired: Sequence[Mapping[str, Any]], live: Sequence[Mapping[str, Any]]) -> int:
    """The generation a pool's slices get: the live one when nothing changed, else one more.

    Consumers take only the slices of a pool's highest generation, so every change must
    raise it; an unchanged pool keeps it, so repeated reconciles write nothing.
    """
    highest = max((int(s["spec"]["pool"].get("generation") or 0) for s in live), default=0)
    return highest if pool_unchanged(desired, live) else highest + 1


@dataclass(frozen=True)
class DraObjects:
    """Everything one SimulatedDevice publishes for DRA (empty when spec.dra is off)."""

    device_class: dict[str, Any] | None
    # By pool (node) name: the pool's slices, generation 1 until pool_generation decides.
    pools: Mapping[str, list[dict[str, Any]]]


def desired(device: Device, nodes: Iterable[NodeResources], clock: Clock, now: float) -> DraObjects:
    if not device.spec.dra.enabled:
        return DraObjects(None, {})
    pools = {n.node: resource_slices(device, n) for n in node_devices(device, nodes, clock, now)}
    return DraObjects(device_class(device), pools)


def with_generation(slices: Sequence[Mapping[str, Any]], generation: int) -> list[dict[str, Any]]:
    """The pool's slices as they are written: at generation, with the pool's digest."""
    digest = {POOL_DIGEST_ANNOTATION: pool_digest(slices)}
    return [
        {
            **s,
            "metadata": {**s["metadata"], "annotations": digest},
            "spec": {**s["spec"], "pool": {**s["spec"]["pool"], "generation": generation}},
        }
        for s in slices
    ]
