"""Live simulation on the real local cluster: resizes and faults reach the running plugins.

Every test checks that no plugin pod was replaced or restarted: the plugins follow their
SimulatedDevice through the API. The kubelet reports device changes in the Node's status on
its node-status period (10 s), so waits allow that plus a margin.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from clusterlib import Cluster, pod_resources_socket, wait_for
from devices import (
    Devices,
    capacity,
    patch_spec,
    plugin_logs,
    plugin_pods,
    pod_status,
    run_consumer,
    start_pod,
    unique,
)
from simdev.plugin.podresources import list_pod_devices

pytestmark = pytest.mark.e2e

NAMESPACE = "simdev-live-e2e"
# The kubelet's node-status period plus the 5 s the issue allows.
FOLLOW_SECONDS = 15


def start(devices: Devices, prefix: str, **spec: Any) -> tuple[str, str]:
    name = unique(prefix)
    resource = f"live.simdev.io/{name}"
    devices.create(name, namespace=NAMESPACE, resourceName=resource, **spec)
    devices.wait_ready(name)
    return name, resource


def allocatable_is(cluster: Cluster, resource: str, count: int) -> bool:
    return all(v == count for v in cluster.allocatable(resource).values())


def node_rows(devices: Devices, name: str) -> dict[str, dict[str, Any]]:
    rows = devices.get(name).get("status", {}).get("nodeDevices") or []
    return {r["name"]: r for r in rows}


def test_resize_follows_without_restarting_plugins(devices: Devices) -> None:
    cluster = devices.cluster
    name, resource = start(devices, "live-resize", numberDevices=6)
    cluster.wait_allocatable(resource, 6)
    pods = plugin_pods(devices, name)
    ds_generation = devices.owned("daemonsets", name)[0]["metadata"]["generation"]
    for size in (9, 4):
        patch_spec(cluster, name, numberDevices=size)
        cluster.wait_allocatable(resource, size, timeout=FOLLOW_SECONDS)
        devices.wait_ready(name)
    assert plugin_pods(devices, name) == pods
    assert devices.owned("daemonsets", name)[0]["metadata"]["generation"] == ds_generation


def test_unhealthy_devices_leave_allocatable_and_come_back(devices: Devices) -> None:
    cluster = devices.cluster
    name, resource = start(devices, "live-sick", numberDevices=6)
    cluster.wait_allocatable(resource, 6)
    pods = plugin_pods(devices, name)

    fault = {"name": "two-sick", "type": "Unhealthy", "devices": {"count": 2}}
    patch_spec(cluster, name, faults=[fault])
    cluster.wait_allocatable(resource, 4, timeout=FOLLOW_SECONDS)
    assert set(capacity(cluster, resource).values()) == {6}
    obj = devices.wait_counted(name, "unhealthy", 2 * len(cluster.nodes()))
    for row in node_rows(devices, name).values():
        assert (row["capacity"], row["allocatable"], row["activeFaults"]) == (6, 4, ["two-sick"])
    (entry,) = obj["status"]["faults"]
    assert entry["name"] == "two-sick" and entry["active"] is True

    patch_spec(cluster, name, faults=[])
    cluster.wait_allocatable(resource, 6, timeout=FOLLOW_SECONDS)
    wait_for(
        "the node rows to show the fault cleared",
        lambda: all(
            (r["allocatable"], r["activeFaults"]) == (6, [])
            for r in node_rows(devices, name).values()
        ),
        timeout=FOLLOW_SECONDS,
    )
    assert plugin_pods(devices, name) == pods
    reasons = [
        e["reason"]
        for e in cluster.get_json(
            "events", "-A", "--field-selector", f"involvedObject.name={name}"
        )["items"]
    ]
    # One Event per transition, however many nodes.
    assert reasons.count("FaultActive") == 1 and reasons.count("FaultCleared") == 1


def test_a_flapping_fault_goes_and_comes_back_twice(devices: Devices) -> None:
    cluster = devices.cluster
    flap = {
        "name": "flap",
        "type": "Unhealthy",
        "devices": {"count": 1},
        "schedule": {"duration": "20s", "every": "40s"},
    }
    name, resource = start(devices, "live-flap", numberDevices=3)
    cluster.wait_allocatable(resource, 3)
    pods = plugin_pods(devices, name)
    patch_spec(cluster, name, faults=[flap])
    # Each node's plugin flaps on its own: follow every node's count.
    seen: dict[str, list[int]] = {node: [] for node in cluster.allocatable(resource)}
    deadline = time.monotonic() + 140
    while time.monotonic() < deadline and any(len(s) < 4 for s in seen.values()):
        for node, value in cluster.allocatable(resource).items():
            counts = seen[node]
            if not counts or counts[-1] != value:
                counts.append(value)
            if counts == [3]:
                counts.clear()  # before the fault arrived
        time.sleep(1)
    # Unhealthy, healthy, unhealthy, healthy: at least two full flaps on every node.
    for node, counts in seen.items():
        assert counts[:4] == [2, 3, 2, 3], (node, counts)
    assert plugin_pods(devices, name) == pods


def test_allocate_error_fails_the_pod_and_names_the_fault(devices: Devices) -> None:
    cluster = devices.cluster
    boom = {"name": "boom", "type": "AllocateError", "code": "UNAVAILABLE"}
    name, resource = start(devices, "live-error", numberDevices=2, faults=[boom])
    cluster.wait_allocatable(resource, 2)
    pod = start_pod(cluster, NAMESPACE, resource, 1, "true")

    failed = wait_for(
        f"pod {pod} to be refused at admission",
        lambda: (s := pod_status(cluster, NAMESPACE, pod)).get("phase") == "Failed" and s,
        timeout=60,
    )
    assert failed["reason"] == "UnexpectedAdmissionError"
    assert "'boom'" in failed["message"], failed

    patch_spec(cluster, name, faults=[])
    # The plugin takes the change within seconds; then a new consumer runs to completion.
    time.sleep(2)
    assert "PATH=" in run_consumer(cluster, NAMESPACE, resource, 1)


def test_allocate_delay_slows_the_pod_down(devices: Devices) -> None:
    cluster = devices.cluster
    slow = {"name": "slow", "type": "AllocateDelay", "delay": "5s"}
    name, resource = start(devices, "live-slow", numberDevices=2, faults=[slow])
    cluster.wait_allocatable(resource, 2)
    began = time.monotonic()
    run_consumer(cluster, NAMESPACE, resource, 1)
    assert time.monotonic() - began >= 5
    # The consumer ran on one node: its plugin delayed the call.
    logs = plugin_logs(devices, name)
    assert any(
        re.search(r'"msg": "delaying Allocate".*"fault": "slow"', log) for log in logs.values()
    ), logs


def test_plugin_down_takes_every_device_away_for_a_while(devices: Devices) -> None:
    cluster = devices.cluster
    name, resource = start(devices, "live-down", numberDevices=3)
    cluster.wait_allocatable(resource, 3)
    pods = plugin_pods(devices, name)
    patch_spec(
        cluster,
        name,
        faults=[{"name": "crash", "type": "PluginDown", "schedule": {"duration": "20s"}}],
    )
    cluster.wait_allocatable(resource, 0, timeout=FOLLOW_SECONDS)
    cluster.wait_allocatable(resource, 3, timeout=20 + FOLLOW_SECONDS)
    assert plugin_pods(devices, name) == pods
    # Every node's plugin went down and came back.
    for node, log in plugin_logs(devices, name).items():
        assert "going down on request" in log and "re-registered" in log, node


def test_allocated_matches_the_kubelets_pod_resources(devices: Devices) -> None:
    cluster = devices.cluster
    if not cluster.local:
        pytest.skip("reads the local cluster's kubelet socket")
    name, resource = start(devices, "live-held", numberDevices=4)
    cluster.wait_allocatable(resource, 4)
    holders = [start_pod(cluster, NAMESPACE, resource, n) for n in (1, 2)]
    wait_for(
        "the holder pods to run",
        lambda: all(pod_status(cluster, NAMESPACE, p).get("phase") == "Running" for p in holders),
        timeout=60,
    )

    def held_per_node() -> dict[str, int]:
        """Node -> devices its kubelet says its pods hold."""
        held = {}
        for node in cluster.nodes():
            listed = list_pod_devices(pod_resources_socket(node["metadata"]["name"]))
            held[node["metadata"]["name"]] = sum(len(v.get(resource, [])) for v in listed.values())
        return held

    def held_by_kubelet() -> int:
        return sum(held_per_node().values())

    assert held_by_kubelet() == 3
    held = held_per_node()
    wait_for(
        "status.nodeDevices[].allocated to match each node's pod-resources",
        lambda: {n: r["allocated"] for n, r in node_rows(devices, name).items()} == held,
        timeout=30,
    )
    assert devices.get(name)["status"]["devices"]["allocated"] == 3
    cluster.kubectl("delete", "pod", "-n", NAMESPACE, holders[1], "--wait=true")
    assert held_by_kubelet() == 1
    wait_for(
        "allocated to drop with the deleted pod",
        lambda: devices.get(name)["status"]["devices"]["allocated"] == 1,
        timeout=30,
    )
