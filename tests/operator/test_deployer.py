"""The deployment steps against an in-memory API server that keeps objects by name."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from fakekube import FakeKube
from kubernetes.client.exceptions import ApiException

from simdev.operator.builders import PluginRuntime
from simdev.operator.deployer import Deployer, RetryLater
from simdev.operator.kube import STRATEGIC, Ref
from simdev.operator.model import CREATED_NAMESPACE_LABEL, Device

DeviceFactory = Callable[..., Device]
IMAGE = "localhost/simdev-plugin:0.1.0"


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def deployer(kube: FakeKube) -> Deployer:
    return Deployer(kube, PluginRuntime(IMAGE))  # type: ignore[arg-type]


def test_first_deploy_creates_namespace_and_plugin_objects(
    kube: FakeKube, deployer: Deployer, device: DeviceFactory
) -> None:
    d = device("a", namespace="plugins")
    outcome = deployer.deploy(d, [])
    assert kube.kinds_in("plugins") == ["ConfigMap", "DaemonSet", "ServiceAccount"]
    assert kube.owners_of_namespace("plugins") == [d.uid]
    assert outcome.daemon_set is not None
    assert (outcome.daemon_set.namespace, outcome.daemon_set.name) == ("plugins", "simdev-a")
    assert outcome.notes == [
        "Created namespace plugins for the plugin",
        "Created DaemonSet plugins/simdev-a",
    ]


def test_deploying_again_changes_nothing_and_duplicates_nothing(
    kube: FakeKube, deployer: Deployer, device: DeviceFactory
) -> None:
    d = device("a", namespace="plugins")
    deployer.deploy(d, [])
    before = copy.deepcopy(kube.objects)
    # A restarted operator runs the same steps again.
    outcome = Deployer(kube, PluginRuntime(IMAGE)).deploy(d, [])  # type: ignore[arg-type]
    assert kube.objects == before
    assert outcome.notes == []


def test_only_a_new_plugin_image_id_rolls_the_plugin_pods(
    kube: FakeKube, device: DeviceFactory
) -> None:
    d = device("a", namespace="plugins")
    ds = Ref("apps/v1", "DaemonSet", "simdev-a", "plugins")
    Deployer(kube, PluginRuntime(IMAGE, "id-1")).deploy(d, [])  # type: ignore[arg-type]
    before = copy.deepcopy(kube.objects)
    # A restart with the same image ID writes nothing, so no pod is replaced.
    Deployer(kube, PluginRuntime(IMAGE, "id-1")).deploy(d, [])  # type: ignore[arg-type]
    assert kube.objects == before
    # A rebuilt image changes the pod template: the DaemonSet rolls its pods.
    Deployer(kube, PluginRuntime(IMAGE, "id-2")).deploy(d, [])  # type: ignore[arg-type]
    template = kube.objects[ds]["spec"]["template"]
    assert template["metadata"]["annotations"]["simdev.io/plugin-image-id"] == "id-2"
    assert kube.objects[ds]["metadata"]["generation"] == 2


def test_a_namespace_someone_else_made_is_used_but_never_adopted(
    kube: FakeKube, deployer: Deployer, device: DeviceFactory
) -> None:
    foreign = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
    kube.create(foreign)
    d = device("a", namespace="team")
    assert deployer.deploy(d, []).notes == ["Created DaemonSet team/simdev-a"]
    meta = kube.namespace("team")["metadata"]
    assert "ownerReferences" not in meta and "labels" not in meta
    # Moving away never deletes it either.
    deployer.deploy(device("a", namespace="elsewhere"), ["team"])
    kube.collect()
    assert Ref("v1", "Namespace", "team") in kube.objects
    assert kube.kinds_in("team") == []


def test_a_shared_namespace_lives_until_its_last_user_leaves(
    kube: FakeKube, deployer: Deployer, device: DeviceFactory
) -> None:
    a = device("a", namespace="plugins")
    b = device("b", namespace="plugins", resourceName="example.com/b")
    deployer.deploy(a, [])
    deployer.deploy(b, [])
    assert kube.owners_of_namespace("plugins") == [a.uid, b.uid]
    # a moves away: it gives up its share, and b keeps the namespace.
    deployer.deploy(device("a", namespace="other"), ["plugins"])
    kube.collect()
    assert kube.owners_of_namespace("plugins") == [b.uid]
    assert kube.kinds_in("plugins") == ["ConfigMap", "DaemonSet", "ServiceAccount"]
    # b moves away too: the namespace the operator made goes with the last user.
    notes = deployer.deploy(
        device("b", namespace="other", resourceName="example.com/b"), ["plugins"]
    )
    assert Ref("v1", "Namespace", "plugins") not in kube.objects
    assert "Deleted namespace plugins, which no SimulatedDevice uses any more" in notes.notes


def test_a_terminating_namespace_means_retry_later(
    kube: FakeKube, deployer: Deployer, device: DeviceFactory
) -> None:
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "plugins", "labels": {CREATED_NAMESPACE_LABEL: "true"}},
            "status": {"phase": "Terminating"},
        }
    )
    with pytest.raises(RetryLater, match="namespace plugins is being deleted"):
        deployer.deploy(device("a", namespace="plugins"), [])
    assert kube.kinds_in("plugins") == []


def test_releasing_loses_a_race_safely(
    kube: FakeKube, deployer: Deployer, device: DeviceFactory
) -> None:
    a = device("a", namespace="plugins")
    deployer.deploy(a, [])

    # Another SimulatedDevice joins between the read and the delete: the guarded delete fails.
    real_get = kube.get

    def get_then_someone_joins(ref: Ref) -> dict[str, Any] | None:
        seen = real_get(ref)
        if ref.kind == "Namespace":
            b = device("b", namespace="plugins")
            kube.patch(ref, {"metadata": {"ownerReferences": [b.owner_reference()]}}, STRATEGIC)
        return seen

    kube.get = get_then_someone_joins  # type: ignore[method-assign]
    with pytest.raises(ApiException) as err:
        deployer.release_namespace(a, "plugins")
    assert err.value.status == 409
    assert Ref("v1", "Namespace", "plugins") in kube.objects


def test_withdraw_removes_plugin_objects_everywhere(
    kube: FakeKube, deployer: Deployer, device: DeviceFactory
) -> None:
    d = device("a", namespace="plugins")
    deployer.deploy(d, [])
    kube.collect()
    outcome = deployer.withdraw(d, ["plugins", "never-used"])
    kube.collect()
    assert "Deleted DaemonSet plugins/simdev-a" in outcome.notes
    assert Ref("v1", "Namespace", "plugins") not in kube.objects
    assert all(r.namespace is None for r in kube.objects)


def test_tear_down_waits_for_the_daemon_set_to_be_gone(
    kube: FakeKube, deployer: Deployer, device: DeviceFactory
) -> None:
    d = device("a", namespace="plugins")
    deployer.deploy(d, [])
    assert deployer.tear_down(d, ["plugins"]) == ["plugins"]
    assert kube.kinds_in("plugins") == ["DaemonSet"]  # config and account already gone
    kube.collect()
    assert deployer.tear_down(d, ["plugins"]) == []
    # The namespace is left for the garbage collector (it follows the owner references).
    assert kube.owners_of_namespace("plugins") == [d.uid]


def test_status_is_merge_patched(kube: FakeKube, deployer: Deployer, device: DeviceFactory) -> None:
    d = device("a")
    ref = Ref("simdev.io/v1alpha1", "SimulatedDevice", "a")
    kube.create(
        {
            "apiVersion": ref.api_version,
            "kind": ref.kind,
            "metadata": {"name": "a"},
            "status": {"nodes": "1/1", "daemonSet": {"name": "x"}},
        }
    )
    deployer.patch_status(d, {"nodes": "0/0", "daemonSet": None})
    assert kube.objects[ref]["status"] == {"nodes": "0/0"}
