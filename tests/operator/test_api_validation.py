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
        "allocationPolicy": "Packed",
    }


def test_sharing_defaults_are_applied(api: Cluster) -> None:
    code, out, err = dry_run(api, manifest(sharing={}))
    assert code == 0, err
    assert json.loads(out)["spec"]["sharing"] == {
        "replicas": 1,
        "policy": "Spread",
        "failRequestsGreaterThanOne": False,
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
            topology={"numaNodes": 64},
            allocationPolicy="NUMAAligned",
            sharing={"replicas": 2, "policy": "Packed", "failRequestsGreaterThanOne": True},
        ),
    )
    assert code == 0, err
    spec = json.loads(out)["spec"]
    assert (spec["numberDevices"], spec["sharing"]["replicas"]) == (4096, 2)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"numberDevices": 10000}, id="devices-10000"),
        pytest.param({"numberDevices": 1, "sharing": {"replicas": 10000}}, id="replicas-10000"),
        pytest.param({"numberDevices": 2500, "sharing": {"replicas": 4}}, id="product-10000"),
        pytest.param({"numberDevices": 0, "sharing": {"replicas": 10000}}, id="zero-devices"),
        pytest.param({"topology": {"numaNodes": 1}}, id="one-numa-node"),
        pytest.param({"allocationPolicy": "None"}, id="policy-none"),
        pytest.param({"allocationPolicy": "Spread", "sharing": {"policy": "Packed"}}, id="both"),
    ],
)
def test_valid_topology_and_sharing_edges_are_accepted(api: Cluster, spec: dict[str, Any]) -> None:
    code, _, err = dry_run(api, manifest(**spec))
    assert code == 0, err


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
        ({"numberDevices": 10001}, "spec.numberDevices", "10000"),
        (
            {"numberDevices": 5001, "sharing": {"replicas": 2}},
            "spec.numberDevices",
            "spec.numberDevices * spec.sharing.replicas must be at most 10000",
        ),
        (
            {"sharing": {"replicas": 5001}},  # numberDevices defaults to 2
            "spec.numberDevices",
            "spec.numberDevices * spec.sharing.replicas must be at most 10000",
        ),
        ({"topology": {"numaNodes": 0}}, "spec.topology.numaNodes", "greater than or equal to 1"),
        ({"topology": {"numaNodes": 65}}, "spec.topology.numaNodes", "less than or equal to 64"),
        ({"topology": {}}, "spec.topology.numaNodes", "Required value"),
        (
            {"allocationPolicy": "Balanced"},
            "spec.allocationPolicy",
            'Unsupported value: "Balanced"',
        ),
        ({"sharing": {"replicas": 0}}, "spec.sharing.replicas", "greater than or equal to 1"),
        ({"sharing": {"replicas": 10001}}, "spec.sharing.replicas", "less than or equal to 10000"),
        ({"sharing": {"policy": "Even"}}, "spec.sharing.policy", 'Unsupported value: "Even"'),
        (
            {"sharing": {"failRequestsGreaterThanOne": "yes"}},
            "spec.sharing.failRequestsGreaterThanOne",
            "boolean",
        ),
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


def fault(name: str = "probe", kind: str = "Unhealthy", **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, **fields}


# One fault of each type, using every field; numberDevices makes index 4095 a real device.
FULL_FAULTS: list[dict[str, Any]] = [
    fault(
        "flaky-gpus",
        "Unhealthy",
        devices={"indices": [0, 7, 4095]},
        nodeSelector={"kubernetes.io/os": "linux"},
        schedule={"startAfter": "30s", "duration": "1m30s", "every": "5m"},
        seed=42,
    ),
    fault("alloc-errors", "AllocateError", probability=0.25, code="RESOURCE_EXHAUSTED", seed=-7),
    fault("slow-alloc", "AllocateDelay", delay="500ms", schedule={"duration": "2h"}),
    fault("plugin-down", "PluginDown", schedule={"startAfter": "1.5h", "duration": "90s"}),
]


