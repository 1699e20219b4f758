"""DRA builders (slices, class) and their publisher against an in-memory API server."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from fakekube import FakeKube

from simdev.operator import dra
from simdev.operator.dra_publisher import DraPublisher
from simdev.operator.kube import RESOURCE, Ref
from simdev.operator.model import OWNER_LABEL, Device
from simdev.operator.observed import NodeResources
from simdev.operator.simulation import faults_of
from simdev.plugin.draids import device_uuid
from simdev.plugin.faults import Clock

DeviceFactory = Callable[..., Device]

# The API server's rules (k8s.io/api/resource/v1 and its validation), restated.
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_LABEL = re.compile(_LABEL)
DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
GPU_UUID = re.compile(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def valid_qualified_name(name: str) -> bool:
    domain, _, ident = name.rpartition("/")
    if domain and (len(domain) > 63 or not DNS_SUBDOMAIN.fullmatch(domain)):
        return False
    return len(ident) <= 32 and bool(C_IDENTIFIER.fullmatch(ident))


def api_errors(obj: Mapping[str, Any]) -> list[str]:
    """What the API server would refuse in a ResourceSlice or DeviceClass."""
    errors = []
    name = obj["metadata"]["name"]
    if len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        errors.append(f"metadata.name {name}")
    spec = obj["spec"]
    if obj["kind"] == "DeviceClass":
        return errors
    if len(spec["driver"]) > 63 or not DNS_SUBDOMAIN.fullmatch(spec["driver"]):
        errors.append("spec.driver")
    pool = spec["pool"]
    if len(pool["name"]) > 253 or not all(
        DNS_SUBDOMAIN.fullmatch(p) for p in pool["name"].split("/")
    ):
        errors.append("spec.pool.name")
    if pool["resourceSliceCount"] < 1 or pool["generation"] < 0:
        errors.append("spec.pool")
    if len(spec["devices"]) > 128:
        errors.append("spec.devices: more than 128")
    for n, device in enumerate(spec["devices"]):
        if not DNS_LABEL.fullmatch(device["name"]):
            errors.append(f"spec.devices[{n}].name")
        attributes = device.get("attributes", {})
        capacity = device.get("capacity", {})
        if len(attributes) + len(capacity) > 32:
            errors.append(f"spec.devices[{n}]: more than 32 attributes and capacities")
        for key, value in attributes.items():
            if not valid_qualified_name(key) or len(value) != 1:
                errors.append(f"spec.devices[{n}].attributes[{key}]")
            text = value.get("string", value.get("version", ""))
            if isinstance(text, str) and len(text) > 64:
                errors.append(f"spec.devices[{n}].attributes[{key}]: too long")
        errors += [
            f"spec.devices[{n}].capacity[{k}]" for k in capacity if not valid_qualified_name(k)
        ]
    return errors


def gpu(device: DeviceFactory, name: str = "gpus", **spec: Any) -> Device:
    dra_spec = {
        "enabled": True,
        "attributes": {"model": {"string": "h100-sim"}, "driverVersion": {"version": "1.2.3"}},
        "capacity": {"memory": "80Gi"},
        **spec.pop("dra", {}),
    }
    return device(name, dra=dra_spec, **spec)


def node(name: str, **labels: str) -> NodeResources:
    return NodeResources(name, {}, {}, labels=labels)


def build(d: Device, *nodes: NodeResources, now: float = 0.0) -> dra.DraObjects:
    return dra.desired(d, nodes, Clock().advance(faults_of(d), 0.0), now)


def test_driver_name_defaults_to_the_object_name(device: DeviceFactory) -> None:
    assert device("gpus", dra={"enabled": True}).spec.dra.driver_name == "gpus.simdev.io"
    custom = device("gpus", dra={"enabled": True, "driverName": "sim.example.com"})
    assert custom.spec.dra.driver_name == "sim.example.com"


def test_one_slice_per_node_with_every_device_and_its_attributes(device: DeviceFactory) -> None:
    d = gpu(device, numberDevices=2)
    objects = build(d, node("n1"), node("n2"))
    assert sorted(objects.pools) == ["n1", "n2"]
    (s,) = objects.pools["n1"]
    assert s["apiVersion"] == "resource.k8s.io/v1"
    assert s["metadata"]["name"] == "n1-gpus.simdev.io-0"
    assert s["metadata"]["labels"][OWNER_LABEL] == "gpus"
    assert s["metadata"]["ownerReferences"][0]["uid"] == d.uid
    assert s["spec"]["driver"] == "gpus.simdev.io"
    assert s["spec"]["nodeName"] == "n1"
    assert s["spec"]["pool"] == {"name": "n1", "generation": 1, "resourceSliceCount": 1}
    first = s["spec"]["devices"][0]
    assert first["name"] == "device-0"
    assert first["capacity"] == {"memory": {"value": "80Gi"}}
    attributes = first["attributes"]
    assert attributes["model"] == {"string": "h100-sim"}
    assert attributes["driverVersion"] == {"version": "1.2.3"}
    assert attributes["index"] == {"int": 0}
    assert "numaNode" not in attributes  # no topology
    assert GPU_UUID.fullmatch(attributes["uuid"]["string"])
    assert api_errors(s) == []


def test_uuids_are_stable_and_distinct(device: DeviceFactory) -> None:
    d = gpu(device, numberDevices=4)
    ids = [
        dev["attributes"]["uuid"]["string"]
        for n in ("n1", "n2")
        for dev in build(d, node(n)).pools[n][0]["spec"]["devices"]
    ]
    assert len(set(ids)) == 8
    again = build(gpu(device, numberDevices=4), node("n1")).pools["n1"][0]["spec"]["devices"]
    assert [dev["attributes"]["uuid"]["string"] for dev in again] == ids[:4]
    assert device_uuid("other.simdev.io", "n1", 0) != ids[0]


def test_numa_nodes_follow_the_topology(device: DeviceFactory) -> None:
    d = gpu(device, numberDevices=4, topology={"numaNodes": 2})
    devices = build(d, node("n1")).pools["n1"][0]["spec"]["devices"]
    assert [dev["attributes"]["numaNode"] for dev in devices] == [{"int": n} for n in (0, 0, 1, 1)]


def test_only_selected_nodes_get_slices(device: DeviceFactory) -> None:
    d = gpu(device, nodeSelector={"gpu": "yes"})
    assert list(build(d, node("a", gpu="yes"), node("b"), node("c", gpu="no")).pools) == ["a"]


def test_node_pools_set_the_count_and_topology(device: DeviceFactory) -> None:
    d = gpu(
        device,
        numberDevices=2,
        nodePools=[
            {"name": "big", "nodeSelector": {"size": "big"}, "numberDevices": 6,
             "topology": {"numaNodes": 3}},
        ],
    )  # fmt: skip
    objects = build(d, node("small"), node("large", size="big"))
    assert len(objects.pools["small"][0]["spec"]["devices"]) == 2
    large = objects.pools["large"][0]["spec"]["devices"]
    assert len(large) == 6
    assert [dev["attributes"]["numaNode"]["int"] for dev in large] == [0, 0, 1, 1, 2, 2]


def test_unhealthy_devices_leave_the_slice_while_the_fault_is_active(
    device: DeviceFactory,
) -> None:
    fault = {
        "name": "broken",
        "type": "Unhealthy",
        "devices": {"indices": [1]},
        "nodeSelector": {"flaky": "yes"},
        "schedule": {"duration": "60s"},
    }
    d = gpu(device, numberDevices=3, faults=[fault])
    nodes = (node("flaky", flaky="yes"), node("steady"))
    during = build(d, *nodes, now=10.0)
    names = [dev["name"] for dev in during.pools["flaky"][0]["spec"]["devices"]]
    assert names == ["device-0", "device-2"]
    assert len(during.pools["steady"][0]["spec"]["devices"]) == 3
    after = build(d, *nodes, now=61.0)
    assert len(after.pools["flaky"][0]["spec"]["devices"]) == 3


def test_a_node_with_every_device_broken_keeps_an_empty_slice(device: DeviceFactory) -> None:
    d = gpu(device, faults=[{"name": "all", "type": "Unhealthy"}])
    (s,) = build(d, node("n1")).pools["n1"]
    assert s["spec"]["devices"] == []
    assert s["spec"]["pool"]["resourceSliceCount"] == 1
    assert api_errors(s) == []


def test_large_pools_span_several_slices(device: DeviceFactory) -> None:
    d = gpu(device, numberDevices=300)
    slices = build(d, node("n1")).pools["n1"]
    assert [len(s["spec"]["devices"]) for s in slices] == [128, 128, 44]
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {3}
    assert [s["metadata"]["name"] for s in slices] == [f"n1-gpus.simdev.io-{k}" for k in range(3)]
    assert slices[2]["spec"]["devices"][-1]["name"] == "device-299"
    assert all(api_errors(s) == [] for s in slices)


def test_long_names_stay_within_the_limit(device: DeviceFactory) -> None:
    long_node = ".".join(["n" * 60] * 4)  # 243 characters, a valid node name
    d = gpu(device, "g" * 53)
    (s,) = build(d, node(long_node)).pools[long_node]
    assert len(s["metadata"]["name"]) <= 253
    assert api_errors(s) == []
    other = build(gpu(device, "h" * 53), node(long_node)).pools[long_node][0]
    assert other["metadata"]["name"] != s["metadata"]["name"]


def test_the_most_attributes_the_crd_allows_pass(device: DeviceFactory) -> None:
    attributes = {f"a{n}": {"int": n} for n in range(20)}
    attributes["vendor.example.com/" + "x" * 32] = {"bool": True}
    capacity = {f"c{n}": "1" for n in range(8)}
    d = gpu(device, topology={"numaNodes": 1}, dra={"attributes": attributes, "capacity": capacity})
    (s,) = build(d, node("n1")).pools["n1"]
    assert len(s["spec"]["devices"][0]["attributes"]) + len(capacity) == 32
    assert api_errors(s) == []


def test_the_device_class_selects_the_driver(device: DeviceFactory) -> None:
    objects = build(gpu(device), node("n1"))
    cls = objects.device_class
    assert cls is not None
    assert cls["kind"] == "DeviceClass"
    assert cls["metadata"]["name"] == "gpus.simdev.io"
    assert cls["spec"] == {
        "selectors": [{"cel": {"expression": 'device.driver == "gpus.simdev.io"'}}]
    }
    assert "extendedResourceName" not in cls["spec"]  # classic and DRA are separate sets
    assert api_errors(cls) == []


def test_nothing_without_dra(device: DeviceFactory) -> None:
    assert build(device("plain"), node("n1")) == dra.DraObjects(None, {})


def test_the_generation_moves_only_when_the_pool_changes(device: DeviceFactory) -> None:
    slices = build(gpu(device), node("n1")).pools["n1"]
    assert dra.pool_generation(slices, []) == 1
    live = dra.with_generation(slices, 4)
    assert dra.pool_unchanged(slices, live)
    assert dra.pool_generation(slices, live) == 4
    changed = build(gpu(device, numberDevices=3), node("n1")).pools["n1"]
    assert not dra.pool_unchanged(changed, live)
    assert dra.pool_generation(changed, live) == 5


# ---- the publisher ------------------------------------------------------------------------


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


def slices_in(kube: FakeKube) -> dict[str, dict[str, Any]]:
    return {r.name: o for r, o in kube.objects.items() if r.kind == "ResourceSlice"}


def test_publishing_creates_the_class_and_slices_once(
    kube: FakeKube, device: DeviceFactory
) -> None:
    publisher = DraPublisher(kube)  # type: ignore[arg-type]
    d = gpu(device)
    notes = publisher.publish(d, build(d, node("n1"), node("n2")))
    assert notes == ["Created DeviceClass gpus.simdev.io"]
    assert sorted(slices_in(kube)) == ["n1-gpus.simdev.io-0", "n2-gpus.simdev.io-0"]
    version = kube.version
    assert publisher.publish(d, build(d, node("n1"), node("n2"))) == []
    assert kube.version == version  # nothing rewritten


def test_a_changed_pool_gets_a_higher_generation_and_a_gone_node_loses_its_slice(
    kube: FakeKube, device: DeviceFactory
) -> None:
    publisher = DraPublisher(kube)  # type: ignore[arg-type]
    d = gpu(device, numberDevices=2)
    publisher.publish(d, build(d, node("n1"), node("n2")))
    bigger = gpu(device, numberDevices=3)
    publisher.publish(bigger, build(bigger, node("n1")))
    (only,) = slices_in(kube).values()
    assert only["spec"]["nodeName"] == "n1"
    assert only["spec"]["pool"]["generation"] == 2
    assert len(only["spec"]["devices"]) == 3


def test_a_pool_that_shrinks_drops_its_extra_slices(kube: FakeKube, device: DeviceFactory) -> None:
    publisher = DraPublisher(kube)  # type: ignore[arg-type]
    d = gpu(device, numberDevices=200)
    publisher.publish(d, build(d, node("n1")))
    assert len(slices_in(kube)) == 2
    small = gpu(device, numberDevices=10)
    publisher.publish(small, build(small, node("n1")))
    (only,) = slices_in(kube).values()
    assert only["spec"]["pool"] == {"name": "n1", "generation": 2, "resourceSliceCount": 1}


def test_a_renamed_driver_replaces_class_and_slices(kube: FakeKube, device: DeviceFactory) -> None:
    publisher = DraPublisher(kube)  # type: ignore[arg-type]
    d = gpu(device)
    publisher.publish(d, build(d, node("n1")))
    renamed = gpu(device, dra={"driverName": "sim.example.com"})
    notes = publisher.publish(renamed, build(renamed, node("n1")))
    assert "Deleted DeviceClass gpus.simdev.io" in notes
    assert [r.name for r in kube.objects if r.kind == "DeviceClass"] == ["sim.example.com"]
    assert list(slices_in(kube)) == ["n1-sim.example.com-0"]


def test_turning_dra_off_or_deleting_removes_everything(
    kube: FakeKube, device: DeviceFactory
) -> None:
    publisher = DraPublisher(kube)  # type: ignore[arg-type]
    d = gpu(device)
    other = gpu(device, "other")
    publisher.publish(d, build(d, node("n1")))
    publisher.publish(other, build(other, node("n1")))
    off = device("gpus")
    publisher.publish(off, build(off, node("n1")))
    assert all(o["metadata"]["labels"][OWNER_LABEL] == "other" for o in kube.objects.values())
    publisher.remove(other)
    assert kube.objects == {}


def test_a_cluster_without_dra_is_fine_until_dra_is_enabled(
    kube: FakeKube, device: DeviceFactory
) -> None:
    from kubernetes.client.exceptions import ApiException

    calls: list[str] = []

    def not_served(*args: Any) -> list[dict[str, Any]]:
        calls.append(args[1])
        raise ApiException(status=404, reason="Not Found")

    kube.list_labelled = not_served  # type: ignore[method-assign,assignment]
    now = [0.0]
    publisher = DraPublisher(kube, clock=lambda: now[0])  # type: ignore[arg-type]
    plain = device("plain")
    assert publisher.publish(plain, build(plain, node("n1"))) == []
    publisher.remove(gpu(device))
    # One look was enough: until the pause ends, objects without DRA ask nothing.
    assert calls == ["DeviceClass"]
    now[0] = 301.0
    publisher.publish(plain, build(plain, node("n1")))
    assert calls == ["DeviceClass", "DeviceClass"]
    with pytest.raises(ApiException):
        publisher.publish(gpu(device), build(gpu(device), node("n1")))
    assert Ref(RESOURCE, "DeviceClass", "gpus.simdev.io") not in kube.objects
