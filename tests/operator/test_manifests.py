"""The operator's manifests agree with each other, with the operator and with the e2e suite.

The admission policies name the operator's service account and read their lists from a
ConfigMap: a rename on one side would silently disable a check, or refuse the project's own
SimulatedDevices. The lists are parsed here as the policy's CEL does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from simdev.operator.handlers import DEFAULT_PLUGIN_IMAGE
from simdev.operator.model import CREATED_NAMESPACE_LABEL, DEFAULT_NAMESPACE

BASE = Path(__file__).resolve().parents[2] / "manifests" / "base"
# Namespaces the e2e tests, samples and benchmarks put plugins in.
PROJECT_NAMESPACES = [DEFAULT_NAMESPACE, "simdev-e2e", "simdev-live-e2e", "simdev-samples"]
PROJECT_NAMESPACES += ["simdev-bench", "e2e-undeploy-0a1b2c", "simdev-chaos", "simdev-metrics-e2e"]


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((BASE / name).read_text()) if d]


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of the base, by kind and name."""
    kustomization = load("kustomization.yaml")[0]
    found = {}
    for resource in kustomization["resources"]:
        if resource.endswith(".yaml"):
            for obj in load(resource):
                found[obj["kind"], obj["metadata"]["name"]] = obj
    return found


def cel_list(value: str) -> list[str]:
    """A ConfigMap list as the policy reads it: split on ',', trimmed, empties dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def image_allowed(image: str, allowed: list[str]) -> bool:
    return any(
        image.startswith(p)
        if p.endswith("/")
        else image == p or image.startswith(p + ":") or image.startswith(p + "@")
        for p in allowed
    )


@pytest.fixture(scope="module")
def params(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, list[str]]:
    data = objects["ConfigMap", "simdev-admission"]["data"]
    return {key: cel_list(value) for key, value in data.items()}


def test_the_base_ships_the_policies_their_params_and_the_user_roles(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        assert (kind, "simdev-simulateddevices") in objects
        assert (kind, "simdev-operator-namespaces") in objects
    assert ("ClusterRole", "simdev-viewer") in objects
    assert ("ClusterRole", "simdev-editor") in objects


def test_the_bindings_deny_and_find_their_params(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for name in ("simdev-simulateddevices", "simdev-operator-namespaces"):
        spec = objects["ValidatingAdmissionPolicyBinding", name]["spec"]
        assert spec["policyName"] == name
        assert spec["validationActions"] == ["Deny"]
        assert objects["ValidatingAdmissionPolicy", name]["spec"]["failurePolicy"] == "Fail"
    ref = objects["ValidatingAdmissionPolicyBinding", "simdev-simulateddevices"]["spec"]["paramRef"]
    params = objects["ConfigMap", "simdev-admission"]["metadata"]
    assert (ref["name"], ref["namespace"]) == (params["name"], params["namespace"])
    assert ref["parameterNotFoundAction"] == "Deny"


def test_system_namespaces_and_the_operators_own_are_denied(
    objects: dict[tuple[str, str], dict[str, Any]], params: dict[str, list[str]]
) -> None:
    operator_namespace = objects["ServiceAccount", "simdev-operator"]["metadata"]["namespace"]
    assert operator_namespace == "simdev-system"
    expected = {"kube-system", "kube-public", "kube-node-lease", "default", operator_namespace}
    assert set(params["deniedNamespaces"]) == expected


@pytest.mark.parametrize("namespace", PROJECT_NAMESPACES)
def test_the_projects_own_namespaces_are_not_denied(
    params: dict[str, list[str]], namespace: str
) -> None:
    assert namespace not in params["deniedNamespaces"]


def test_the_operators_plugin_image_is_allowed(
    objects: dict[tuple[str, str], dict[str, Any]], params: dict[str, list[str]]
) -> None:
    container = objects["Deployment", "simdev-operator"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in container["containers"][0]["env"]}
    for image in (env["SIMDEV_PLUGIN_IMAGE"], DEFAULT_PLUGIN_IMAGE):
        assert image_allowed(image, params["allowedImages"]), image


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("localhost/simdev-plugin", True),
        ("localhost/simdev-plugin:0.2.0", True),
        ("localhost/simdev-plugin@sha256:" + "0" * 64, True),
        ("localhost/simdev-plugin-evil:1", False),
        ("localhost/simdev-plugin/evil:1", False),
        ("localhost/other:1", False),
        ("docker.io/library/busybox:1.36", False),
    ],
)
def test_the_default_allow_list_takes_the_repository_only(
    params: dict[str, list[str]], image: str, allowed: bool
) -> None:
    assert image_allowed(image, params["allowedImages"]) is allowed


def test_the_namespace_policy_names_the_operators_service_account(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    account = objects["ServiceAccount", "simdev-operator"]["metadata"]
    user = f"system:serviceaccount:{account['namespace']}:{account['name']}"
    spec = objects["ValidatingAdmissionPolicy", "simdev-operator-namespaces"]["spec"]
    (condition,) = spec["matchConditions"]
    assert f"request.userInfo.username == '{user}'" == condition["expression"]
    (binding_subject,) = objects["ClusterRoleBinding", "simdev-operator"]["subjects"]
    assert (binding_subject["namespace"], binding_subject["name"]) == (
        account["namespace"],
        account["name"],
    )
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["namespaces"]
    assert sorted(rule["operations"]) == ["DELETE", "UPDATE"]
    assert all(CREATED_NAMESPACE_LABEL in v["expression"] for v in spec["variables"])


def test_user_roles_aggregate_into_view_and_edit(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    viewer = objects["ClusterRole", "simdev-viewer"]
    editor = objects["ClusterRole", "simdev-editor"]
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"

    def verbs(role: dict[str, Any], resource: str) -> set[str]:
        return {v for r in role["rules"] if resource in r["resources"] for v in r["verbs"]}

    read = {"get", "list", "watch"}
    assert verbs(viewer, "simulateddevices") == read
    assert verbs(viewer, "simulateddevices/status") == read
    assert verbs(editor, "simulateddevices") == read | {"create", "update", "patch", "delete"}
    # The status is the operator's to write.
    assert verbs(editor, "simulateddevices/status") == read