def test_a_full_set_of_faults_round_trips_with_its_defaults(api: Cluster) -> None:
    code, out, err = dry_run(api, manifest(numberDevices=4096, faults=FULL_FAULTS))
    assert code == 0, err
    # Only seed has a schema default; absent fields stay absent (readers default them).
    expected = [{"seed": 0, **f} for f in FULL_FAULTS]
    assert json.loads(out)["spec"]["faults"] == expected


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param([fault(devices={"count": 10000})], id="count-10000"),
        pytest.param([fault(devices={"count": 0})], id="count-0"),
        pytest.param([fault(devices={"percent": 100})], id="percent-100"),
        pytest.param([fault(devices={"indices": [9999]})], id="index-9999"),
        pytest.param([fault(kind="AllocateError", probability=0)], id="probability-0"),
        pytest.param([fault(kind="AllocateError", probability=1)], id="probability-1"),
        pytest.param([fault(kind="AllocateError", code="DATA_LOSS")], id="code-data-loss"),
        pytest.param(
            [fault(schedule={"duration": "1m", "every": "1m0.5s"})], id="every-just-longer"
        ),
        pytest.param([fault(schedule={"duration": "500ms", "every": "1s"})], id="every-ms"),
        pytest.param([fault(schedule={"startAfter": "0s"})], id="start-after-only"),
        pytest.param([fault(schedule={"startAfter": "2562047h"})], id="longest-duration"),
        pytest.param([fault("n" * 63)], id="name-63-chars"),
        pytest.param([fault(f"f{i}", "PluginDown") for i in range(32)], id="32-faults"),
    ],
)
def test_valid_fault_edges_are_accepted(api: Cluster, faults: list[dict[str, Any]]) -> None:
    code, _, err = dry_run(api, manifest(faults=faults))
    assert code == 0, err


