"""Several nodes: a SimulatedDevice aimed at one node, a rolling plugin update over every
node, one node's kubelet restarted while the others are left alone, and node pools that give
the nodes different counts. Needs a cluster of at least two nodes (the suite's has two).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from clusterlib import Cluster, wait_for
from devices import (
    Devices,
    patch_spec,
    plugin_logs,
    pod_status,
    start_pod,
    unique,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "simdev-multinode-e2e"
HOSTNAME_LABEL = "kubernetes.io/hostname"
POOL_LABEL = "e2e.simdev.io/multinode-pool"
# The kubelet's node-status period plus the 5 s the live changes are allowed.
FOLLOW_SECONDS = 15


@pytest.fixture
def nodes(operator: Cluster) -> list[str]:
    names = [n["metadata"]["name"] for n in operator.nodes()]
    if len(names) < 2:
        pytest.skip("needs a cluster of several nodes")
    return names


def start(devices: Devices, prefix: str, **spec: Any) -> tuple[str, str]:
    name = unique(prefix)
    resource = f"multinode.simdev.io/{name}"
    devices.create(name, namespace=NAMESPACE, resourceName=resource, **spec)
    return name, resource


def pods_by_node(devices: Devices, name: str) -> dict[str, tuple[str, int]]:
    """Node -> (UID, restart count) of the SimulatedDevice's plugin pod there."""
    return {
        p["spec"]["nodeName"]: (
            p["metadata"]["uid"],
            sum(c["restartCount"] for c in p["status"].get("containerStatuses", [])),
        )
        for p in devices.owned("pods", name)
    }


def wait_offers(cluster: Cluster, resource: str, expected: dict[str, int]) -> None:
    wait_for(
        f"the nodes to offer {expected} of {resource}",
        lambda: cluster.allocatable(resource) == expected,
        timeout=120,
    )


def consumer_node(cluster: Cluster, resource: str, count: int) -> str:
    """Runs a consumer of count devices and returns the node it ran on."""
    pod = start_pod(cluster, NAMESPACE, resource, count, "true")
    wait_for(
        f"pod {pod} to succeed",
        lambda: pod_status(cluster, NAMESPACE, pod).get("phase") == "Succeeded",
        timeout=90,
    )
    node: str = cluster.get_json("pod", "-n", NAMESPACE, pod)["spec"]["nodeName"]
    return node


def test_node_selector_aims_at_one_node(devices: Devices, nodes: list[str]) -> None:
    cluster = devices.cluster
    target = nodes[-1]
    name, resource = start(
        devices, "one-node", numberDevices=2, nodeSelector={HOSTNAME_LABEL: target}
    )
    devices.wait_ready(name)
    wait_offers(cluster, resource, {n: 2 if n == target else 0 for n in nodes})
    assert list(pods_by_node(devices, name)) == [target]
    # Only that node offers the resource, so that is where a consumer goes.
    assert consumer_node(cluster, resource, 1) == target
    rows = devices.get(name)["status"]["nodeDevices"]
    assert [r["name"] for r in rows] == [target]


def test_a_restart_key_change_rolls_the_plugins_of_every_node(
    devices: Devices, nodes: list[str]
) -> None:
    cluster = devices.cluster
    name, resource = start(devices, "rolling", numberDevices=2)
    devices.wait_ready(name)
    wait_offers(cluster, resource, dict.fromkeys(nodes, 2))
    before = pods_by_node(devices, name)
    assert sorted(before) == sorted(nodes)

    # pluginName is a restart key: the DaemonSet's template changes and its pods roll.
    patch_spec(cluster, name, pluginName=f"{name}-renamed")

    def rolled() -> dict[str, tuple[str, int]] | None:
        after = pods_by_node(devices, name)
        fresh = sorted(after) == sorted(nodes) and all(after[n][0] != before[n][0] for n in nodes)
        return after if fresh else None

    after = wait_for("a new plugin pod on every node", rolled, timeout=180)
    assert len({uid for uid, _ in after.values()}) == len(nodes)
    (ds,) = devices.owned("daemonsets", name)
    wait_for(
        "the DaemonSet to report every node updated",
        lambda: (
            (s := devices.owned("daemonsets", name)[0]["status"]).get("updatedNumberScheduled")
            == len(nodes)
            and s.get("numberReady") == len(nodes)
        ),
        timeout=120,
    )
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    wait_offers(cluster, resource, dict.fromkeys(nodes, 2))
    devices.wait_ready(name)
    assert devices.get(name)["status"]["pluginName"] == f"{name}-renamed"


def test_one_nodes_kubelet_restart_leaves_the_others_alone(
    devices: Devices, nodes: list[str]
) -> None:
    cluster = devices.cluster
    if not cluster.local or os.geteuid() != 0:
        pytest.skip("restarts a kubelet of the local cluster, as root")
    name, resource = start(devices, "kubelet-restart", numberDevices=3)
    devices.wait_ready(name)
    wait_offers(cluster, resource, dict.fromkeys(nodes, 3))
    restarted, others = nodes[-1], nodes[:-1]
    pods = pods_by_node(devices, name)
    logs = plugin_logs(devices, name)
    reregistered = {n: log.count("re-registered") for n, log in logs.items()}

    subprocess.run(
        ["bash", str(REPO / "cluster" / "restart-kubelet.sh")],
        env={**os.environ, "NODE": restarted},
        check=True,
        timeout=240,
    )
    # The restarted node offers its devices again once its plugin has registered anew.
    started = time.monotonic()
    wait_for(
        f"the plugin on {restarted} to register again",
        lambda: (
            plugin_logs(devices, name)[restarted].count("re-registered") > reregistered[restarted]
        ),
        timeout=30,
    )
    wait_offers(cluster, resource, dict.fromkeys(nodes, 3))
    assert time.monotonic() - started < 60
    # No plugin pod restarted or was replaced, and the other nodes' plugins never noticed.
    assert pods_by_node(devices, name) == pods
    logs = plugin_logs(devices, name)
    for node in others:
        assert logs[node].count("re-registered") == reregistered[node], node
        assert cluster.allocatable(resource)[node] == 3


class PoolLabel:
    """Puts one node into a pool by a label, and takes the label off again."""

    def __init__(self, cluster: Cluster, node: str, value: str) -> None:
        self.cluster, self.node = cluster, node
        cluster.kubectl("label", "node", node, f"{POOL_LABEL}={value}", "--overwrite")

    def remove(self) -> None:
        self.cluster.kubectl("label", "node", self.node, f"{POOL_LABEL}-")


def test_a_node_pool_gives_the_nodes_different_counts(devices: Devices, nodes: list[str]) -> None:
    cluster = devices.cluster
    big, rest = nodes[-1], nodes[:-1]
    value = unique("big")  # this run's own pool: no other node or test selects it
    label = PoolLabel(cluster, big, value)
    try:
        pool = {"name": "big", "nodeSelector": {POOL_LABEL: value}, "numberDevices": 5}
        name, resource = start(devices, "pools", numberDevices=2, nodePools=[pool])
        devices.wait_ready(name)
        wait_offers(cluster, resource, {n: 5 if n == big else 2 for n in nodes})
        rows = {r["name"]: r for r in devices.get(name)["status"]["nodeDevices"]}
        assert rows[big]["pool"] == "big"
        assert all(rows[n].get("pool") is None for n in rest), rows
        # Four devices fit on the pool's node only.
        assert consumer_node(cluster, resource, 4) == big
    finally:
        label.remove()
