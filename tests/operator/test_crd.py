"""The CRD agrees with the operator: same defaults, and a schema for every status field.

The API server silently prunes fields a structural schema does not declare, so a status
field missing from the CRD would vanish without an error; these checks catch that early.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from simdev.operator import model
from simdev.operator.conflicts import Conflict
from simdev.operator.observed import DaemonSetState, DeviceTotals, NodeResources
from simdev.operator.simulation import node_rows
from simdev.operator.status import build_status
from simdev.plugin.faults import Clock
from simdev.plugin.limits import MAX_DEVICES, MAX_NUMA_NODES
from simdev.plugin.policies import AllocationPolicy, SharingPolicy

CRD = Path(__file__).resolve().parents[2] / "crds" / "simdev.io_simulateddevices.yaml"


@pytest.fixture(scope="module")
def version() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["metadata"]["name"] == f"{model.PLURAL}.{model.GROUP}"
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["kind"] == model.KIND
    assert "simdev" in crd["spec"]["names"]["shortNames"]
    (served,) = crd["spec"]["versions"]
    assert served["name"] == model.VERSION
    result: dict[str, Any] = served
    return result


def spec_schema(version: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    return props


def test_schema_defaults_match_the_operator(version: dict[str, Any]) -> None:
    spec = spec_schema(version)
    assert spec["namespace"]["default"] == model.DEFAULT_NAMESPACE
    assert spec["resourceName"]["default"] == model.DEFAULT_RESOURCE_NAME
    assert spec["numberDevices"]["default"] == model.DEFAULT_NUMBER_DEVICES
    assert spec["numberDevices"]["maximum"] == model.MAX_NUMBER_DEVICES
    assert spec["deviceIdPrefix"]["default"] == model.DEFAULT_DEVICE_ID_PREFIX
    for prefix in ("annotationPrefix", "envPrefix", "deviceFilePrefix"):
        assert spec[prefix]["default"] == ""
    assert "default" not in spec["pluginName"]  # computed from metadata.name by the operator
    assert spec["allocationPolicy"]["default"] == model.DEFAULT_ALLOCATION_POLICY
    assert spec["allocationPolicy"]["enum"] == [p.value for p in AllocationPolicy]
    sharing = spec["sharing"]["properties"]
    assert sharing["replicas"]["default"] == model.DEFAULT_SHARING_REPLICAS
    assert sharing["policy"]["default"] == model.DEFAULT_SHARING_POLICY
    assert sharing["policy"]["enum"] == [p.value for p in SharingPolicy]
    assert "default" not in spec["topology"]  # absent means no topology
    # A pool inherits what it leaves out, so nothing in it has a default.
    assert not defaults_in(spec["nodePools"])


def defaults_in(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "default" in schema or any(defaults_in(v) for v in schema.values())
    return isinstance(schema, list) and any(defaults_in(v) for v in schema)


def test_pool_selectors_are_checked_like_the_spec_selector(version: dict[str, Any]) -> None:
    spec = spec_schema(version)
    assert spec["nodePools"]["items"]["properties"]["nodeSelector"] | {"description": ""} == spec[
        "nodeSelector"
    ] | {"description": ""}


def test_one_device_limit_for_the_crd_and_the_plugin(version: dict[str, Any]) -> None:
    """numberDevices * replicas has one bound: the plugin's, repeated in the CRD's rules."""
    spec = spec_schema(version)
    assert spec["numberDevices"]["maximum"] == MAX_DEVICES
    assert spec["sharing"]["properties"]["replicas"]["maximum"] == MAX_DEVICES
    assert spec["topology"]["properties"]["numaNodes"]["maximum"] == MAX_NUMA_NODES
    rules = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
    by_field = {r["fieldPath"]: r for r in rules}
    product = by_field[".numberDevices"]
    assert re.search(r"<=\s*(\d+)\s*$", product["rule"]).group(1) == str(MAX_DEVICES)  # type: ignore[union-attr]
    assert f"at most {MAX_DEVICES}," in product["message"]
    assert "spec.numberDevices" in product["message"]
    assert "spec.sharing.replicas" in product["message"]
    # The same bound on every node pool.
    pools = by_field[".nodePools"]
    assert re.search(r"<=\s*(\d+)\)\s*$", pools["rule"]).group(1) == str(MAX_DEVICES)  # type: ignore[union-attr]
    assert f"> {MAX_DEVICES})" in pools["messageExpression"]
    for text in (pools["message"], pools["messageExpression"]):
        assert f"at most {MAX_DEVICES}," in text
        assert "spec.nodePools[].numberDevices * spec.nodePools[].sharing.replicas" in text
    pool = spec["nodePools"]["items"]["properties"]
    assert pool["numberDevices"]["maximum"] == MAX_DEVICES
    assert pool["sharing"]["properties"]["replicas"]["maximum"] == MAX_DEVICES
    assert pool["topology"]["properties"]["numaNodes"]["maximum"] == MAX_NUMA_NODES
    # Faults pick physical devices, of which there are at most as many.
    devices = spec["faults"]["items"]["properties"]["devices"]["properties"]
    assert devices["indices"]["maxItems"] == MAX_DEVICES
    assert devices["indices"]["items"]["maximum"] == MAX_DEVICES - 1
    assert devices["count"]["maximum"] == MAX_DEVICES


def test_resource_name_is_immutable(version: dict[str, Any]) -> None:
    rules = [r["rule"] for r in spec_schema(version)["resourceName"]["x-kubernetes-validations"]]
    assert "self == oldSelf" in rules


def undeclared(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Paths in value that the schema would prune."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        missing = []
        for key, item in value.items():
            if key not in props:
                missing.append(f"{where}.{key}")
            else:
                missing += undeclared(item, props[key], f"{where}.{key}")
        return missing
    if isinstance(value, list):
        return [
            p for i, v in enumerate(value) for p in undeclared(v, schema["items"], f"{where}[{i}]")
        ]
    return []


def test_every_status_field_is_declared(
    version: dict[str, Any], device: Callable[..., model.Device]
) -> None:
    schema = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    deployed = DaemonSetState("ns", "simdev-a", 1, 1, 1, 1, 1, 1)
    pooled = device("a", nodePools=[{"name": "big", "nodeSelector": {}, "numberDevices": 4}])
    rows = node_rows(pooled, [NodeResources("n1", {}, {})], {}, Clock(), 0.0)
    for status in (
        build_status(
            device("a"), conflict=None, daemon_set=deployed, totals=DeviceTotals(1, 2, 2), now="t"
        ),
        build_status(
            pooled, conflict=None, daemon_set=deployed, totals=DeviceTotals(), now="t", rows=rows
        ),
        build_status(
            device("a"),
            conflict=Conflict("b", "pluginName", "a"),
            daemon_set=None,
            totals=DeviceTotals(),
            now="t",
        ),
    ):
        present = {k: v for k, v in status.items() if v is not None}
        assert undeclared(present, schema, "status") == []
    assert rows[0].as_status()["pool"] == "big"


def test_printer_columns_read_declared_fields(version: dict[str, Any]) -> None:
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert list(columns)[:7] == [
        "Resource",
        "Devices",
        "Nodes",
        "Allocatable",
        "Unhealthy",
        "Allocated",
        "Ready",
    ]
    assert list(columns)[-1] == "Age"
    root = version["schema"]["openAPIV3Schema"]
    for name, json_path in columns.items():
        if json_path.startswith(".metadata") or "[?(" in json_path:
            continue
        node = root
        for part in json_path.strip(".").split("."):
            assert part in node["properties"], f"column {name}: {json_path} is not in the schema"
            node = node["properties"][part]


def _rule_pattern(rule: str) -> re.Pattern[str]:
    """The first regular expression of a CEL rule (the CRD's and Python's syntax agree here)."""
    found = re.search(r"matches\('([^']+)'\)", rule)
    assert found, rule
    return re.compile(found.group(1))


def dra_schema(version: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = spec_schema(version)["dra"]
    return schema


def test_dra_is_off_by_default_and_the_driver_name_is_computed(version: dict[str, Any]) -> None:
    props = dra_schema(version)["properties"]
    assert props["enabled"]["default"] is False
    assert "default" not in props["driverName"]  # <metadata.name>.simdev.io, by the operator
    assert props["driverName"]["maxLength"] == 63
    assert model.DRA_DRIVER_DOMAIN == "simdev.io"
    rules = version["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    (length,) = [r for r in rules if r.get("fieldPath") == ".spec.dra.driverName"]
    # 53 + len(".simdev.io") is the API server's 63-character limit on driver names.
    assert f"<= {63 - len('.' + model.DRA_DRIVER_DOMAIN)}" in length["rule"]


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("gpus.simdev.io", True),
        ("a", True),
        ("sim-1.example.com", True),
        ("Sim.example.com", False),
        ("-sim.example.com", False),
        ("sim..example.com", False),
        ("sim_1.example.com", False),
    ],
)
def test_driver_name_rule(version: dict[str, Any], name: str, valid: bool) -> None:
    (rule,) = dra_schema(version)["properties"]["driverName"]["x-kubernetes-validations"]
    assert bool(_rule_pattern(rule["rule"]).fullmatch(name)) is valid


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("model", True),
        ("_private", True),
        ("x" * 32, True),
        ("x" * 33, False),
        ("vendor.example.com/model", True),
        ("memory_GiB", True),
        ("1model", False),
        ("model-name", False),
        ("Vendor.com/model", False),
        ("/model", False),
        ("a/b/c", False),
    ],
)
def test_attribute_and_capacity_name_rule(version: dict[str, Any], name: str, valid: bool) -> None:
    """The rule of the API server's QualifiedName: [domain/]C identifier of at most 32."""
    props = dra_schema(version)["properties"]
    for field in ("attributes", "capacity"):
        rule = props[field]["x-kubernetes-validations"][0]["rule"]
        assert bool(_rule_pattern(rule).fullmatch(name)) is valid, (field, name)


