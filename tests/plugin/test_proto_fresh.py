"""The committed generated code matches plugin/api/deviceplugin.proto."""

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
GENERATED = ("deviceplugin_pb2.py", "deviceplugin_pb2.pyi", "deviceplugin_pb2_grpc.py")


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


def test_generated_import_is_package_relative() -> None:
    grpc_module = (API / "deviceplugin_pb2_grpc.py").read_text()
    assert "from . import deviceplugin_pb2 as" in grpc_module
    assert "\nimport deviceplugin_pb2" not in grpc_module


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