@pytest.mark.parametrize(
    ("faults", "field", "reason"),
    [
        pytest.param(
            [fault(kind="Explode")],
            "spec.faults[0].type",
            'Unsupported value: "Explode"',
            id="unknown-type",
        ),
        pytest.param(
            [fault(schedule={"startAfter": "5 minutes"})],
            "spec.faults[0].schedule.startAfter",
            "must be a duration",
            id="duration-with-words",
        ),
        pytest.param(
            [fault(schedule={"duration": "90"})],
            "spec.faults[0].schedule.duration",
            "must be a duration",
            id="duration-without-unit",
        ),
        pytest.param(
            [fault(schedule={"duration": "1d"})],
            "spec.faults[0].schedule.duration",
            "must be a duration",
            id="duration-in-days",
        ),
        pytest.param(
            [fault(schedule={"startAfter": "2562048h"})],
            "spec.faults[0].schedule.startAfter",
            "at most 2562047h",
            id="duration-overflows",
        ),
        pytest.param(
            [fault(kind="AllocateDelay", delay="99999999999h")],
            "spec.faults[0].delay",
            "at most 2562047h",
            id="delay-overflows",
        ),
        pytest.param(
            [fault(kind="AllocateDelay", delay="-1s")],
            "spec.faults[0].delay",
            "must be a duration",
            id="delay-negative",
        ),
        pytest.param(
            [fault(kind="AllocateError", probability=-0.1)],
            "spec.faults[0].probability",
            "greater than or equal to 0",
            id="probability-below-0",
        ),
        pytest.param(
            [fault(kind="AllocateError", probability=1.5)],
            "spec.faults[0].probability",
            "less than or equal to 1",
            id="probability-above-1",
        ),
        pytest.param(
            [fault("twin"), fault("twin", "PluginDown")],
            "spec.faults[1]",
            "Duplicate value",
            id="duplicate-names",
        ),
        pytest.param(
            [fault(devices={"indices": [0, 10000]})],
            "spec.faults[0].devices.indices[1]",
            "less than or equal to 9999",
            id="index-10000",
        ),
        pytest.param(
            [fault(devices={"count": 10001})],
            "spec.faults[0].devices.count",
            "less than or equal to 10000",
            id="count-10001",
        ),
        pytest.param(
            [fault(devices={"indices": [3, 3]})],
            "spec.faults[0].devices.indices[1]",
            "Duplicate value",
            id="duplicate-indices",
        ),
        pytest.param(
            [fault(schedule={"duration": "30s", "every": "30s"})],
            "spec.faults[0].schedule.every",
            "schedule.every must be longer than schedule.duration",
            id="every-equals-duration",
        ),
        pytest.param(
            [fault(schedule={"duration": "90s", "every": "1m30s"})],
            "spec.faults[0].schedule.every",
            "schedule.every must be longer than schedule.duration",
            id="every-equals-duration-in-other-units",
        ),
        pytest.param(
            [fault(schedule={"duration": "2m", "every": "90s"})],
            "spec.faults[0].schedule.every",
            "schedule.every must be longer than schedule.duration",
            id="every-shorter-than-duration",
        ),
        pytest.param(
            [fault(schedule={"every": "5m"})],
            "spec.faults[0].schedule.duration",
            "schedule.every requires schedule.duration",
            id="every-without-duration",
        ),
        pytest.param(
            [fault(kind="AllocateError", devices={"count": 1})],
            "spec.faults[0].devices",
            "devices may only be set on an Unhealthy fault",
            id="devices-on-allocate-error",
        ),
        pytest.param(
            [fault(kind="AllocateDelay")],
            "spec.faults[0].delay",
            "delay is required for an AllocateDelay fault",
            id="allocate-delay-without-delay",
        ),
        pytest.param(
            [fault(delay="1s")],
            "spec.faults[0].delay",
            "delay may only be set on an AllocateDelay fault",
            id="delay-on-unhealthy",
        ),
        pytest.param(
            [fault(probability=0.5)],
            "spec.faults[0].probability",
            "probability may only be set on an AllocateError fault",
            id="probability-on-unhealthy",
        ),
        pytest.param(
            [fault(kind="PluginDown", code="INTERNAL")],
            "spec.faults[0].code",
            "code may only be set on an AllocateError fault",
            id="code-on-plugin-down",
        ),
        pytest.param(
            [fault(kind="AllocateError", code="OK")],
            "spec.faults[0].code",
            'Unsupported value: "OK"',
            id="code-ok",
        ),
        pytest.param(
            [fault(kind="AllocateError", code="TEAPOT")],
            "spec.faults[0].code",
            'Unsupported value: "TEAPOT"',
            id="code-unknown",
        ),
        pytest.param(
            [fault(devices={"indices": [1], "count": 1})],
            "spec.faults[0].devices",
            "devices must set exactly one of indices, count or percent",
            id="devices-indices-and-count",
        ),
        pytest.param(
            [fault(devices={"count": 1, "percent": 50})],
            "spec.faults[0].devices",
            "devices must set exactly one of indices, count or percent",
            id="devices-count-and-percent",
        ),
        pytest.param(
            [fault(devices={})],
            "spec.faults[0].devices",
            "devices must set exactly one of indices, count or percent",
            id="devices-empty",
        ),
        pytest.param(
            [fault(devices={"percent": 101})],
            "spec.faults[0].devices.percent",
            "less than or equal to 100",
            id="percent-101",
        ),
        pytest.param(
            [fault("Flaky_GPUs")],
            "spec.faults[0].name",
            "DNS-1123 label",
            id="name-not-a-dns-label",
        ),
        pytest.param(
            [fault("n" * 64)],
            "spec.faults[0].name",
            "may not be more than 63",
            id="name-too-long",
        ),
        pytest.param(
            [fault(f"f{i}", "PluginDown") for i in range(33)],
            "spec.faults",
            "must have at most 32 items",
            id="33-faults",
        ),
        pytest.param(
            [fault(nodeSelector={"zone": 1})],
            "spec.faults[0].nodeSelector.zone",
            "string",
            id="node-selector-not-a-string",
        ),
    ],
)
def test_invalid_faults_are_refused_by_name(
    api: Cluster, faults: list[dict[str, Any]], field: str, reason: str
) -> None:
    code, _, err = dry_run(api, manifest(faults=faults))
    assert code != 0, f"{faults} was accepted"
    assert field in err, err
    assert reason in err, err


