"""make cluster-up recovers from a killed cluster; make cluster-down leaves nothing behind.

These take the whole cluster down, so they run after every other cluster test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlib import Cluster, make, node_index, pids_of_cluster, settings, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.disruptive]

REPO = Path(__file__).resolve().parents[2]
DAEMONS = ("kubelet", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")


def lines_of(*cmd: str) -> list[str]:
    return subprocess.run(list(cmd), text=True, capture_output=True).stdout.splitlines()


def leftovers(nodes: int) -> list[str]:
    """Processes, mounts, routes, rules and links of the cluster's nodes that are still there."""
    cfg = settings()
    found = [
        f"process: {line}"
        # Only processes that name this cluster's state: other clusters may run on the machine.
        for pattern in (
            f"bin/kube-.*{cfg['SIMDEV_STATE']}/",
            f"bin/kubelet .*{cfg['SIMDEV_STATE']}/",
            f"containerd --config {cfg['SIMDEV_STATE']}",
            # Every node's containerd socket lies under the run directory.
            f"containerd-shim.*-address {cfg['SIMDEV_RUN']}/",
        )
        for line in lines_of("pgrep", "-af", pattern)
    ]
    # The extra nodes' namespaces are pinned under the run directory too.
    roots = (cfg["SIMDEV_RUN"], f"{cfg['SIMDEV_STATE']}/containerd", "/var/lib/kubelet/pods")
    found += [f"mount: {target}" for target in mounts() if target.startswith(roots)]
    found += [
        f"route: {r}"
        for r in lines_of("ip", "route", "show", "type", "blackhole")
        if cfg["SERVICE_CIDR"] in r
    ]
    rules = lines_of("iptables", "-S", "FORWARD")
    for node in range(1, nodes + 1):
        node_cfg = settings(node)
        if lines_of("ip", "link", "show", node_cfg["BRIDGE"]):
            found.append(f"link: {node_cfg['BRIDGE']}")
        found += [f"rule: {r}" for r in rules if node_cfg["POD_CIDR"] in r]
        # An extra node's cgroups are its own, node 1's pod cgroups (kubepods) too: a process
        # left there is one of the node's containers.
        procs = Path("/sys/fs/cgroup/pids", node_cgroup(node_cfg)).rglob("cgroup.procs")
        found += [f"process in {p.parent}: {p.read_text()}" for p in procs if p.read_text()]
    return found


def node_cgroup(node_cfg: dict[str, str]) -> str:
    """The node's own cgroups: an extra node's root, or node 1's pods (its root is "/")."""
    return node_cfg["CGROUP_ROOT"].lstrip("/") or "kubepods"


def run_busybox(cluster: Cluster, name: str, node: str) -> None:
    """Runs a pod to completion on one node and reads its log."""
    cluster.kubectl("delete", "pod", name, "--ignore-not-found", "--wait=true")
    cluster.kubectl(
        "run", name, "--image=busybox:1.36", "--image-pull-policy=IfNotPresent",
        f"--overrides={json.dumps({'spec': {'nodeName': node}})}",
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


def run_victims(cluster: Cluster) -> None:
    """A pod on every node: running when everything dies, it leaves mounts, a network
    namespace and a sandbox behind on its node."""
    victims = []
    for node in cluster.nodes():
        name = node["metadata"]["name"]
        victim = f"victim-{node_index(name)}"
        cluster.kubectl(
            "run", victim, "--image=busybox:1.36", "--restart=Never",
            f"--overrides={json.dumps({'spec': {'nodeName': name}})}", "--", "sleep", "600",
        )  # fmt: skip
        victims.append(victim)
    wait_for(
        f"pods {victims} to run",
        lambda: all(
            cluster.get_json("pod", v)["status"].get("phase") == "Running" for v in victims
        ),
        timeout=120,
    )


def test_cluster_up_recovers_from_killed_processes(local: Cluster) -> None:
    nodes = len(local.nodes())
    run_victims(local)
    pids = pids_of_cluster()
    per_node = {
        f"{daemon}{settings(n)['SUFFIX']}"
        for n in range(1, nodes + 1)
        for daemon in ("kubelet", "containerd")
    }
    assert set(DAEMONS) | per_node <= set(pids), pids
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    subprocess.run(
        ["pkill", "-KILL", "-f", f"containerd-shim.*-address {settings()['SIMDEV_RUN']}/"],
        check=False,
    )
    wait_for("the killed processes to be gone", lambda: not pids_of_cluster(), timeout=30)

    started = time.monotonic()
    make(REPO, "cluster-up", timeout=300)
    assert time.monotonic() - started < 120
    assert len(local.nodes()) == nodes  # the recorded count, without NODES
    local.wait_node_ready()
    for node in local.nodes():
        run_busybox(local, "after-recovery", node["metadata"]["name"])
    for n in range(1, nodes + 1):
        local.kubectl("delete", "pod", f"victim-{n}", "--wait=false", "--grace-period=0", "--force")


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
    nodes = len(local.nodes())
    make(REPO, "cluster-down", timeout=300)
    assert leftovers(nodes) == []
    # Only what the cluster's own records name is removed.
    for decoy in decoys:
        assert decoy.exists() and str(decoy) in mounts(), decoy
    make(REPO, "cluster-up", timeout=300)
    local.wait_node_ready()
    for node in local.nodes():
        run_busybox(local, "after-restart", node["metadata"]["name"])


def test_nodes_shrink_and_grow(local: Cluster) -> None:
    nodes = len(local.nodes())
    if nodes < 2:
        pytest.skip("needs a cluster of several nodes")
    last = settings(nodes)
    make(REPO, "cluster-up", f"NODES={nodes - 1}", timeout=300)
    assert [n["metadata"]["name"] for n in local.nodes()] == [
        settings(n)["NODE_NAME"] for n in range(1, nodes)
    ]
    # The removed node left nothing: no process, state, bridge, rule or cgroup.
    assert f"kubelet{last['SUFFIX']}" not in pids_of_cluster()
    assert not Path(last["KUBELET_DIR"]).exists()
    assert not lines_of("ip", "link", "show", last["BRIDGE"])
    assert not [r for r in lines_of("iptables", "-S", "FORWARD") if last["POD_CIDR"] in r]
    assert not list(Path("/sys/fs/cgroup").glob(f"*{last['CGROUP_ROOT']}"))

    make(REPO, "cluster-up", f"NODES={nodes}", timeout=300)
    local.wait_node_ready()
    assert len(local.nodes()) == nodes
    run_busybox(local, "after-growing", last["NODE_NAME"])
