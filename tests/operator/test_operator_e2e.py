"""The operator on a real cluster: SimulatedDevices in, devices on the nodes out.

Each test uses its own names and resource names and deletes what it created. Device
annotations from Allocate reach only the container runtime, not the pod object, so they are
covered by the plugin's protocol tests; here pods check their environment and device files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from clusterlib import Cluster, wait_for
from devices import Devices, node_count, printer_columns, run_consumer, unique

pytestmark = pytest.mark.e2e

SHARED_NAMESPACE = "simdev-e2e"
OPERATOR_NAMESPACE = "simdev-system"


@pytest.fixture
def devices(operator: Cluster) -> Iterator[Devices]:
    made = Devices(operator)
    yield made
    made.cleanup()


@pytest.fixture(scope="module")
def shared_namespace(operator: Cluster) -> Iterator[str]:
    """A namespace that exists before any SimulatedDevice uses it, as a team's would."""
    operator.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": SHARED_NAMESPACE,
                    "labels": {"pod-security.kubernetes.io/enforce": "privileged"},
                },
            }
        )
    )
    yield SHARED_NAMESPACE
    operator.kubectl("delete", "namespace", SHARED_NAMESPACE, "--wait=false")


def test_a_device_is_advertised_consumed_and_reported(
    devices: Devices, shared_namespace: str
) -> None:
    cluster = devices.cluster
    name = unique("e2e-basic")
    resource = f"e2e.simdev.io/{name}"
    devices.create(
        name,
        namespace=shared_namespace,
        resourceName=resource,
        numberDevices=3,
        deviceIdPrefix="dev",
        envPrefix="E2E",
        deviceFilePrefix=name,
        annotationPrefix="e2e.simdev.io/dev",
    )
    cluster.wait_allocatable(resource, 3)
    obj = devices.wait_ready(name)

    nodes = node_count(cluster)
    status = obj["status"]
    assert status["devices"] == {
        "nodes": nodes,
        "capacity": 3 * nodes,
        "allocatable": 3 * nodes,
        "allocated": 0,
        "unhealthy": 0,
    }
    assert status["nodes"] == f"{nodes}/{nodes}"
    assert status["pluginName"] == name
    assert status["daemonSet"]["namespace"] == shared_namespace
    assert status["daemonSet"]["name"] == f"simdev-{name}"
    assert status["daemonSet"]["numberReady"] == nodes
    # NAME RESOURCE DEVICES NODES ALLOCATABLE UNHEALTHY ALLOCATED READY AGE
    assert printer_columns(cluster, name)[:8] == [
        name,
        resource,
        "3",
        f"{nodes}/{nodes}",
        str(3 * nodes),
        "0",
        "0",
        "True",
    ]

    log = run_consumer(cluster, shared_namespace, resource, 2)
    paths = dict(re.findall(r"^E2E_(\d+)=(\S+)$", log, re.MULTILINE))
    assert len(paths) == 2, log
    for index, path in paths.items():
        assert path == f"/dev/{name}-{index}"
        # A character device, present in the container under its own name.
        assert re.search(rf"^c\S+ .* {re.escape(name)}-{index}$", log, re.MULTILINE), log
    visible = re.search(r"^E2E_VISIBLE_DEVICES=(\S+)$", log, re.MULTILINE)
    assert visible, log
    ids = visible.group(1).split(",")
    assert sorted(i.rsplit("-", 1)[1] for i in ids) == sorted(paths)
    assert all(i.startswith("dev-") for i in ids)

    # The namespace existed before: it is used, but neither adopted nor relabelled.
    meta = cluster.get_json("namespace", shared_namespace)["metadata"]
    assert "ownerReferences" not in meta
    assert "simdev.io/created-namespace" not in meta.get("labels", {})


def test_two_resources_coexist(devices: Devices, shared_namespace: str) -> None:
    cluster = devices.cluster
    first, second = unique("e2e-first"), unique("e2e-second")
    devices.create(
        first, namespace=shared_namespace, resourceName=f"e2e.simdev.io/{first}", numberDevices=1
    )
    devices.create(
        second, namespace=shared_namespace, resourceName=f"e2e.simdev.io/{second}", numberDevices=2
    )
    cluster.wait_allocatable(f"e2e.simdev.io/{first}", 1)
    cluster.wait_allocatable(f"e2e.simdev.io/{second}", 2)
    devices.wait_ready(first)
    devices.wait_ready(second)
    assert len(devices.owned("daemonsets", first)) == len(devices.owned("daemonsets", second)) == 1


