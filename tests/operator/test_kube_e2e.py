"""Kube against the real API server: every call the operator makes, with the answers and
errors (404, 409, 422) the reconciler relies on.

Everything lives in a probe namespace of its own, deleted at the end. The one cluster-scoped
object is a SimulatedDevice that targets that namespace and selects no node: a running
operator may deploy for it, but no plugin pod is ever scheduled.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from clusterlib import Cluster
from simdev.operator.kube import JSON_PATCH, MERGE, STRATEGIC, Kube, Ref, load_api_client
from simdev.operator.model import API_VERSION, KIND, PLURAL

pytestmark = pytest.mark.e2e

CRD = Path(__file__).resolve().parents[2] / "crds" / "simdev.io_simulateddevices.yaml"
MANAGER = "simdev-kube-probe"
# A label no node has: DaemonSets of these tests schedule no pod.
NO_NODE = {"simdev.io/kube-probe-no-node": "true"}


@pytest.fixture(scope="module")
def kubeconfig(cluster: Cluster) -> str:
    return str(cluster.kubeconfig)


@pytest.fixture(scope="module")
def kube(kubeconfig: str) -> Kube:
    return Kube(load_api_client(kubeconfig), field_manager=MANAGER)


@pytest.fixture(scope="module")
def namespace(kube: Kube) -> Iterator[str]:
    name = f"kube-probe-{uuid.uuid4().hex[:8]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete(Ref("v1", "Namespace", name))


def config_map(namespace: str, name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def daemon_set(namespace: str, name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": NO_NODE,
                    "containers": [{"name": "c", "image": "localhost/none:0"}],
                },
            },
        },
    }


def status_of(call: Any) -> int | None:
    with pytest.raises(ApiException) as raised:
        call()
    status: int | None = raised.value.status
    return status


def test_apply_creates_then_updates_and_takes_fields_back(
    kube: Kube, kubeconfig: str, namespace: str
) -> None:
    obj = config_map(namespace, "applied", a="1")
    live, created = kube.apply(obj)
    assert created and live["data"] == {"a": "1"}
    live, created = kube.apply(config_map(namespace, "applied", a="2"))
    assert not created and live["data"] == {"a": "2"}
    # Another manager takes the field; the forced apply takes it back without a conflict.
    other = Kube(load_api_client(kubeconfig), field_manager=f"{MANAGER}-other")
    other.apply(config_map(namespace, "applied", a="theirs"))
    live, created = kube.apply(config_map(namespace, "applied", a="2"))
    assert not created and live["data"] == {"a": "2"}
    managers = {m["manager"] for m in live["metadata"]["managedFields"]}
    assert MANAGER in managers


def test_get_create_and_their_errors(kube: Kube, namespace: str) -> None:
    assert kube.get(Ref("v1", "ConfigMap", "missing", namespace)) is None
    created = kube.create(config_map(namespace, "created", a="1"))
    ref = Ref.of(created)
    live = kube.get(ref)
    assert live is not None and live["metadata"]["uid"] == created["metadata"]["uid"]
    assert status_of(lambda: kube.create(config_map(namespace, "created"))) == 409


def test_patches_merge_strategic_and_json(kube: Kube, namespace: str) -> None:
    live, _ = kube.apply(config_map(namespace, "patched", a="1"))
    ref = Ref.of(live)
    assert kube.patch(ref, {"data": {"b": "2"}}, MERGE)["data"] == {"a": "1", "b": "2"}
    # A real owner: the garbage collector deletes dependents of a missing one.
    owner_cm, _ = kube.apply(config_map(namespace, "owner"))
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner"}
    owner["uid"] = owner_cm["metadata"]["uid"]
    live = kube.patch(ref, {"metadata": {"ownerReferences": [owner]}}, STRATEGIC)
    assert [o["uid"] for o in live["metadata"]["ownerReferences"]] == [owner["uid"]]

    version = live["metadata"]["resourceVersion"]
    guarded = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "replace", "path": "/data/a", "value": "3"},
    ]
    assert kube.patch(ref, guarded, JSON_PATCH)["data"]["a"] == "3"
    # The guard fails now that the object changed: 422, which the reconciler retries.
    assert status_of(lambda: kube.patch(ref, guarded, JSON_PATCH)) == 422
    missing = Ref("v1", "ConfigMap", "missing", namespace)
    assert status_of(lambda: kube.patch(missing, {"data": {}}, MERGE)) == 404


def test_status_patch_of_a_daemon_set_writes_only_the_status(kube: Kube, namespace: str) -> None:
    live, _ = kube.apply(daemon_set(namespace, "status-probe"))
    ref = Ref.of(live)
    patched = kube.patch(
        ref,
        {"status": {"numberMisscheduled": 3}, "spec": {"minReadySeconds": 7}},
        MERGE,
        subresource="status",
    )
    # Read from the answer: the DaemonSet controller may write the status again at once.
    assert patched["status"]["numberMisscheduled"] == 3
    assert patched["spec"].get("minReadySeconds", 0) == 0


def test_delete_with_preconditions_and_propagation(kube: Kube, namespace: str) -> None:
    live, _ = kube.apply(config_map(namespace, "deleted", a="1"))
    ref = Ref.of(live)
    stale = live["metadata"]["resourceVersion"]
    kube.patch(ref, {"data": {"a": "2"}}, MERGE)
    assert status_of(lambda: kube.delete(ref, resource_version=stale)) == 409
    current = kube.get(ref)
    assert current is not None
    assert kube.delete(ref, resource_version=current["metadata"]["resourceVersion"]) is True
    assert kube.get(ref) is None
    assert kube.delete(ref) is False

    ds, _ = kube.apply(daemon_set(namespace, "deleted-foreground"))
    assert kube.delete(Ref.of(ds), propagation="Foreground") is True


def test_identities_name_namespaced_and_cluster_objects(kube: Kube, namespace: str) -> None:
    live, _ = kube.apply(config_map(namespace, "listed"))
    found = kube.identities(f"/api/v1/namespaces/{namespace}/configmaps")
    assert (f"{namespace}/listed", live["metadata"]["uid"]) in found
    ns = kube.get(Ref("v1", "Namespace", namespace))
    assert ns is not None
    assert (namespace, ns["metadata"]["uid"]) in kube.identities("/api/v1/namespaces")
    assert all("/" in name for name, _ in kube.identities("/api/v1/pods"))


@pytest.fixture
def device_kind(cluster: Cluster) -> None:
    """The SimulatedDevice CRD, installed the way the other cluster tests do when missing."""
    found = cluster.kubectl("get", "crd", f"{PLURAL}.{API_VERSION.split('/')[0]}", check=False)
    if found.returncode != 0:
        cluster.kubectl("apply", "-f", str(CRD))
        cluster.kubectl(
            "wait", "--for=condition=Established", "crd/simulateddevices.simdev.io", "--timeout=60s"
        )


def _delete_device(kube: Kube, ref: Ref) -> None:
    """Deletes the probe device; a running operator first tears down what it deployed."""
    kube.delete(ref)
    deadline = time.monotonic() + 90
    while kube.get(ref) is not None:
        if time.monotonic() > deadline:
            # No operator to finish its finalizer: the probe must not outlive the test.
            kube.patch(ref, {"metadata": {"finalizers": None}}, MERGE)
            deadline = float("inf")
        time.sleep(0.5)


@pytest.mark.usefixtures("device_kind")
def test_status_patch_of_a_simulated_device(kube: Kube, namespace: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    obj = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": f"kube-probe-{suffix}"},
        "spec": {
            "namespace": namespace,
            "resourceName": f"kube-probe.example.com/dev-{suffix}",
            "numberDevices": 1,
            "nodeSelector": NO_NODE,
        },
    }
    created = kube.create(obj)
    ref = Ref.of(created)
    try:
        patched = kube.patch(
            ref,
            {"status": {"nodeDevicesOmitted": 7}, "spec": {"numberDevices": 2}},
            MERGE,
            subresource="status",
        )
        # Read from the answer: a running operator may write the status again at once.
        assert patched["status"]["nodeDevicesOmitted"] == 7
        assert patched["spec"]["numberDevices"] == 1
        uid = created["metadata"]["uid"]
        assert (ref.name, uid) in kube.identities(f"/apis/{API_VERSION}/{PLURAL}")
    finally:
        _delete_device(kube, ref)
