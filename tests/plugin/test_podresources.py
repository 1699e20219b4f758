"""The pod-resources client and its command line against a gRPC server with canned data."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from simdev.plugin.api import podresources_pb2 as pb
from simdev.plugin.api import podresources_pb2_grpc as pb_grpc
from simdev.plugin.podresources import list_pod_devices

pytestmark = pytest.mark.timeout(60)

CLI = [sys.executable, "-m", "simdev.plugin.podresources"]
GPU = "example.com/simple-device"
NIC = "example.com/nic"


def _devices(resource: str, *ids: str, numa: int | None = None) -> pb.ContainerDevices:
    topology = None if numa is None else pb.TopologyInfo(nodes=[pb.NUMANode(ID=numa)])
    return pb.ContainerDevices(resource_name=resource, device_ids=ids, topology=topology)


CANNED = pb.ListPodResourcesResponse(
    pod_resources=[
        pb.PodResources(
            namespace="default",
            name="trainer",
            containers=[
                # Like the kubelet: a resource in several entries, a device in two containers.
                pb.ContainerResources(
                    name="init",
                    devices=[_devices(GPU, "gpu-0", numa=0)],
                ),
                pb.ContainerResources(
                    name="main",
                    devices=[
                        _devices(GPU, "gpu-0", "gpu-1", numa=0),
                        _devices(GPU, "gpu-3", numa=1),
                        _devices(NIC, "nic-a"),
                    ],
                    cpu_ids=[2, 3],
                ),
                pb.ContainerResources(name="sidecar", devices=[_devices(GPU, "gpu-2")]),
            ],
        ),
        pb.PodResources(
            namespace="team-b",
            name="trainer",
            containers=[pb.ContainerResources(name="main", devices=[_devices(NIC, "nic-b")])],
        ),
        pb.PodResources(
            namespace="kube-system",
            name="coredns",
            containers=[pb.ContainerResources(name="coredns")],
        ),
    ]
)

EXPECTED = {
    ("default", "trainer"): {GPU: ["gpu-0", "gpu-1", "gpu-2", "gpu-3"], NIC: ["nic-a"]},
    ("team-b", "trainer"): {NIC: ["nic-b"]},
    ("kube-system", "coredns"): {},
}


class CannedLister(pb_grpc.PodResourcesListerServicer):
    def __init__(self) -> None:
        self.calls = 0

    def List(
        self, request: pb.ListPodResourcesRequest, context: grpc.ServicerContext
    ) -> pb.ListPodResourcesResponse:
        self.calls += 1
        return CANNED


@pytest.fixture
def lister(plugin_dir: Path) -> Iterator[tuple[Path, CannedLister]]:
    """A PodResourcesLister on pod-resources/kubelet.sock in a short temporary directory."""
    socket = plugin_dir / "pod-resources" / "kubelet.sock"
    socket.parent.mkdir()
    servicer = CannedLister()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_PodResourcesListerServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    assert server.add_insecure_port(f"unix:{socket}") != 0
    server.start()
    yield socket, servicer
    server.stop(0).wait()


def test_client_merges_containers_per_pod(lister: tuple[Path, CannedLister]) -> None:
    socket, servicer = lister
    assert list_pod_devices(socket) == EXPECTED
    assert servicer.calls == 1


def test_client_raises_when_nothing_serves(plugin_dir: Path) -> None:
    with pytest.raises(grpc.RpcError) as info:
        list_pod_devices(plugin_dir / "kubelet.sock", timeout=2)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_cli_prints_json(lister: tuple[Path, CannedLister]) -> None:
    socket, _ = lister
    out = subprocess.run(
        [*CLI, "--socket", str(socket), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        {"namespace": "default", "name": "trainer", "devices": EXPECTED["default", "trainer"]},
        {"namespace": "kube-system", "name": "coredns", "devices": {}},
        {"namespace": "team-b", "name": "trainer", "devices": {NIC: ["nic-b"]}},
    ]


def test_cli_prints_text(lister: tuple[Path, CannedLister]) -> None:
    socket, _ = lister
    out = subprocess.run(
        [*CLI, "--socket", str(socket)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"default/trainer {NIC}=nic-a {GPU}=gpu-0,gpu-1,gpu-2,gpu-3",
        "kube-system/coredns -",
        f"team-b/trainer {NIC}=nic-b",
    ]


def test_cli_fails_without_a_socket(plugin_dir: Path) -> None:
    out = subprocess.run(
        [*CLI, "--socket", str(plugin_dir / "missing.sock"), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert out.stdout == ""
    assert "no socket at" in out.stderr