# Label keys and values as the Pod API checks them, for every selector and toleration.
LONG_PREFIX = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"nodeSelector": {"zone": ""}}, id="empty-value"),
        pytest.param({"nodeSelector": {"a": "v" * 63}}, id="value-63"),
        pytest.param({"nodeSelector": {"Node_Pool.x-1": "A.b_c-9"}}, id="name-punctuation"),
        pytest.param({"nodeSelector": {f"{LONG_PREFIX}/{'n' * 63}": "x"}}, id="longest-key"),
        pytest.param({"nodeSelector": {f"k{i}": "v" for i in range(64)}}, id="64-labels"),
        pytest.param({"tolerations": [{"operator": "Exists"}]}, id="tolerate-everything"),
        pytest.param(
            {"tolerations": [{"key": "", "operator": "Exists", "effect": "NoExecute"}]},
            id="empty-key-exists",
        ),
        pytest.param(
            {"tolerations": [{"key": "gpu", "value": "", "effect": "PreferNoSchedule"}]},
            id="equal-by-default-empty-value",
        ),
        pytest.param(
            {
                "tolerations": [
                    {
                        "key": "node.kubernetes.io/unreachable",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 30,
                    }
                ]
            },
            id="toleration-seconds-no-execute",
        ),
        pytest.param(
            {"faults": [fault(nodeSelector={"simdev.io/flaky": "true", "zone": ""})]},
            id="fault-selector",
        ),
    ],
)
def test_valid_selectors_and_tolerations_are_accepted(api: Cluster, spec: dict[str, Any]) -> None:
    code, _, err = dry_run(api, manifest(**spec))
    assert code == 0, err


BAD_KEYS = [
    pytest.param("bad key!", id="space-and-bang"),
    pytest.param("-zone", id="leading-dash"),
    pytest.param("zone.", id="trailing-dot"),
    pytest.param("n" * 64, id="name-64"),
    pytest.param("Example.com/zone", id="upper-case-prefix"),
    pytest.param("example..com/zone", id="empty-dns-label"),
    pytest.param("/zone", id="empty-prefix"),
    pytest.param("example.com/", id="empty-name"),
    pytest.param("a/b/c", id="two-slashes"),
    pytest.param(f"{LONG_PREFIX}e/zone", id="prefix-254"),
]

BAD_VALUES = [
    pytest.param("bad value", id="space"),
    pytest.param("-x", id="leading-dash"),
    pytest.param("x_", id="trailing-underscore"),
    pytest.param("a/b", id="slash"),
]


def with_selector(where: str, selector: dict[str, str]) -> tuple[str, str]:
    """A manifest with this selector in the spec, a fault or a node pool, and its field."""
    if where == "spec":
        return manifest(nodeSelector=selector), "spec.nodeSelector"
    if where == "pool":
        return manifest(nodePools=[pool("p", selector)]), "spec.nodePools[0].nodeSelector"
    return manifest(faults=[fault(nodeSelector=selector)]), "spec.faults[0].nodeSelector"


@pytest.mark.parametrize("key", BAD_KEYS)
@pytest.mark.parametrize("where", ["spec", "fault", "pool"])
def test_selector_keys_must_be_label_keys(api: Cluster, where: str, key: str) -> None:
    body, field = with_selector(where, {key: "x"})
    code, _, err = dry_run(api, body)
    assert code != 0, f"{key!r} was accepted"
    assert f"{field}: Invalid value" in err, err
    assert f'key "{key}" is not a label key' in err, err


