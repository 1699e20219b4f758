"""The real API server enforces the SimulatedDevice schema: defaults, and clear refusals.

Invalid objects are sent with a server-side dry run, which runs defaulting and every
validation (OpenAPI and CEL) without storing anything.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from clusterlib import Cluster

pytestmark = pytest.mark.e2e

CRD = Path(__file__).resolve().parents[2] / "crds" / "simdev.io_simulateddevices.yaml"


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/simulateddevices.simdev.io", "--timeout=60s"
    )
    return cluster


def manifest(name: str = "validation-probe", **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "simdev.io/v1alpha1",
            "kind": "SimulatedDevice",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def dry_run(api: Cluster, body: str) -> tuple[int, str, str]:
    proc = api.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=body, check=False
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_defaults_are_applied(api: Cluster) -> None:
    code, out, err = dry_run(api, manifest())
    assert code == 0, err
    assert json.loads(out)["spec"] == {
        "namespace": "simple-device-plugin",
        "resourceName": "example.com/simple-device",
        "numberDevices": 2,
        "deviceIdPrefix": "simple-device",
        "annotationPrefix": "",
        "envPrefix": "",
        "deviceFilePrefix": "",
    }


def test_a_complete_valid_object_is_accepted(api: Cluster) -> None:
    code, out, err = dry_run(
        api,
        manifest(
            namespace="gpu-plugins",
            pluginName="gpu.sim_1",
            resourceName="vendor.example.com/gpu",
            numberDevices=4096,
            deviceIdPrefix="gpu",
            annotationPrefix="vendor.example.com/gpu",
            envPrefix="GPU_",
            deviceFilePrefix="gpu",
            nodeSelector={"kubernetes.io/os": "linux"},
            tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            image="localhost/simdev-plugin:0.1.0",
        ),
    )
    assert code == 0, err
    assert json.loads(out)["spec"]["numberDevices"] == 4096


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"namespace": "Plugins_NS"}, "spec.namespace", "DNS-1123 label"),
        ({"namespace": "n" * 64}, "spec.namespace", "63"),
        ({"pluginName": "a/b"}, "spec.pluginName", "socket file name"),
        ({"pluginName": ".hidden"}, "spec.pluginName", "socket file name"),
        ({"pluginName": "kubelet"}, "spec.pluginName", "kubelet.sock"),
        ({"resourceName": "simple-device"}, "spec.resourceName", "<domain>/<name>"),
        ({"resourceName": "Example.com/x"}, "spec.resourceName", "<domain>/<name>"),
        ({"resourceName": "kubernetes.io/x"}, "spec.resourceName", "kubernetes.io or k8s.io"),
        ({"resourceName": "gpu.k8s.io/x"}, "spec.resourceName", "kubernetes.io or k8s.io"),
        ({"numberDevices": 4097}, "spec.numberDevices", "4096"),
        ({"numberDevices": -1}, "spec.numberDevices", "greater than or equal to 0"),
        ({"numberDevices": "two"}, "spec.numberDevices", "integer"),
        ({"deviceIdPrefix": "dev-"}, "spec.deviceIdPrefix", "letter or digit"),
        ({"annotationPrefix": "Bad.Domain/x"}, "spec.annotationPrefix", "annotation key"),
        ({"envPrefix": "1GPU"}, "spec.envPrefix", "[A-Za-z_][A-Za-z0-9_]*"),
        ({"envPrefix": "GPU-X"}, "spec.envPrefix", "[A-Za-z_][A-Za-z0-9_]*"),
        ({"deviceFilePrefix": "../gpu"}, "spec.deviceFilePrefix", "file name"),
        ({"deviceFilePrefix": "a/b"}, "spec.deviceFilePrefix", "file name"),
        ({"tolerations": [{"operator": "Maybe"}]}, "spec.tolerations[0].operator", "Maybe"),
        ({"image": "two words"}, "spec.image", "whitespace"),
        ({"nodeSelector": {"a": 1}}, "spec.nodeSelector.a", "string"),
    ],
)
def test_invalid_fields_are_refused_by_name(
    api: Cluster, spec: dict[str, Any], field: str, reason: str
) -> None:
    code, _, err = dry_run(api, manifest(**spec))
    assert code != 0, f"{spec} was accepted"
    assert field in err, err
    assert reason in err, err


@pytest.mark.parametrize(
    ("name", "spec", "reason"),
    [
        ("n" * 64, {}, "at most 63 characters"),
        ("kubelet", {}, "set spec.pluginName"),
    ],
)
def test_invalid_names_are_refused(
    api: Cluster, name: str, spec: dict[str, Any], reason: str
) -> None:
    code, _, err = dry_run(api, manifest(name, **spec))
    assert code != 0
    assert "metadata.name" in err and reason in err, err


def test_the_name_kubelet_is_fine_with_another_plugin_name(api: Cluster) -> None:
    code, _, err = dry_run(api, manifest("kubelet", pluginName="kubelet-sim"))
    assert code == 0, err


def test_unknown_fields_are_refused(api: Cluster) -> None:
    code, _, err = dry_run(api, manifest(numberDevice=3))
    assert code != 0
    assert 'unknown field "spec.numberDevice"' in err, err


def test_resource_name_is_immutable(api: Cluster) -> None:
    name = f"immutable-{uuid.uuid4().hex[:6]}"
    # Harmless if an operator is running: no node matches, so no plugin starts.
    api.apply(
        manifest(
            name,
            namespace=name,
            resourceName=f"e2e.simdev.io/{name}",
            numberDevices=0,
            nodeSelector={"simdev.io/e2e-no-such-node": "true"},
        )
    )
    try:
        changed = api.kubectl(
            "patch",
            "simdev",
            name,
            "--type=merge",
            "-p",
            '{"spec": {"resourceName": "e2e.simdev.io/other"}}',
            check=False,
        )
        assert changed.returncode != 0
        assert "spec.resourceName" in changed.stderr and "immutable" in changed.stderr
        # Other fields stay editable.
        api.kubectl("patch", "simdev", name, "--type=merge", "-p", '{"spec": {"numberDevices": 1}}')
    finally:
        api.kubectl("delete", "simdev", name, "--ignore-not-found", "--timeout=120s")