def test_long_attribute_domains_are_refused(version: dict[str, Any]) -> None:
    rule = dra_schema(version)["properties"]["attributes"]["x-kubernetes-validations"][0]["rule"]
    second = re.findall(r"matches\('([^']+)'\)", rule)[1]
    assert re.match(second, "d" * 63 + "/model")
    assert not re.match(second, "d" * 64 + "/model")


@pytest.mark.parametrize(
    ("version_text", "valid"),
    [
        ("1.2.3", True),
        ("0.0.0", True),
        ("2.0.0-rc.1", True),
        ("1.2.3+build.5", True),
        ("1.2", False),
        ("01.2.3", False),
        ("1.2.3-01", False),
        ("v1.2.3", False),
    ],
)
def test_version_attribute_rule(version: dict[str, Any], version_text: str, valid: bool) -> None:
    attribute = dra_schema(version)["properties"]["attributes"]["additionalProperties"]
    (rule,) = attribute["properties"]["version"]["x-kubernetes-validations"]
    assert bool(_rule_pattern(rule["rule"]).fullmatch(version_text)) is valid


@pytest.mark.parametrize(
    ("quantity", "valid"),
    [("80Gi", True), ("1500m", True), ("4", True), ("1.5Gi", True), ("1e3", True),
     ("-1", False), ("80GB", False), ("", False), ("Gi", False)],
)  # fmt: skip
def test_capacity_quantity_rule(version: dict[str, Any], quantity: str, valid: bool) -> None:
    value = dra_schema(version)["properties"]["capacity"]["additionalProperties"]
    assert value["x-kubernetes-int-or-string"] is True
    # A pattern: a CEL rule on an unbounded int-or-string is far over the cost budget.
    assert "x-kubernetes-validations" not in value
    assert bool(re.fullmatch(value["pattern"], quantity)) is valid


def test_attribute_limits_match_the_builders(version: dict[str, Any]) -> None:
    from simdev.operator import dra

    room = dra.MAX_ATTRIBUTES_AND_CAPACITIES - len(dra.BUILT_IN_ATTRIBUTES)
    schema = dra_schema(version)
    assert schema["properties"]["attributes"]["maxProperties"] == room
    assert schema["properties"]["capacity"]["maxProperties"] == room
    (total,) = schema["x-kubernetes-validations"]
    assert total["rule"].endswith(f"<= {room}")
    reserved = schema["properties"]["attributes"]["x-kubernetes-validations"][1]["rule"]
    assert all(f"'{name}'" in reserved for name in dra.BUILT_IN_ATTRIBUTES)