@pytest.mark.parametrize("value", [*BAD_VALUES, pytest.param("v" * 64, id="value-64")])
@pytest.mark.parametrize("where", ["spec", "fault", "pool"])
def test_selector_values_must_be_label_values(api: Cluster, where: str, value: str) -> None:
    body, field = with_selector(where, {"zone": value})
    code, _, err = dry_run(api, body)
    assert code != 0, f"{value!r} was accepted"
    # OpenAPI names a map entry .zone, CEL [zone]: either names the field.
    assert f"{field}.zone" in err or f"{field}[zone]" in err, err
    assert "label value" in err or "may not be more than 63" in err, err


@pytest.mark.parametrize("key", BAD_KEYS)
def test_toleration_keys_must_be_label_keys(api: Cluster, key: str) -> None:
    code, _, err = dry_run(api, manifest(tolerations=[{"key": key, "operator": "Exists"}]))
    assert code != 0, f"{key!r} was accepted"
    assert "spec.tolerations[0].key" in err and "must be a label key" in err, err


@pytest.mark.parametrize(
    ("toleration", "field", "reason"),
    [
        pytest.param(
            {"key": "gpu", "value": "bad value"},
            "spec.tolerations[0].value",
            "must be a label value",
            id="value-with-space",
        ),
        pytest.param(
            {"key": "gpu", "value": "v" * 64},
            "spec.tolerations[0].value",
            "may not be more than 63",
            id="value-64",
        ),
        pytest.param(
            {"effect": "NoSchedule"},
            "spec.tolerations[0].key",
            "key is required unless operator is Exists",
            id="no-key-equal-by-default",
        ),
        pytest.param(
            {"key": "", "operator": "Equal"},
            "spec.tolerations[0].key",
            "key is required unless operator is Exists",
            id="empty-key-equal",
        ),
        pytest.param(
            {"key": "gpu", "operator": "Exists", "value": "x"},
            "spec.tolerations[0]",
            "operator Exists must not have a value",
            id="exists-with-value",
        ),
        pytest.param(
            {"key": "gpu", "operator": "In"},
            "spec.tolerations[0].operator",
            'Unsupported value: "In"',
            id="operator-in",
        ),
        pytest.param(
            {"key": "gpu", "effect": "NoEvict"},
            "spec.tolerations[0].effect",
            'Unsupported value: "NoEvict"',
            id="effect-unknown",
        ),
        pytest.param(
            {"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 30},
            "spec.tolerations[0].tolerationSeconds",
            "only be set with effect NoExecute",
            id="seconds-with-no-schedule",
        ),
        pytest.param(
            {"key": "gpu", "tolerationSeconds": 30},
            "spec.tolerations[0].tolerationSeconds",
            "only be set with effect NoExecute",
            id="seconds-without-effect",
        ),
    ],
)
def test_invalid_tolerations_are_refused_by_name(
    api: Cluster, toleration: dict[str, Any], field: str, reason: str
) -> None:
    code, _, err = dry_run(api, manifest(tolerations=[toleration]))
    assert code != 0, f"{toleration} was accepted"
    assert field in err, err
    assert reason in err, err


def test_too_many_selector_labels_are_refused(api: Cluster) -> None:
    code, _, err = dry_run(api, manifest(nodeSelector={f"k{i}": "v" for i in range(65)}))
    assert code != 0
    assert "spec.nodeSelector" in err and "at most 64" in err, err


# Node pools.


def pool(
    name: str = "big", selector: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "nodeSelector": {"size": "big"} if selector is None else selector,
        **fields,
    }


def test_node_pools_round_trip_without_defaults(api: Cluster) -> None:
    pools = [
        pool("big", numberDevices=8, topology={"numaNodes": 2}, sharing={"replicas": 2}),
        pool("shared", {"simdev.io/shared": "true", "zone": ""}, sharing={"policy": "Packed"}),
        pool("all", {}),
    ]
    code, out, err = dry_run(api, manifest(sharing={"replicas": 3}, nodePools=pools))
    assert code == 0, err
    # Nothing is defaulted inside a pool: what it leaves out is the top level's.
    assert json.loads(out)["spec"]["nodePools"] == pools


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"nodePools": [pool(numberDevices=10000)]}, id="pool-devices-10000"),
        pytest.param(
            {"nodePools": [pool(sharing={"replicas": 5000})]}, id="pool-replicas-times-top-2"
        ),
        pytest.param(
            {"numberDevices": 5000, "sharing": {"replicas": 2}, "nodePools": [pool()]},
            id="pool-inherits-10000",
        ),
        pytest.param(
            {"numberDevices": 10000, "nodePools": [pool(numberDevices=1, sharing={"replicas": 1})]},
            id="pool-smaller-than-top",
        ),
        pytest.param({"nodePools": [pool(f"p{i}") for i in range(32)]}, id="32-pools"),
    ],
)
def test_valid_pool_edges_are_accepted(api: Cluster, spec: dict[str, Any]) -> None:
    code, _, err = dry_run(api, manifest(**spec))
    assert code == 0, err


