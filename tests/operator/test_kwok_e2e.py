"""Node status the operator writes: KWOK fake nodes' devices, and real nodes' stale keys.

Fake nodes (cluster/kwok.sh) have no kubelet, so no plugin runs there: the operator puts
each SimulatedDevice's resource into their status, with pools and Unhealthy faults applied,
and takes it out again when the object goes. Real nodes keep their plugins beside them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from clusterlib import Cluster, wait_for
from devices import Devices, unique

pytestmark = pytest.mark.e2e

NAMESPACE = "simdev-kwok-e2e"
# The operator batches node-status writes about once a second.
WRITE_SECONDS = 60


def status_of(cluster: Cluster, node: str, resource: str) -> tuple[int, int] | None:
    """(capacity, allocatable) of resource on node, None when the node does not list it."""
    status = cluster.get_json("node", node)["status"]
    if resource not in status.get("capacity", {}):
        return None
    return int(status["capacity"][resource]), int(status["allocatable"].get(resource, "0"))


def wait_status(
    cluster: Cluster,
    nodes: list[str],
    resource: str,
    want: tuple[int, int] | None,
    timeout: float = WRITE_SECONDS,
) -> None:
    for node in nodes:

        def shown(node: str = node) -> bool:
            return status_of(cluster, node, resource) == want

        wait_for(f"{node} to show {resource} as {want}", shown, timeout=timeout)


def real_nodes(cluster: Cluster) -> list[str]:
    return [
        n["metadata"]["name"]
        for n in cluster.nodes()
        if (n["metadata"].get("labels") or {}).get("type") != "kwok"
    ]


def test_fake_nodes_offer_the_devices_with_pools_and_faults(
    devices: Devices, fake_nodes: list[str]
) -> None:
    cluster = devices.cluster
    name = unique("kwok")
    resource = f"kwok.simdev.io/{name}"
    big = fake_nodes[1]
    cluster.kubectl("label", "node", big, f"simdev.io/e2e-size={name}")
    pool = {"name": "big", "nodeSelector": {"simdev.io/e2e-size": name}, "numberDevices": 6}
    devices.create(
        name, namespace=NAMESPACE, resourceName=resource, numberDevices=3, nodePools=[pool]
    )
    small = [n for n in fake_nodes if n != big]
    wait_status(cluster, small, resource, (3, 3))
    wait_status(cluster, [big], resource, (6, 6))
    real = real_nodes(cluster)
    wait_for(
        "the real nodes' plugins to offer 3",
        lambda: all(cluster.allocatable(resource)[node] == 3 for node in real),
        timeout=120,
    )

    # Plugins run only on the real nodes.
    plugin_nodes = sorted(p["spec"]["nodeName"] for p in devices.owned("pods", name))
    assert plugin_nodes == sorted(real)

    # The status counts every node, fake ones included, each row with its pool.
    def counted() -> dict[str, Any] | None:
        status = devices.get(name).get("status", {})
        want = 3 * (len(real) + len(small)) + 6
        return status if status.get("devices", {}).get("allocatable") == want else None

    status = wait_for("the status to count the fake nodes", counted, timeout=WRITE_SECONDS)
    rows = {r["name"]: r for r in status["nodeDevices"]}
    assert rows[big]["pool"] == "big" and rows[big]["allocatable"] == 6
    assert all(rows[n]["allocatable"] == 3 for n in small)

    # An Unhealthy fault lowers allocatable on fake nodes; capacity stays.
    fault = {"name": "two-down", "type": "Unhealthy", "devices": {"count": 2}}
    cluster.kubectl(
        "patch",
        "simdev",
        name,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"faults": [fault]}}),
    )
    wait_status(cluster, small, resource, (3, 1))
    wait_status(cluster, [big], resource, (6, 4))

    # A pod asking for the resource binds to a fake node, and KWOK runs it.
    pod = unique("consumer")
    cluster.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "namespace": NAMESPACE},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": big},
                    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                    "containers": [
                        {
                            "name": "app",
                            "image": "busybox:1.36",
                            "resources": {"limits": {resource: "4"}},
                        }
                    ],
                },
            }
        )
    )
    wait_for(
        "the consumer to run on the fake node",
        lambda: cluster.get_json("pod", "-n", NAMESPACE, pod)["status"].get("phase") == "Running",
        timeout=60,
    )

    # Deleting the object takes the resource out of every fake node's status.
    cluster.kubectl("delete", "pod", "-n", NAMESPACE, pod, "--wait=false")
    devices.delete(name)
    wait_status(cluster, fake_nodes, resource, None)


# The kubelet keeps a gone plugin's resource for a grace period of 5 minutes, then zeroes it.
KUBELET_GRACE_SECONDS = 300


@pytest.mark.timeout(KUBELET_GRACE_SECONDS + 300)
def test_a_deleted_resource_leaves_real_nodes_after_the_kubelets_grace(devices: Devices) -> None:
    cluster = devices.cluster
    name = unique("stale")
    resource = f"kwok.simdev.io/{name}"
    devices.create(name, namespace=NAMESPACE, resourceName=resource, numberDevices=1)
    cluster.wait_allocatable(resource, 1)
    real = real_nodes(cluster)
    devices.delete(name)
    # Left alone, the kubelet would show "resource: 0" forever; the operator drops the key
    # once the kubelet has zeroed it.
    wait_status(cluster, real, resource, None, timeout=KUBELET_GRACE_SECONDS + 120)
