"""The node status the operator writes: fake nodes' resources and stale kubelet keys."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from simdev.operator.model import Device
from simdev.operator.node_status import Served, node_patch, node_patches, served_on
from simdev.operator.node_sync import in_force
from simdev.operator.observed import RESOURCES_ANNOTATION, NodeResources
from simdev.operator.simulation import fault_clock
from simdev.operator.world import World

DeviceFactory = Callable[..., Device]
GPU = "example.com/gpu"
NIC = "example.com/nic"
OTHER = "vendor.io/real-thing"
NOW = 2_000_000_000.0


def fake(
    name: str = "kwok-node-0",
    res: Mapping[str, int] | None = None,
    labels: Mapping[str, str] | None = None,
) -> NodeResources:
    res = dict(res or {})
    return NodeResources(name, res, res, {"type": "kwok", **(labels or {})}, fake=True)


def recorded(node: NodeResources, *resources: str) -> NodeResources:
    """The same node with the operator's record naming resources."""
    return dataclasses.replace(node, recorded=frozenset(resources))


def clocked(*devices: Device) -> list[tuple[Device, Any]]:
    return [(d, fault_clock(d, d.status, NOW)) for d in devices]


def test_node_reads_kwoks_mark_and_the_record_from_annotations() -> None:
    body = {
        "metadata": {
            "name": "kwok-node-1",
            "labels": {"type": "kwok"},
            "annotations": {
                "kwok.x-k8s.io/node": "fake",
                RESOURCES_ANNOTATION: f"{GPU}, {NIC},",
                "other": "x" * 1000,
            },
        },
        "status": {"capacity": {GPU: "4", "cpu": "32"}, "allocatable": {GPU: "3"}},
    }
    node = NodeResources.from_body(body)
    assert (node.fake, node.recorded) == (True, frozenset({GPU, NIC}))
    assert (dict(node.capacity), dict(node.allocatable)) == ({GPU: 4}, {GPU: 3})
    assert not NodeResources.from_body({"metadata": {"name": "real"}}).fake


def test_a_fake_node_gets_every_selecting_objects_resource(device: DeviceFactory) -> None:
    gpu = device("gpu", resourceName=GPU, numberDevices=4)
    nic = device("nic", resourceName=NIC, numberDevices=2, nodeSelector={"nic": "yes"})
    patch = node_patch(fake(), served_on([fake()], clocked(gpu, nic), NOW)["kwok-node-0"])
    assert patch is not None
    assert patch.as_merge_patch() == {
        "metadata": {"annotations": {RESOURCES_ANNOTATION: GPU}},
        "status": {"capacity": {GPU: "4"}, "allocatable": {GPU: "4"}},
    }
    # Once written, nothing more is to do.
    assert node_patch(recorded(fake(res={GPU: 4}), GPU), {GPU: Served(4, 4)}) is None


def test_pools_and_unhealthy_faults_lower_a_fake_nodes_allocatable(device: DeviceFactory) -> None:
    pools = [{"name": "big", "nodeSelector": {"size": "big"}, "numberDevices": 8}]
    sick = {
        "name": "two",
        "type": "Unhealthy",
        "devices": {"count": 2},
        "nodeSelector": {"zone": "a"},
    }
    d = device(
        resourceName=GPU, numberDevices=2, sharing={"replicas": 2}, nodePools=pools, faults=[sick]
    )
    served = {
        n: served_on([fake(n, labels=labels)], clocked(d), NOW)[n][GPU]
        for n, labels in {"big-a": {"size": "big", "zone": "a"}, "plain": {}}.items()
    }
    # 8 devices x 2 replicas, 2 devices broken; the top level: 2 x 2, healthy.
    assert served == {"big-a": Served(16, 12), "plain": Served(4, 4)}