POOL_LIMIT = "spec.nodePools[].numberDevices * spec.nodePools[].sharing.replicas"


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        pytest.param(
            {"nodePools": [pool("twin"), pool("twin", {"zone": "a"})]},
            "spec.nodePools[1]",
            "Duplicate value",
            id="duplicate-names",
        ),
        pytest.param(
            {"nodePools": [pool("Big_Pool")]},
            "spec.nodePools[0].name",
            "DNS-1123 label",
            id="name-not-a-dns-label",
        ),
        pytest.param(
            {"nodePools": [{"name": "big", "numberDevices": 4}]},
            "spec.nodePools[0].nodeSelector",
            "Required value",
            id="no-selector",
        ),
        pytest.param(
            {"nodePools": [pool(f"p{i}") for i in range(33)]},
            "spec.nodePools",
            "must have at most 32 items",
            id="33-pools",
        ),
        pytest.param(
            {"nodePools": [pool(numberDevices=10001)]},
            "spec.nodePools[0].numberDevices",
            "less than or equal to 10000",
            id="pool-devices-10001",
        ),
        pytest.param(
            {"nodePools": [pool(numberDevices=5001, sharing={"replicas": 2})]},
            "spec.nodePools",
            f'pool "big": {POOL_LIMIT}',
            id="limit-in-the-pool",
        ),
        pytest.param(
            {
                "sharing": {"replicas": 2},
                "nodePools": [pool(), pool("huge", {}, numberDevices=5001)],
            },
            "spec.nodePools",
            f'pool "huge": {POOL_LIMIT}',
            id="limit-with-top-level-replicas",
        ),
        pytest.param(
            {"numberDevices": 5000, "nodePools": [pool(sharing={"replicas": 3})]},
            "spec.nodePools",
            f'pool "big": {POOL_LIMIT}',
            id="limit-with-top-level-devices",
        ),
        pytest.param(
            {"nodePools": [pool(topology={})]},
            "spec.nodePools[0].topology.numaNodes",
            "Required value",
            id="topology-without-numa-nodes",
        ),
        pytest.param(
            {"nodePools": [pool(topology={"numaNodes": 65})]},
            "spec.nodePools[0].topology.numaNodes",
            "less than or equal to 64",
            id="numa-nodes-65",
        ),
        pytest.param(
            {"nodePools": [pool(sharing={"replicas": 0})]},
            "spec.nodePools[0].sharing.replicas",
            "greater than or equal to 1",
            id="replicas-0",
        ),
        pytest.param(
            {"nodePools": [pool(sharing={"policy": "Even"})]},
            "spec.nodePools[0].sharing.policy",
            'Unsupported value: "Even"',
            id="sharing-policy-unknown",
        ),
        pytest.param(
            {"nodePools": [pool("big", {f"k{i}": "v" for i in range(65)})]},
            "spec.nodePools[0].nodeSelector",
            "at most 64",
            id="65-labels",
        ),
    ],
)
def test_invalid_pools_are_refused_by_name(
    api: Cluster, spec: dict[str, Any], field: str, reason: str
) -> None:
    code, _, err = dry_run(api, manifest(**spec))
    assert code != 0, f"{spec} was accepted"
    assert field in err, err
    assert reason in err, err


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"numberDevice": 3}, "spec.nodePools[0].numberDevice"),
        ({"allocationPolicy": "Spread"}, "spec.nodePools[0].allocationPolicy"),
        ({"sharing": {"replica": 2}}, "spec.nodePools[0].sharing.replica"),
    ],
)
def test_unknown_pool_fields_are_refused(api: Cluster, extra: dict[str, Any], field: str) -> None:
    code, _, err = dry_run(api, manifest(nodePools=[pool(**extra)]))
    assert code != 0
    assert f'unknown field "{field}"' in err, err


