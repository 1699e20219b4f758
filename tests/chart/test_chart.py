"""The Helm chart (charts/simdev) is the kustomize base, rendered by Helm.

manifests/base is the one source: scripts/gen_chart.py generates the chart's templates from
it, but for the two that values change (the Deployment and the admission lists). These tests
prove the generated ones are current, and that the chart renders exactly what kustomize does
(the base with the default values, the local overlay with values-local.yaml), object by
object, once Helm's own labels are set aside. The last test has the API server validate the
rendered chart with a server-side dry run.

helm comes from cluster/build-helm.sh: the first test on a machine builds it.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusterlib import OPERATOR_IMAGE, PLUGIN_IMAGE, Cluster
from helmlib import Helm

# The first test may build helm (a few minutes on 2 cores).
pytestmark = pytest.mark.timeout(1800)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "simdev"
LOCAL_VALUES = CHART / "values-local.yaml"
RELEASE = "simdev"
# The namespace manifests/base installs into; the chart takes the release's.
NAMESPACE = "simdev-system"
# What Helm charts conventionally add; the base has no counterpart.
HELM_LABELS = (
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
)
Key = tuple[str, str, str]  # kind, namespace ("" for cluster-scoped), name


def kubectl() -> str:
    """The kubectl make would give scripts: KUBECTL, the local build's, or the one on PATH."""
    if os.environ.get("KUBECTL"):
        return os.environ["KUBECTL"]
    local = subprocess.run(
        ["bash", "-c", '. cluster/lib/common.sh; echo "$BIN/kubectl"'],
        cwd=REPO,
        check=True,
        text=True,
        capture_output=True,
    ).stdout.strip()
    if os.access(local, os.X_OK):
        return local
    found = shutil.which("kubectl")
    if not found:
        pytest.skip("no kubectl to run kustomize with (make setup builds one)")
    return found


def kustomize(directory: str) -> str:
    return subprocess.run(
        [kubectl(), "kustomize", str(REPO / directory)],
        check=True,
        text=True,
        capture_output=True,
        timeout=60,
    ).stdout


def render(helm: Helm, *args: str, namespace: str = NAMESPACE) -> str:
    return helm.run("template", RELEASE, str(CHART), "--namespace", namespace, *args).stdout


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec


def objects(text: str, *, from_helm: bool) -> dict[Key, dict[str, Any]]:
    """The objects of a multi-document manifest, normalized for comparison, by key."""
    found: dict[Key, dict[str, Any]] = {}
    for obj in yaml.safe_load_all(text):
        if not obj:
            continue
        meta = obj["metadata"]
        if from_helm:
            labels = meta["labels"]
            for label in HELM_LABELS:
                assert label in labels, f"{obj['kind']} {meta['name']} lacks the label {label}"
                del labels[label]
            annotations = meta.get("annotations", {})
            if obj["kind"] == "CustomResourceDefinition":
                assert annotations.pop("helm.sh/resource-policy") == "keep"
            if not annotations:
                meta.pop("annotations", None)
        for container in pod_spec(obj).get("containers", []):
            # A strategic merge patch puts the overlay's env entries first. Their order matters
            # only to $(VAR) references, which none makes.
            env = container.get("env", [])
            assert not any("$(" in e.get("value", "") for e in env), env
            container["env"] = sorted(env, key=lambda e: e["name"])
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in found, f"{key} appears twice"
        found[key] = obj
    return found


def assert_same_objects(chart: dict[Key, dict[str, Any]], base: dict[Key, dict[str, Any]]) -> None:
    # Helm cannot create the namespace it stores the release in (helm install
    # --create-namespace does): the one object the chart leaves out.
    namespace = ("Namespace", "", NAMESPACE)
    assert namespace in base
    assert sorted(chart) == sorted(k for k in base if k != namespace)
    different = [key for key in sorted(chart) if chart[key] != base[key]]
    if different:
        key = different[0]
        diff = difflib.unified_diff(
            yaml.safe_dump(base[key]).splitlines(),
            yaml.safe_dump(chart[key]).splitlines(),
            "kustomize",
            "helm",
            lineterm="",
        )
        pytest.fail(f"{len(different)} objects differ, {different}; the first:\n" + "\n".join(diff))


