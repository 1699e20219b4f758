"""Helpers for tests that need a real cluster: kubectl, waiting, and image loading.

Kept free of pytest so benchmarks and scripts can reuse it.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

PLUGIN_IMAGE = "localhost/simdev-plugin:0.1.0"
OPERATOR_IMAGE = "localhost/simdev-operator:0.1.0"
REPO_ROOT = Path(__file__).resolve().parent.parent
# The only server address the local cluster ever has.
LOCAL_SERVER = "https://127.0.0.1:6443"
# The e2e suite runs on two local nodes, so every test meets a cluster of several.
E2E_NODES = 2


def make(repo: Path, *targets: str, timeout: float = 5400) -> str:
    """Runs make quietly in the repo and returns its stdout (targets print their result last)."""
    out = subprocess.run(
        ["make", "-s", "-C", str(repo), *targets],
        check=True,
        text=True,
        stdout=subprocess.PIPE,
        timeout=timeout,
    )
    return out.stdout


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 120, interval: float = 1.0
) -> T:
    """Polls probe until it returns something truthy; fails naming what was awaited."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as err:  # a probe may fail while things settle
            last = err
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})")


@dataclass
class Cluster:
    kubeconfig: Path
    kubectl_bin: str = "kubectl"
    local: bool = False

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            text=True,
            capture_output=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def env(self) -> dict[str, str]:
        """Environment for subprocesses (make targets, scripts) aimed at this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECTL": self.kubectl_bin}

    def refuse_unless_test_cluster(self) -> None:
        """Tests create and delete cluster-wide objects: never run them against a real cluster."""
        cfg = json.loads(self.kubectl("config", "view", "--minify", "-o", "json").stdout)
        context = cfg["current-context"]
        server = cfg["clusters"][0]["cluster"]["server"]
        if server == LOCAL_SERVER and context == "simdev-local":
            return
        if context.startswith("kind-") and "127.0.0.1" in server:
            return
        raise RuntimeError(
            f"refusing to run cluster tests against context {context!r} ({server}): "
            "only the local simdev cluster or a kind cluster on 127.0.0.1 is allowed"
        )

    def nodes(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get_json("nodes")["items"]
        return items

    def wait_node_ready(self, timeout: float = 180) -> None:
        def ready() -> bool:
            nodes = self.nodes()
            return bool(nodes) and all(
                any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n["status"]["conditions"]
                )
                for n in nodes
            )

        wait_for("every node Ready", ready, timeout)

    def allocatable(self, resource: str) -> dict[str, int]:
        """Node name -> allocatable count of an extended resource (0 when absent)."""
        return {
            n["metadata"]["name"]: int(n["status"].get("allocatable", {}).get(resource, "0"))
            for n in self.nodes()
        }

    def wait_allocatable(self, resource: str, count: int, timeout: float = 120) -> None:
        wait_for(
            f"every node to offer {resource}={count}",
            lambda: all(v == count for v in self.allocatable(resource).values()),
            timeout,
        )


@functools.cache
def settings(node: int = 1) -> dict[str, str]:
    """The cluster scripts' own settings for one node (1-based), so tests never restate a path."""
    names = (
        "SIMDEV_RUN", "SIMDEV_STATE", "CONTAINERD_SOCK", "SERVICE_CIDR", "BRIDGE", "POD_CIDR",
        "NODE_NAME", "SUFFIX", "KUBELET_DIR", "CGROUP_ROOT",
    )  # fmt: skip
    script = f". cluster/lib/common.sh; use_node {node}; " + "; ".join(
        f'echo "{n}=${n}"' for n in names
    )
    out = subprocess.run(
        ["bash", "-c", script], cwd=REPO_ROOT, check=True, text=True, capture_output=True
    )
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


def node_index(node_name: str) -> int:
    """A local node's number: 127.0.0.N is node N."""
    return int(node_name.rsplit(".", 1)[1])


def pod_resources_socket(node_name: str) -> Path:
    """The pod-resources socket of a local node's kubelet, as the host sees it."""
    kubelet_dir = Path(settings(node_index(node_name))["KUBELET_DIR"])
    return kubelet_dir / "pod-resources" / "kubelet.sock"


def pids_of_cluster() -> dict[str, int]:
    run = Path(settings()["SIMDEV_RUN"])
    found = {}
    for f in run.glob("*.pid"):
        pid = int(f.read_text().strip())
        if Path(f"/proc/{pid}").exists():
            found[f.stem] = pid
    return found


def local_cluster(repo: Path, nodes: int = E2E_NODES) -> Cluster:
    """Brings the local cluster up with this many nodes (idempotent, seconds when already up)."""
    # Fake nodes left by a KWOK_NODES run go: tests expect every node to be real unless they
    # ask for fake ones (the fake_nodes fixture).
    make(repo, "cluster-up", f"NODES={nodes}", "KWOK_NODES=0")
    kubeconfig = Path(make(repo, "cluster-kubeconfig").strip().splitlines()[-1])
    kubectl = make(repo, "cluster-kubectl").strip().splitlines()[-1]
    return Cluster(kubeconfig, kubectl, local=True)


def ensure_images(repo: Path, cluster: Cluster) -> dict[str, str]:
    """Builds the project images (cached by content) and loads them into the cluster."""
    load = "cluster-load-images" if cluster.local else "kind-load-images"
    subprocess.run(
        ["make", "-s", "-C", str(repo), "images", load],
        check=True,
        env=cluster.env(),
        timeout=3600,
    )
    return {"plugin": PLUGIN_IMAGE, "operator": OPERATOR_IMAGE}
