"""The committed generated code matches the .proto files in plugin/api, and their wire names."""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
API = REPO / "plugin" / "api"
PROTOS = ("deviceplugin", "podresources", "pluginregistration", "dra")
GENERATED = tuple(
    f"{name}{suffix}" for name in PROTOS for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
)


def test_every_proto_is_checked() -> None:
    assert sorted(p.stem for p in API.glob("*.proto")) == sorted(PROTOS)


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) regenerates the code")
    subprocess.run(
        ["bash", str(REPO / "scripts" / "gen-proto.sh"), str(tmp_path)],
        env={**os.environ, "PYTHON": sys.executable},
        check=True,
        capture_output=True,
        timeout=60,
    )
    stale = []
    for name in GENERATED:
        committed = (API / name).read_text()
        fresh = (tmp_path / name).read_text()
        if committed != fresh:
            diff = difflib.unified_diff(
                committed.splitlines(), fresh.splitlines(), f"committed/{name}", f"fresh/{name}"
            )
            stale.append("\n".join(list(diff)[:20]))
    assert not stale, "run scripts/gen-proto.sh and commit the result:\n" + "\n".join(stale)


@pytest.mark.parametrize("name", PROTOS)
def test_generated_import_is_package_relative(name: str) -> None:
    grpc_module = (API / f"{name}_pb2_grpc.py").read_text()
    assert f"from . import {name}_pb2 as" in grpc_module
    assert f"\nimport {name}_pb2" not in grpc_module


def test_wire_names_match_the_kubelet_api() -> None:
    from simdev.plugin.api import deviceplugin_pb2 as pb

    services = pb.DESCRIPTOR.services_by_name
    assert pb.DESCRIPTOR.package == "v1beta1"
    assert [m.name for m in services["Registration"].methods] == ["Register"]
    assert [m.name for m in services["DevicePlugin"].methods] == [
        "GetDevicePluginOptions",
        "ListAndWatch",
        "GetPreferredAllocation",
        "Allocate",
        "PreStartContainer",
    ]
    fields = {
        name: {f.name: f.number for f in pb.DESCRIPTOR.message_types_by_name[name].fields}
        for name in ("Device", "ContainerAllocateResponse", "ContainerPreferredAllocationRequest")
    }
    assert fields["Device"] == {"ID": 1, "health": 2, "topology": 3}
    assert fields["ContainerAllocateResponse"] == {
        "envs": 1,
        "mounts": 2,
        "devices": 3,
        "annotations": 4,
        "cdi_devices": 5,
    }
    assert fields["ContainerPreferredAllocationRequest"] == {
        "available_deviceIDs": 1,
        "must_include_deviceIDs": 2,
        "allocation_size": 3,
    }


def test_pod_resources_wire_names_match_the_kubelet_api() -> None:
    from simdev.plugin.api import podresources_pb2 as pb

    assert pb.DESCRIPTOR.package == "v1"
    service = pb.DESCRIPTOR.services_by_name["PodResourcesLister"]
    assert service.full_name == "v1.PodResourcesLister"
    assert [m.name for m in service.methods] == ["List", "GetAllocatableResources", "Get"]
    fields = {
        name: {f.name: f.number for f in message.fields}
        for name, message in pb.DESCRIPTOR.message_types_by_name.items()
    }
    assert fields["ListPodResourcesRequest"] == {}
    assert fields["ListPodResourcesResponse"] == {"pod_resources": 1}
    assert fields["PodResources"] == {"name": 1, "namespace": 2, "containers": 3}
    assert fields["ContainerResources"] == {"name": 1, "devices": 2, "cpu_ids": 3, "memory": 4}
    assert fields["ContainerDevices"] == {"resource_name": 1, "device_ids": 2, "topology": 3}
    assert fields["ContainerMemory"] == {"memory_type": 1, "size": 2, "topology": 3}
    assert fields["TopologyInfo"] == {"nodes": 1}
    assert fields["NUMANode"] == {"ID": 1}
    assert fields["AllocatableResourcesRequest"] == {}
    assert fields["AllocatableResourcesResponse"] == {"devices": 1, "cpu_ids": 2, "memory": 3}
    assert fields["GetPodResourcesRequest"] == {"pod_name": 1, "pod_namespace": 2}
    assert fields["GetPodResourcesResponse"] == {"pod_resources": 1}


def test_plugin_registration_wire_names_match_the_kubelet_api() -> None:
    from simdev.plugin.api import pluginregistration_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["Registration"]
    assert service.full_name == "pluginregistration.Registration"
    assert [m.name for m in service.methods] == ["GetInfo", "NotifyRegistrationStatus"]
    fields = {
        name: {f.name: f.number for f in message.fields}
        for name, message in pb.DESCRIPTOR.message_types_by_name.items()
    }
    assert fields == {
        "PluginInfo": {"type": 1, "name": 2, "endpoint": 3, "supported_versions": 4},
        "RegistrationStatus": {"plugin_registered": 1, "error": 2},
        "RegistrationStatusResponse": {},
        "InfoRequest": {},
    }


def test_dra_wire_names_match_the_kubelet_api() -> None:
    from simdev.plugin.api import dra_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["DRAPlugin"]
    # What the kubelet dials: /k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/<method>.
    assert service.full_name == "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"
    assert [m.name for m in service.methods] == [
        "NodePrepareResources",
        "NodeUnprepareResources",
    ]
    fields = {
        name: {f.name: f.number for f in message.fields}
        for name, message in pb.DESCRIPTOR.message_types_by_name.items()
    }
    assert fields == {
        "NodePrepareResourcesRequest": {"claims": 1},
        "NodePrepareResourcesResponse": {"claims": 1},
        "NodePrepareResourceResponse": {"devices": 1, "error": 2},
        "Device": {"request_names": 1, "pool_name": 2, "device_name": 3, "cdi_device_ids": 4},
        "NodeUnprepareResourcesRequest": {"claims": 1},
        "NodeUnprepareResourcesResponse": {"claims": 1},
        "NodeUnprepareResourceResponse": {"error": 1},
        "Claim": {"namespace": 1, "uid": 2, "name": 3},
    }
