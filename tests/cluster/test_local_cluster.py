"""The local cluster itself: a Ready node of the pinned version that runs ordinary pods."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlib import Cluster, wait_for

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


def run_pod(cluster: Cluster, namespace: str, name: str, script: str) -> str:
    """Runs busybox to completion and returns its logs."""
    cluster.kubectl(
        "-n", namespace, "run", name, "--image=busybox:1.36", "--image-pull-policy=IfNotPresent",
        "--restart=Never", "--command", "--", "sh", "-c", script,
    )  # fmt: skip

    def phase() -> str | None:
        p: str = cluster.get_json("-n", namespace, "pod", name)["status"].get("phase", "")
        return p if p in ("Succeeded", "Failed") else None

    assert wait_for(f"pod {name} to finish", phase, timeout=120) == "Succeeded"
    return cluster.kubectl("-n", namespace, "logs", name).stdout


def test_node_is_ready_with_pinned_version(cluster: Cluster) -> None:
    nodes = cluster.nodes()
    assert len(nodes) == 1
    info = nodes[0]["status"]["nodeInfo"]
    if not cluster.local:
        pytest.skip("version pin applies to the local cluster only")
    assert info["kubeletVersion"] == K8S_VERSION
    addresses = {a["type"]: a["address"] for a in nodes[0]["status"]["addresses"]}
    assert addresses["InternalIP"] == "127.0.0.1"
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
    logs = run_pod(cluster, namespace, "routes", "ip -4 route; echo ---; cat /etc/resolv.conf")
    routes, resolv = logs.split("---")
    assert "default" not in routes, routes
    assert "10.244.0.0/24" in routes
    # The only DNS server a pod is told about is its own loopback.
    servers = [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")]
    assert servers == ["127.0.0.1"]


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
