"""make cluster-up recovers from a killed cluster; make cluster-down leaves nothing behind.

These take the whole cluster down, so they run after every other cluster test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlib import Cluster, make, pids_of_cluster, settings, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.disruptive]

REPO = Path(__file__).resolve().parents[2]
DAEMONS = ("kubelet", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")


def lines_of(*cmd: str) -> list[str]:
    return subprocess.run(list(cmd), text=True, capture_output=True).stdout.splitlines()


def leftovers() -> list[str]:
    """Processes, mounts, routes and links of the cluster that are still there."""
    cfg = settings()
    found = [
        f"process: {line}"
        for pattern in (
            "bin/kube-",
            "bin/kubelet",
            f"containerd --config {cfg['SIMDEV_STATE']}",
            f"containerd-shim.*-address {cfg['CONTAINERD_SOCK']}",
        )
        for line in lines_of("pgrep", "-af", pattern)
    ]
    roots = (cfg["SIMDEV_RUN"], f"{cfg['SIMDEV_STATE']}/containerd", "/var/lib/kubelet/pods")
    found += [f"mount: {target}" for target in mounts() if target.startswith(roots)]
    found += [
        f"route: {r}"
        for r in lines_of("ip", "route", "show", "type", "blackhole")
        if cfg["SERVICE_CIDR"] in r
    ]
    if lines_of("ip", "link", "show", cfg["BRIDGE"]):
        found.append(f"link: {cfg['BRIDGE']}")
    return found


def run_busybox(cluster: Cluster, name: str) -> None:
    cluster.kubectl("delete", "pod", name, "--ignore-not-found", "--wait=true")
    cluster.kubectl(
        "run", name, "--image=busybox:1.36", "--image-pull-policy=IfNotPresent",
        "--restart=Never", "--", "sh", "-c", "echo alive",
    )  # fmt: skip
    wait_for(
        f"pod {name} to succeed",
        lambda: cluster.get_json("pod", name)["status"].get("phase") == "Succeeded",
        timeout=120,
    )
    assert cluster.kubectl("logs", name).stdout.strip() == "alive"
    cluster.kubectl("delete", "pod", name, "--wait=false")


@pytest.fixture
def local(cluster: Cluster) -> Cluster:
    if not cluster.local or os.geteuid() != 0:
        pytest.skip("needs the local cluster, as root")
    return cluster


def test_cluster_up_recovers_from_killed_processes(local: Cluster) -> None:
    # A pod running when everything dies leaves mounts, a network namespace and a sandbox.
    local.kubectl("run", "victim", "--image=busybox:1.36", "--restart=Never", "--", "sleep", "600")
    wait_for(
        "pod victim to run",
        lambda: local.get_json("pod", "victim")["status"].get("phase") == "Running",
        timeout=120,
    )
    pids = pids_of_cluster()
    assert set(DAEMONS) | {"containerd"} <= set(pids), pids
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    subprocess.run(
        ["pkill", "-KILL", "-f", f"containerd-shim.*-address {settings()['CONTAINERD_SOCK']}"],
        check=False,
    )
    wait_for("the killed processes to be gone", lambda: not pids_of_cluster(), timeout=30)

    started = time.monotonic()
    make(REPO, "cluster-up", timeout=300)
    assert time.monotonic() - started < 120
    local.wait_node_ready()
    run_busybox(local, "after-recovery")
    local.kubectl("delete", "pod", "victim", "--wait=false", "--grace-period=0", "--force")


def mounts() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


@pytest.fixture
def decoys(tmp_path: Path) -> Iterator[list[Path]]:
    """Things on the host that look like a cluster's but are someone else's."""
    netns = Path("/run/netns") / f"cni-not-simdev-{os.getpid()}"
    netns.parent.mkdir(exist_ok=True)
    netns.touch()
    subprocess.run(["mount", "--bind", "/dev/null", str(netns)], check=True)
    yield [netns]
    subprocess.run(["umount", str(netns)], check=False)
    netns.unlink(missing_ok=True)


def test_cluster_down_leaves_nothing_and_up_starts_again(
    local: Cluster, decoys: list[Path]
) -> None:
    make(REPO, "cluster-down", timeout=300)
    assert leftovers() == []
    # Only what the cluster's own records name is removed.
    for decoy in decoys:
        assert decoy.exists() and str(decoy) in mounts(), decoy
    make(REPO, "cluster-up", timeout=300)
    local.wait_node_ready()
    run_busybox(local, "after-restart")