def test_the_generated_templates_are_current() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_chart.py"), "--check"],
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("values", [[], ["-f", str(LOCAL_VALUES)]], ids=["default", "local"])
def test_helm_lint(helm: Helm, values: list[str]) -> None:
    out = helm.run("lint", "--strict", str(CHART), *values, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_values_render_the_kustomize_base(helm: Helm) -> None:
    chart = objects(render(helm), from_helm=True)
    base = objects(kustomize("manifests/base"), from_helm=False)
    assert ("CustomResourceDefinition", "", "simulateddevices.simdev.io") in chart
    assert_same_objects(chart, base)


def test_local_values_render_the_local_overlay(helm: Helm) -> None:
    chart = objects(render(helm, "-f", str(LOCAL_VALUES)), from_helm=True)
    overlay = objects(kustomize("manifests/overlays/local"), from_helm=False)
    assert_same_objects(chart, overlay)


def test_the_operators_namespace_is_the_releases(helm: Helm) -> None:
    text = render(helm, namespace="ops")
    assert NAMESPACE not in text
    chart = objects(text, from_helm=True)
    assert {key[1] for key in chart} == {"", "ops"}
    (subject,) = chart["ClusterRoleBinding", "", "simdev-operator"]["subjects"]
    assert subject["namespace"] == "ops"
    policy = chart["ValidatingAdmissionPolicy", "", "simdev-operator-namespaces"]["spec"]
    (condition,) = policy["matchConditions"]
    assert "'system:serviceaccount:ops:simdev-operator'" in condition["expression"]
    binding = chart["ValidatingAdmissionPolicyBinding", "", "simdev-simulateddevices"]["spec"]
    assert binding["paramRef"]["namespace"] == "ops"
    params = chart["ConfigMap", "ops", "simdev-admission"]["data"]
    assert params["deniedNamespaces"] == "kube-system, kube-public, kube-node-lease, default, ops"


def test_values_set_the_images_resources_and_admission_lists(helm: Helm, tmp_path: Path) -> None:
    values = {
        "image": {"repository": "registry.example.com/simdev-operator", "tag": "1.2.3"},
        "plugin": {"image": {"repository": "registry.example.com/simdev-plugin", "tag": "1.2.4"}},
        "resources": {"requests": {"cpu": "10m"}},
        "admission": {
            "deniedNamespaces": ["team-prod", NAMESPACE],
            "allowedImages": ["registry.example.com/simdev/", "localhost/simdev-plugin"],
        },
    }
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    text = render(helm, "-f", str(file), "--set", "image.pullPolicy=Always")
    chart = objects(text, from_helm=True)
    (container,) = pod_spec(chart["Deployment", NAMESPACE, "simdev-operator"])["containers"]
    assert container["image"] == "registry.example.com/simdev-operator:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    # Maps merge with the defaults.
    assert container["resources"] == {
        "requests": {"cpu": "10m", "memory": "96Mi"},
        "limits": {"memory": "256Mi"},
    }
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SIMDEV_PLUGIN_IMAGE"] == "registry.example.com/simdev-plugin:1.2.4"
    assert chart["ConfigMap", NAMESPACE, "simdev-admission"]["data"] == {
        # The operator's own namespace is listed once, whether the values name it or not.
        "deniedNamespaces": f"team-prod, {NAMESPACE}",
        "allowedImages": "registry.example.com/simdev/, localhost/simdev-plugin",
    }


def test_empty_admission_lists_render_empty_values(helm: Helm) -> None:
    # A list left out is refused (the policy would refuse every SimulatedDevice); [] is empty.
    unset = ["--set", "admission.allowedImages=null"]
    assert helm.run("template", RELEASE, str(CHART), *unset, check=False).returncode != 0
    empty = [
        "--set-json",
        "admission.deniedNamespaces=[]",
        "--set-json",
        "admission.allowedImages=[]",
    ]
    text = render(helm, *empty)
    data = objects(text, from_helm=True)["ConfigMap", NAMESPACE, "simdev-admission"]["data"]
    # An empty value is an empty list to the policy; the operator's namespace stays denied.
    assert data == {"deniedNamespaces": NAMESPACE, "allowedImages": ""}


def test_the_defaults_are_the_projects_images(helm: Helm) -> None:
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart_yaml["appVersion"] == chart_yaml["version"] == project["version"]
    chart = objects(render(helm), from_helm=True)
    (container,) = pod_spec(chart["Deployment", NAMESPACE, "simdev-operator"])["containers"]
    assert container["image"] == OPERATOR_IMAGE
    assert {e["name"]: e["value"] for e in container["env"]}["SIMDEV_PLUGIN_IMAGE"] == PLUGIN_IMAGE


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"hostNetwrok": True}, "a misspelt key"),
        ({"image": {"pullPolicy": "Sometimes"}}, "not a pull policy"),
        ({"image": {"tag": "1.0 beta"}}, "not a tag"),
        ({"livenessPort": 0}, "not a port"),
        ({"apiServer": {"port": "6443"}}, "a port must be a number"),
        ({"admission": {"deniedNamespaces": ["Team_A"]}}, "not a namespace name"),
        ({"admission": {"allowedImages": ["a,b"]}}, "the policy would split it"),
        ({"admission": {"allowedImages": "localhost/simdev-plugin"}}, "a list, not a string"),
    ],
)
def test_values_outside_the_schema_are_refused(
    helm: Helm, tmp_path: Path, values: dict[str, Any], why: str
) -> None:
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    out = helm.run("template", RELEASE, str(CHART), "-f", str(file), check=False)
    assert out.returncode != 0, why
    assert "schema" in out.stderr, out.stderr


# Namespaced objects pass a dry run only into a namespace that exists, and helm install
# creates the chart's (--create-namespace). Every cluster has default, and the namespace
# changes no validation (see test_the_operators_namespace_is_the_releases).
DRY_RUN_NAMESPACE = "default"


@pytest.mark.e2e
@pytest.mark.parametrize("values", [[], ["-f", str(LOCAL_VALUES)]], ids=["default", "local"])
def test_the_api_server_accepts_the_rendered_chart(
    cluster: Cluster, helm: Helm, values: list[str]
) -> None:
    text = render(helm, *values, namespace=DRY_RUN_NAMESPACE)
    count = len(objects(text, from_helm=True))
    out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == count, out.stdout
    assert all(line.endswith("(server dry run)") for line in lines), out.stdout