def test_allocate_time_faults_leave_a_fake_node_as_it_is(device: DeviceFactory) -> None:
    failing = {"name": "fail", "type": "AllocateError", "message": "no"}
    d = device(resourceName=GPU, numberDevices=3, faults=[failing])
    assert served_on([fake()], clocked(d), NOW) == {"kwok-node-0": {GPU: Served(3, 3)}}


def test_a_resource_nobody_serves_leaves_a_fake_node(device: DeviceFactory) -> None:
    node = recorded(fake(res={GPU: 4, NIC: 2}), GPU, NIC)
    nic = device("nic", resourceName=NIC, numberDevices=2)
    patch = node_patch(node, served_on([node], clocked(nic), NOW)[node.name])
    assert patch is not None
    assert patch.as_merge_patch() == {
        "metadata": {"annotations": {RESOURCES_ANNOTATION: NIC}},
        "status": {"capacity": {GPU: None}, "allocatable": {GPU: None}},
    }
    # With no object at all the record goes too.
    empty = node_patch(node, {})
    assert empty is not None and empty.as_merge_patch()["metadata"]["annotations"] == {
        RESOURCES_ANNOTATION: None
    }


def test_another_plugins_resource_is_never_touched(device: DeviceFactory) -> None:
    node = recorded(fake(res={OTHER: 0}))
    assert node_patch(node, {}) is None
    real = NodeResources("real", {OTHER: 0}, {OTHER: 0})
    assert node_patch(real, {}) is None


def test_a_real_node_records_what_its_kubelet_reports_of_ours(device: DeviceFactory) -> None:
    d = device(resourceName=GPU, numberDevices=2)
    before = NodeResources("real", {}, {})
    # The plugin has not registered yet: nothing is recorded, nothing written.
    assert node_patch(before, served_on([before], clocked(d), NOW)["real"]) is None
    after = NodeResources("real", {GPU: 2, OTHER: 1}, {GPU: 2, OTHER: 1})
    patch = node_patch(after, served_on([after], clocked(d), NOW)["real"])
    assert patch is not None
    # The kubelet's keys are the kubelet's: only the record is written.
    assert patch.as_merge_patch() == {"metadata": {"annotations": {RESOURCES_ANNOTATION: GPU}}}


def test_a_stale_key_goes_only_once_the_kubelet_zeroed_it() -> None:
    # Within the grace period the kubelet keeps capacity and drops allocatable: left alone.
    grace = recorded(NodeResources("real", {GPU: 2}, {GPU: 0}), GPU)
    assert node_patch(grace, {}) is None
    zeroed = recorded(NodeResources("real", {GPU: 0, OTHER: 0}, {GPU: 0, OTHER: 0}), GPU)
    patch = node_patch(zeroed, {})
    assert patch is not None
    assert patch.as_merge_patch() == {
        "metadata": {"annotations": {RESOURCES_ANNOTATION: None}},
        "status": {"capacity": {GPU: None}, "allocatable": {GPU: None}},
    }


def test_a_zeroed_key_that_is_served_again_stays(device: DeviceFactory) -> None:
    node = recorded(NodeResources("real", {GPU: 0}, {GPU: 0}), GPU)
    d = device(resourceName=GPU)
    assert node_patch(node, served_on([node], clocked(d), NOW)[node.name]) is None


def test_deleting_and_conflicting_objects_serve_nothing(device: DeviceFactory) -> None:
    first = device("a", resourceName=GPU, created="2030-01-01T00:00:00Z")
    second = device("b", resourceName=GPU, created="2030-01-02T00:00:00Z", numberDevices=9)
    gone = device("c", resourceName=NIC, deleting=True)
    world = World(devices={"a": first, "b": second, "c": gone})
    kept = in_force(world, lambda d: d.status, NOW)
    assert [d.name for d, _ in kept] == ["a"]
    patches = node_patches([fake("f1"), NodeResources("real", {}, {})], kept, NOW)
    assert [(p.node, dict(p.write)) for p in patches] == [("f1", {GPU: Served(2, 2)})]
