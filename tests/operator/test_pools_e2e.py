"""Node pools on the real local cluster: a node's labels choose its settings, live.

The test labels a node into a pool and out again with kubectl, as an administrator would.
The plugin follows its Node, so the node's devices change without a plugin pod being
replaced or restarted; the kubelet reports them on its node-status period (10 s). The
node's labels are restored at the end, whatever happens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from clusterlib import Cluster, wait_for
from devices import Devices, patch_spec, plugin_pods, unique

pytestmark = pytest.mark.e2e

NAMESPACE = "simdev-pools-e2e"
LABEL = "simdev.io/e2e-pool"
# The kubelet's node-status period plus a margin.
FOLLOW_SECONDS = 20


class NodeLabel:
    """Sets and removes LABEL on one node, and puts back what was there before."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        node = cluster.nodes()[0]
        self.node = node["metadata"]["name"]
        self.before: str | None = (node["metadata"].get("labels") or {}).get(LABEL)

    def set(self, value: str) -> None:
        self.cluster.kubectl("label", "node", self.node, f"{LABEL}={value}", "--overwrite")

    def remove(self) -> None:
        self.cluster.kubectl("label", "node", self.node, f"{LABEL}-")

    def restore(self) -> None:
        if self.before is None:
            self.remove()
        else:
            self.set(self.before)


@pytest.fixture
def label(operator: Cluster) -> Iterator[NodeLabel]:
    node_label = NodeLabel(operator)
    if node_label.before is not None:
        node_label.remove()  # the node starts outside every pool
    yield node_label
    node_label.restore()


def allocatable_on(cluster: Cluster, node: str, resource: str) -> int:
    return cluster.allocatable(resource)[node]


def row_of(devices: Devices, name: str, node: str) -> dict[str, Any]:
    rows = devices.get(name).get("status", {}).get("nodeDevices") or []
    return next((r for r in rows if r["name"] == node), {})


def pool_moves(devices: Devices, name: str, node: str) -> list[tuple[str, str]]:
    """(from, to) of every "node pool changed" line of the node's plugin."""
    (pod,) = [p for p in devices.owned("pods", name) if p["spec"].get("nodeName") == node]
    meta = pod["metadata"]
    log = devices.cluster.kubectl("logs", "-n", meta["namespace"], meta["name"]).stdout
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [(e["from"], e["to"]) for e in lines if e.get("msg") == "node pool changed"]


def wait_pool(devices: Devices, name: str, node: str, pool: str | None, count: int) -> None:
    """The node offers count devices and its status row names its pool, Ready again."""
    resource = devices.get(name)["spec"]["resourceName"]
    wait_for(
        f"{node} to offer {count} {resource}",
        lambda: allocatable_on(devices.cluster, node, resource) == count,
        timeout=FOLLOW_SECONDS,
    )
    wait_for(
        f"the status row of {node} to show pool {pool}",
        lambda: (
            (row := row_of(devices, name, node)).get("pool") == pool
            and row.get("allocatable") == count
        ),
        timeout=FOLLOW_SECONDS,
    )
    devices.wait_ready(name, timeout=FOLLOW_SECONDS)


def test_a_labelled_node_moves_to_its_pool_and_back(devices: Devices, label: NodeLabel) -> None:
    cluster = devices.cluster
    name = unique("pools")
    resource = f"pools.simdev.io/{name}"
    value = name  # unique to this run: no other pool or test selects it
    pool = {
        "name": "big",
        "nodeSelector": {LABEL: value},
        "numberDevices": 5,
        "sharing": {"replicas": 2},
    }
    devices.create(
        name, namespace=NAMESPACE, resourceName=resource, numberDevices=2, nodePools=[pool]
    )
    devices.wait_ready(name)
    node = label.node
    wait_pool(devices, name, node, None, 2)
    pods = plugin_pods(devices, name)
    ds_generation = devices.owned("daemonsets", name)[0]["metadata"]["generation"]

    label.set(value)
    wait_pool(devices, name, node, "big", 10)
    ready = devices.condition(name)
    assert "in pool big" in ready["message"], ready

    # An edit of the pool reaches its nodes live as well.
    patch_spec(cluster, name, nodePools=[{**pool, "numberDevices": 3}])
    wait_pool(devices, name, node, "big", 6)

    label.remove()
    wait_pool(devices, name, node, None, 2)

    assert plugin_pods(devices, name) == pods
    assert devices.owned("daemonsets", name)[0]["metadata"]["generation"] == ds_generation
    assert pool_moves(devices, name, node) == [("-", "big"), ("big", "-")]