def test_dra_defaults_and_a_full_dra_spec_round_trip(api: Cluster) -> None:
    code, out, err = dry_run(api, manifest(dra={}))
    assert code == 0, err
    assert json.loads(out)["spec"]["dra"] == {"enabled": False}
    dra = {
        "enabled": True,
        "driverName": "gpu.sim.example.com",
        "attributes": {
            "model": {"string": "h100-sim"},
            "cores": {"int": 132},
            "mig": {"bool": False},
            "driverVersion": {"version": "550.54.15"},
            "vendor.example.com/family": {"string": "hopper"},
        },
        "capacity": {"memory": "80Gi", "power": 700},
    }
    code, out, err = dry_run(api, manifest(dra=dra))
    assert code == 0, err
    assert json.loads(out)["spec"]["dra"] == dra


def test_a_long_name_needs_a_driver_name(api: Cluster) -> None:
    code, _, err = dry_run(api, manifest("n" * 54, dra={"enabled": True}))
    assert code != 0
    assert "spec.dra.driverName" in err and "longer than 53" in err, err
    code, _, err = dry_run(api, manifest("n" * 53, dra={"enabled": True}))
    assert code == 0, err
    code, _, err = dry_run(api, manifest("n" * 54, dra={"enabled": False}))
    assert code == 0, err


@pytest.mark.parametrize(
    ("dra", "field", "reason"),
    [
        ({"driverName": "Sim.example.com"}, "spec.dra.driverName", "DNS subdomain"),
        ({"driverName": "s" * 64}, "spec.dra.driverName", "63"),
        ({"attributes": {"model-name": {"string": "x"}}}, "spec.dra.attributes", "C identifiers"),
        ({"attributes": {"x" * 33: {"string": "x"}}}, "spec.dra.attributes", "C identifiers"),
        ({"attributes": {"uuid": {"string": "x"}}}, "spec.dra.attributes", "set by the operator"),
        ({"attributes": {"model": {}}}, "spec.dra.attributes[model]", "exactly one of"),
        (
            {"attributes": {"model": {"string": "x", "int": 1}}},
            "spec.dra.attributes[model]",
            "exactly one of",
        ),
        (
            {"attributes": {"v": {"version": "1.2"}}},
            "spec.dra.attributes[v].version",
            "semantic version",
        ),
        ({"attributes": {"s": {"string": "x" * 65}}}, "spec.dra.attributes.s.string", "64"),
        ({"capacity": {"memory": "80GB"}}, "spec.dra.capacity.memory", "should match"),
        ({"capacity": {"mem-ory": "1"}}, "spec.dra.capacity", "C identifiers"),
        (
            {
                "attributes": {f"a{n}": {"int": n} for n in range(20)},
                "capacity": {f"c{n}": "1" for n in range(10)},
            },
            "spec.dra.attributes",
            "at most 29",
        ),
    ],
)
def test_invalid_dra_fields_are_refused_by_name(
    api: Cluster, dra: dict[str, Any], field: str, reason: str
) -> None:
    code, _, err = dry_run(api, manifest(dra={"enabled": True, **dra}))
    assert code != 0, f"{dra} was accepted"
    assert field in err, err
    assert reason in err, err
