"""Topology, allocation policies and sharing on the real local cluster.

The kubelet asks the plugin for its preferred devices (GetPreferredAllocation) and the
consumer pods print the environment Allocate gave them, so each test sees what a workload
would. The local kubelet runs the topology manager policy none: simulated NUMA nodes never
make it refuse a pod.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from clusterlib import Cluster, wait_for
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

pytestmark = pytest.mark.e2e

NAMESPACE = "simdev-topology-e2e"
ENV = "SIM"
# The kubelet's node-status period plus a margin.
FOLLOW_SECONDS = 15


def start(devices: Devices, prefix: str, **spec: Any) -> tuple[str, str]:
    name = unique(prefix)
    resource = f"topology.simdev.io/{name}"
    devices.create(
        name, namespace=NAMESPACE, resourceName=resource, envPrefix=ENV, deviceIdPrefix="d", **spec
    )
    devices.wait_ready(name)
    return name, resource


def env_of(log: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in log.splitlines() if "=" in line)


def indices(visible: str) -> list[int]:
    """Device indices from <ENV>_VISIBLE_DEVICES (IDs are d-<node>-<index>)."""
    return sorted(int(i.rsplit("-", 1)[1]) for i in visible.split(","))


def pod_node(cluster: Cluster, pod: str) -> str:
    node: str = cluster.get_json("pod", "-n", NAMESPACE, pod)["spec"]["nodeName"]
    return node


def held_env(cluster: Cluster, pod: str) -> dict[str, str]:
    """The environment a running holder pod printed before it went to sleep."""
    return wait_for(
        f"pod {pod} to print its environment",
        lambda: env if f"{ENV}_VISIBLE_DEVICES" in (env := env_of(logs(cluster, pod))) else None,
        timeout=60,
    )


def logs(cluster: Cluster, pod: str) -> str:
    proc = cluster.kubectl("logs", "-n", NAMESPACE, pod, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def test_numa_aligned_gives_a_pod_of_four_one_whole_numa_node(devices: Devices) -> None:
    cluster = devices.cluster
    _name, resource = start(
        devices,
        "numa-aligned",
        numberDevices=8,
        topology={"numaNodes": 2},
        allocationPolicy="NUMAAligned",
    )
    cluster.wait_allocatable(resource, 8)
    # One device held first, so the lowest indices no longer make a whole NUMA node.
    holder = start_pod(cluster, NAMESPACE, resource, 1, "env | sort; sleep 3600")
    held = held_env(cluster, holder)
    (held_node,) = held[f"{ENV}_NUMA_NODES"].split(",")

    # On the holder's node, where one device is gone.
    node = pod_node(cluster, holder)
    got = env_of(run_consumer(cluster, NAMESPACE, resource, 4, node=node))
    (numa,) = got[f"{ENV}_NUMA_NODES"].split(",")
    assert numa != held_node
    block = list(range(4)) if numa == "0" else list(range(4, 8))
    assert indices(got[f"{ENV}_VISIBLE_DEVICES"]) == block
    assert f"{ENV}_REPLICAS" not in got  # no sharing


def test_replicas_multiply_node_capacity(devices: Devices) -> None:
    cluster = devices.cluster
    name, resource = start(devices, "replicas", numberDevices=3, sharing={"replicas": 3})
    cluster.wait_allocatable(resource, 9)
    assert set(capacity(cluster, resource).values()) == {9}
    obj = devices.wait_ready(name)
    nodes = len(cluster.nodes())
    assert obj["status"]["devices"]["capacity"] == 9 * nodes
    for row in obj["status"]["nodeDevices"]:
        assert (row["capacity"], row["allocatable"]) == (9, 9)
    # A fault on one physical device takes all three of its replicas.
    sick = {"name": "one-sick", "type": "Unhealthy", "devices": {"indices": [1]}}
    patch_spec(cluster, name, faults=[sick])
    cluster.wait_allocatable(resource, 6, timeout=FOLLOW_SECONDS)
    devices.wait_counted(name, "unhealthy", 3 * nodes)


def test_spread_sharing_puts_two_replicas_on_two_devices(devices: Devices) -> None:
    cluster = devices.cluster
    name, resource = start(
        devices, "spread", numberDevices=2, sharing={"replicas": 4, "policy": "Spread"}
    )
    cluster.wait_allocatable(resource, 8)
    pods = plugin_pods(devices, name)

    got = env_of(run_consumer(cluster, NAMESPACE, resource, 2))
    assert indices(got[f"{ENV}_VISIBLE_DEVICES"]) == [0, 1]
    assert sorted(pair.split("=")[1] for pair in got[f"{ENV}_REPLICAS"].split(",")) == ["1", "1"]

    # Packed, live: the same request fills one device.
    patch_spec(cluster, name, sharing={"replicas": 4, "policy": "Packed"})
    time.sleep(2)  # the plugin follows within about a second
    got = env_of(run_consumer(cluster, NAMESPACE, resource, 2))
    (visible,) = got[f"{ENV}_VISIBLE_DEVICES"].split(",")
    assert got[f"{ENV}_REPLICAS"] == f"{visible}=2"
    assert plugin_pods(devices, name) == pods


def test_fail_requests_greater_than_one_fails_the_pod(devices: Devices) -> None:
    cluster = devices.cluster
    sharing = {"replicas": 2, "failRequestsGreaterThanOne": True}
    _name, resource = start(devices, "one-only", numberDevices=2, sharing=sharing)
    cluster.wait_allocatable(resource, 4)
    pod = start_pod(cluster, NAMESPACE, resource, 2, "true")
    failed = wait_for(
        f"pod {pod} to be refused at admission",
        lambda: (s := pod_status(cluster, NAMESPACE, pod)).get("phase") == "Failed" and s,
        timeout=60,
    )
    assert failed["reason"] == "UnexpectedAdmissionError"
    assert "failRequestsGreaterThanOne" in failed["message"], failed
    assert f"{ENV}_REPLICAS=" in run_consumer(cluster, NAMESPACE, resource, 1)


def test_policy_none_registers_again_and_still_serves(devices: Devices) -> None:
    cluster = devices.cluster
    name, resource = start(devices, "no-preference", numberDevices=4)
    cluster.wait_allocatable(resource, 4)
    pods = plugin_pods(devices, name)
    patch_spec(cluster, name, allocationPolicy="None")
    # The switch happens on a fresh socket: wait until the kubelet has the new registration,
    # since a pod admitted in between would meet no plugin.
    wait_for(
        "every node's plugin to register again without preferred allocations",
        lambda: all(
            "re-registered" in log.split("registration changed", 1)[-1]
            for log in plugin_logs(devices, name).values()
        ),
        timeout=FOLLOW_SECONDS,
    )
    cluster.wait_allocatable(resource, 4, timeout=FOLLOW_SECONDS)
    got = env_of(run_consumer(cluster, NAMESPACE, resource, 2))
    assert len(indices(got[f"{ENV}_VISIBLE_DEVICES"])) == 2
    assert plugin_pods(devices, name) == pods
