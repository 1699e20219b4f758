"""The local cluster itself: Ready nodes of the pinned version that run ordinary pods."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterlib import E2E_NODES, Cluster, node_index, settings, wait_for

pytestmark = pytest.mark.e2e

K8S_VERSION = "v1.34.4"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"simdev-test-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    # Pods are refused until the controller manager has made the namespace's service account.
    wait_for(
        "default service account",
        lambda: (
            cluster.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode
            == 0
        ),
        timeout=60,
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def run_pod(
    cluster: Cluster, namespace: str, name: str, script: str, node: str = "", host_path: str = ""
) -> str:
    """Runs busybox to completion (on node, when given; with host_path at /host) and returns
    its logs."""
    spec: dict[str, Any] = {"nodeName": node} if node else {}
    if host_path:
        spec["volumes"] = [{"name": "host", "hostPath": {"path": host_path}}]
        spec["containers"] = [
            {
                "name": name,
                "image": "busybox:1.36",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "host", "mountPath": "/host"}],
            }
        ]
    cluster.kubectl(
        "-n", namespace, "run", name, "--image=busybox:1.36", "--image-pull-policy=IfNotPresent",
        f"--overrides={json.dumps({'spec': spec})}",
        "--restart=Never", "--command", "--", "sh", "-c", script,
    )  # fmt: skip

    def phase() -> str | None:
        p: str = cluster.get_json("-n", namespace, "pod", name)["status"].get("phase", "")
        return p if p in ("Succeeded", "Failed") else None

    assert wait_for(f"pod {name} to finish", phase, timeout=120) == "Succeeded"
    return cluster.kubectl("-n", namespace, "logs", name).stdout


def test_nodes_are_ready_with_pinned_version(cluster: Cluster) -> None:
    nodes = cluster.nodes()
    assert nodes
    if not cluster.local:
        pytest.skip("version pin and node names apply to the local cluster only")
    # The suite's nodes, each named and addressed by its own loopback address.
    assert [n["metadata"]["name"] for n in nodes] == [
        settings(i)["NODE_NAME"] for i in range(1, E2E_NODES + 1)
    ]
    for node in nodes:
        assert node["status"]["nodeInfo"]["kubeletVersion"] == K8S_VERSION
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert addresses["InternalIP"] == node["metadata"]["name"]
    server = cluster.kubectl("version", "-o", "json").stdout
    assert f'"gitVersion": "{K8S_VERSION}"' in server


def test_busybox_pod_runs_to_completion_with_readable_logs(
    cluster: Cluster, namespace: str
) -> None:
    token = uuid.uuid4().hex
    logs = run_pod(cluster, namespace, "hello", f"echo hello-{token}")
    assert logs.strip() == f"hello-{token}"


def test_pods_get_no_route_out(cluster: Cluster, namespace: str) -> None:
    if not cluster.local:
        pytest.skip("network isolation is a property of the local cluster")
    for node in cluster.nodes():
        name = node["metadata"]["name"]
        script = "ip -4 route; echo ---; cat /etc/resolv.conf"
        logs = run_pod(cluster, namespace, f"routes-{node_index(name)}", script, node=name)
        routes, resolv = logs.split("---")
        assert "default" not in routes, routes
        # Each node's pods on its own subnet.
        assert settings(node_index(name))["POD_CIDR"] in routes, (name, routes)
        # The only DNS server a pod is told about is its own loopback.
        servers = [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")]
        assert servers == ["127.0.0.1"]


def test_device_plugin_path_reaches_the_pods_own_node(cluster: Cluster, namespace: str) -> None:
    """A hostPath /var/lib/kubelet/device-plugins is its own node's directory, with that
    node's kubelet socket: what lets a plugin pod register with the right kubelet."""
    if not cluster.local or os.geteuid() != 0:
        pytest.skip("reads the local nodes' directories, as root")
    token = uuid.uuid4().hex[:8]
    for node in cluster.nodes():
        name = node["metadata"]["name"]
        marker = f"marker-{token}-{node_index(name)}"
        logs = run_pod(
            cluster, namespace, f"path-{node_index(name)}", f"touch /host/{marker}; ls /host",
            node=name, host_path="/var/lib/kubelet/device-plugins",
        )  # fmt: skip
        assert "kubelet.sock" in logs.split()
    for node in cluster.nodes():
        index = node_index(node["metadata"]["name"])
        plugin_dir = Path(settings(index)["KUBELET_DIR"]) / "device-plugins"
        markers = sorted(p.name for p in plugin_dir.glob(f"marker-{token}-*"))
        assert markers == [f"marker-{token}-{index}"]
        (plugin_dir / markers[0]).unlink()


def test_a_kubelet_root_in_use_elsewhere_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the cluster scripts need root")
    foreign = tmp_path / "someone-elses-kubelet"
    (foreign / "pods").mkdir(parents=True)
    env = {
        **os.environ,
        "KUBELET_ROOT": str(foreign),
        "SIMDEV_STATE": str(tmp_path / "state"),
        "SIMDEV_RUN": str(tmp_path / "run"),
    }
    out = subprocess.run(
        ["bash", str(REPO / "cluster" / "up.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode != 0
    assert f"{foreign} is in use by something else" in out.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["pods"]
    assert not (tmp_path / "state").exists()