def test_a_conflicting_device_waits_for_the_holder(devices: Devices, shared_namespace: str) -> None:
    cluster = devices.cluster
    holder, later = unique("e2e-holder"), unique("e2e-later")
    resource = f"e2e.simdev.io/{holder}"
    devices.create(holder, namespace=shared_namespace, resourceName=resource, numberDevices=1)
    devices.wait_ready(holder)

    devices.create(later, namespace=shared_namespace, resourceName=resource, numberDevices=2)
    ready = devices.wait_reason(later, "Conflict")
    assert ready["status"] == "False"
    assert "spec.resourceName" in ready["message"] and repr(holder) in ready["message"]
    assert devices.owned("daemonsets", later) == []
    # Events are posted in the background, just after the status.
    wait_for(
        f"a Conflict event about {later}",
        lambda: cluster.get_json(
            "events", "-A", "--field-selector", f"involvedObject.name={later},reason=Conflict"
        )["items"],
        timeout=30,
    )
    assert set(cluster.allocatable(resource).values()) == {1}  # still the holder's plugin

    devices.delete(holder)
    cluster.wait_allocatable(resource, 2)
    devices.wait_ready(later)


def test_deleting_a_device_withdraws_its_resource(devices: Devices) -> None:
    cluster = devices.cluster
    name = unique("e2e-delete")
    resource = f"e2e.simdev.io/{name}"
    # Its own namespace, which the operator creates and then deletes with it.
    devices.create(name, namespace=name, resourceName=resource, numberDevices=2)
    cluster.wait_allocatable(resource, 2)
    devices.wait_ready(name)
    namespace = cluster.get_json("namespace", name)["metadata"]
    assert namespace["labels"]["simdev.io/created-namespace"] == "true"

    devices.delete(name)
    # The finalizer held the object until the DaemonSet and its pods were gone.
    assert devices.owned("daemonsets", name) == []
    assert cluster.get_json("pods", "-n", name)["items"] == []
    # The kubelet keeps the resource in capacity but stops offering it.
    cluster.wait_allocatable(resource, 0)
    wait_for(
        f"namespace {name} to be deleted with its last SimulatedDevice",
        lambda: cluster.kubectl("get", "namespace", name, check=False).returncode != 0,
        timeout=120,
    )


def test_an_operator_restart_creates_no_duplicates(devices: Devices, shared_namespace: str) -> None:
    cluster = devices.cluster
    name = unique("e2e-restart")
    resource = f"e2e.simdev.io/{name}"
    devices.create(name, namespace=shared_namespace, resourceName=resource, numberDevices=1)
    devices.wait_ready(name)
    kinds = ("daemonsets", "serviceaccounts", "configmaps")
    before = {kind: devices.owned(kind, name) for kind in kinds}

    cluster.kubectl(
        "delete", "pod", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=simdev-operator"
    )
    cluster.kubectl(
        "rollout",
        "status",
        "-n",
        OPERATOR_NAMESPACE,
        "deployment/simdev-operator",
        "--timeout=120s",
    )
    # The new operator resumes every object: wait until it has handled this one.
    wait_for(
        f"the restarted operator to resume {name}",
        lambda: (
            f"[{name}] Handler 'converge-on-resume' succeeded"
            in cluster.kubectl(
                "logs", "-n", OPERATOR_NAMESPACE, "deployment/simdev-operator"
            ).stdout
        ),
        timeout=120,
    )

    for kind in kinds:
        after = devices.owned(kind, name)
        assert [o["metadata"]["uid"] for o in after] == [
            o["metadata"]["uid"] for o in before[kind]
        ], kind
        assert len(after) == 1
    (ds_before,), (ds_after,) = before["daemonsets"], devices.owned("daemonsets", name)
    assert ds_after["metadata"]["generation"] == ds_before["metadata"]["generation"]
    assert devices.condition(name)["status"] == "True"
    assert set(cluster.allocatable(resource).values()) == {1}
