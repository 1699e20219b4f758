"""The operator's view of the simulation: node rows, fault clocks, status size and Events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from simdev.operator.model import Device
from simdev.operator.observed import NodeResources, PodDevices, allocated_on
from simdev.operator.simulation import (
    MAX_NODE_ROWS,
    fault_clock,
    fault_entries,
    listed_rows,
    next_fault_change,
    node_rows,
)
from simdev.operator.status import fault_events

DeviceFactory = Callable[..., Device]
RES = "example.com/simple-device"
NOW = 2_000_000_000.0


def node(name: str, capacity: int, allocatable: int, **labels: str) -> NodeResources:
    return NodeResources(name, {RES: capacity}, {RES: allocatable}, labels)


def unhealthy(name: str = "two", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "Unhealthy", "devices": {"count": 2}, **extra}


def rows_for(d: Device, nodes: list[NodeResources], now: float = NOW) -> list[Any]:
    clock = fault_clock(d, d.status, now)
    return node_rows(d, nodes, {"n1": 1}, clock, now)


def test_rows_expect_what_faults_take_away(device: DeviceFactory) -> None:
    d = device(numberDevices=6, faults=[unhealthy(nodeSelector={"zone": "a"})])
    n1, n2 = node("n1", 6, 4, zone="a"), node("n2", 6, 6, zone="b")
    r1, r2 = rows_for(d, [n1, n2])
    assert (r1.expected_allocatable, r1.active_faults, r1.allocated) == (4, ("two",), 1)
    assert r1.as_expected and r2.as_expected
    assert (r2.expected_allocatable, r2.active_faults, r2.allocated) == (6, (), 0)


def test_replicas_multiply_capacity_and_what_faults_take(device: DeviceFactory) -> None:
    d = device(numberDevices=4, sharing={"replicas": 3}, faults=[unhealthy()])
    (row,) = rows_for(d, [node("n1", 12, 6)])
    # Two physical devices unhealthy: all their replicas go.
    assert (row.expected_capacity, row.expected_allocatable) == (12, 6)
    assert row.as_expected


def test_plugin_down_expects_nothing_allocatable(device: DeviceFactory) -> None:
    d = device(numberDevices=3, faults=[{"name": "crash", "type": "PluginDown"}])
    (row,) = rows_for(d, [node("n1", 3, 3)])
    assert row.expected_allocatable == 0 and not row.as_expected


def test_unselected_nodes_show_only_while_they_still_report_the_resource(
    device: DeviceFactory,
) -> None:
    d = device(nodeSelector={"gpu": "yes"})
    stale = node("old", 2, 0)
    other = NodeResources("plain", {}, {}, {})
    (row,) = rows_for(d, [stale, other, node("new", 2, 2, gpu="yes")])[:1]
    assert (row.name, row.expected_capacity) == ("old", 0)


def test_listing_puts_nodes_off_spec_first_and_caps_the_size(device: DeviceFactory) -> None:
    d = device(numberDevices=8, faults=[unhealthy(nodeSelector={"flaky": "true"})])
    nodes = [node(f"n{i:05d}", 8, 8) for i in range(5000)]
    nodes[4321] = node("n04321", 8, 6, flaky="true")
    listed, omitted = listed_rows(rows_for(d, nodes))
    assert len(listed) == MAX_NODE_ROWS and omitted == 5000 - MAX_NODE_ROWS
    assert listed[0]["name"] == "n04321" and listed[0]["activeFaults"] == ["two"]
    # The documented bound: the status stays well under 512 KiB at 5,000 nodes.
    assert len(json.dumps(listed)) < 512 * 1024 // 2


def test_fault_clock_is_kept_while_the_definition_is(device: DeviceFactory) -> None:
    flap = unhealthy(schedule={"duration": "20s", "every": "40s"})
    d = device(faults=[flap])
    clock = fault_clock(d, {}, NOW)
    (entry,) = fault_entries(d, clock, [], NOW)
    assert entry["active"] and entry["since"].endswith("Z")
    later = device(faults=[flap], status={"faults": [entry]})
    (again,) = fault_entries(later, fault_clock(later, later.status, NOW + 25), [], NOW + 25)
    assert again["since"] == entry["since"] and not again["active"]
    assert next_fault_change(later, later.status, NOW + 25) == NOW + 40
    edited = device(faults=[{**flap, "seed": 3}], status={"faults": [entry]})
    (fresh,) = fault_entries(edited, fault_clock(edited, edited.status, NOW + 25), [], NOW + 25)
    assert fresh["since"] != entry["since"] and fresh["active"]


def test_one_event_per_fault_transition_whatever_the_node_count(device: DeviceFactory) -> None:
    d = device(faults=[unhealthy()])
    off = {"faults": [{"name": "two", "active": False, "nodes": 0}]}
    on = {"faults": [{"name": "two", "active": True, "nodes": 500}]}
    (event,) = fault_events(d, off, on)
    assert (event.type, event.reason) == ("Warning", "FaultActive")
    assert "two (Unhealthy) is active on 500 nodes" in event.message
    assert fault_events(d, on, on) == []
    (cleared,) = fault_events(d, on, off)
    assert cleared.reason == "FaultCleared"
    (removed,) = fault_events(device(), on, {"faults": []})
    assert removed.reason == "FaultCleared"


def test_allocated_counts_unfinished_pods_per_node() -> None:
    body = {
        "spec": {
            "nodeName": "n1",
            "containers": [
                {"resources": {"limits": {RES: "2", "cpu": "1"}}},
                {"resources": {"requests": {RES: "1"}}},
            ],
            "initContainers": [{"resources": {"limits": {RES: "5"}}}],
        },
        "status": {"phase": "Running"},
    }
    pod = PodDevices.from_body({**body, "metadata": {"namespace": "ns", "name": "p", "uid": "u"}})
    assert pod == PodDevices("n1", {RES: 5}, ref="ns/p", uid="u")
    done = {**body, "status": {"phase": "Succeeded"}}
    assert PodDevices.from_body(done) is None
    assert PodDevices.from_body({"spec": {"containers": []}}) is None
    pods = [pod, PodDevices("n1", {RES: 1}), PodDevices("n2", {"other.io/x": 3})]
    assert allocated_on(RES, pods) == {"n1": 6}


# Node pools: each node expects its pool's count, by the plugins' first-match rule.

POOLS = [
    {"name": "big", "nodeSelector": {"size": "big"}, "numberDevices": 8},
    {
        "name": "shared",
        "nodeSelector": {"size": "big", "shared": "yes"},
        "sharing": {"replicas": 4},
    },
    {"name": "shared-only", "nodeSelector": {"shared": "yes"}, "sharing": {"replicas": 4}},
]


def test_rows_expect_each_nodes_pool(device: DeviceFactory) -> None:
    d = device(numberDevices=2, sharing={"replicas": 2}, nodePools=POOLS)
    nodes = [
        node("n1", 16, 16, size="big", shared="yes"),  # big comes first: 8 x 2
        node("n2", 8, 8, shared="yes"),  # 2 x 4
        node("n3", 4, 4),  # no pool: 2 x 2
    ]
    rows = {r.name: r for r in rows_for(d, nodes)}
    assert {n: (r.pool, r.expected_capacity) for n, r in rows.items()} == {
        "n1": ("big", 16),
        "n2": ("shared-only", 8),
        "n3": ("", 4),
    }
    assert all(r.as_expected for r in rows.values())
    assert rows["n1"].as_status()["pool"] == "big"
    # The top level's rows look as they did before pools.
    assert "pool" not in rows["n3"].as_status()


def test_faults_pick_from_the_nodes_own_devices(device: DeviceFactory) -> None:
    sick = {"name": "last", "type": "Unhealthy", "devices": {"indices": [7]}}
    d = device(numberDevices=2, nodePools=POOLS[:1], faults=[sick])
    big, plain = rows_for(d, [node("n1", 8, 7, size="big"), node("n2", 2, 2)])
    assert (big.expected_allocatable, big.active_faults) == (7, ("last",))
    # Device 7 does not exist on a top-level node: the fault is active, nothing is lost.
    assert (plain.expected_allocatable, plain.active_faults) == (2, ("last",))


def test_nodes_outside_the_selector_belong_to_no_pool(device: DeviceFactory) -> None:
    d = device(nodeSelector={"gpu": "yes"}, nodePools=POOLS[:1])
    (stale,) = rows_for(d, [node("old", 8, 0, size="big")])
    assert (stale.pool, stale.expected_capacity, stale.selected) == ("", 0, False)
