"""Chaos: kill or delete each part of the system in turn, then prove everything converged.

The stage is three SimulatedDevices with a consumer pod holding one device of each. After
every fault:
- every node offers every device again;
- the consumers still hold the very devices they had (the kubelet's pod-resources API);
- every status converges (Ready, current generation, counts that include the consumers);
- nothing is duplicated or left behind.

The time from the fault to convergence is written to bench-results/chaos.json. These tests
kill cluster processes, so they run after every other e2e test but the cluster's own
teardown tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterlib import Cluster, make, pids_of_cluster, pod_resources_socket, wait_for
from devices import Devices, plugin_namespace, pod_status, start_pod
from simdev.plugin.podresources import list_pod_devices

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "simdev-chaos"
RESULTS = REPO / "bench-results" / "chaos.json"
STAGE = ("chaos-a", "chaos-b", "chaos-c")
DEVICES_EACH = 3
KINDS = ("daemonsets", "serviceaccounts", "configmaps")


def resource(name: str) -> str:
    return f"chaos.simdev.io/{name}"


class Stage:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.devices = Devices(cluster)
        self.consumers: dict[str, str] = {}  # SimulatedDevice -> consumer pod
        self.held: dict[str, list[str]] = {}  # consumer pod -> its device IDs

    def holdings(self) -> dict[str, list[str]]:
        # Consumers run on any node: every node's kubelet lists its own pods.
        listed = {}
        for node in self.cluster.nodes():
            listed.update(list_pod_devices(pod_resources_socket(node["metadata"]["name"])))
        return {
            pod: sorted(listed.get((NAMESPACE, pod), {}).get(resource(name), []))
            for name, pod in self.consumers.items()
        }

    def converged(self) -> bool:
        cluster = self.cluster
        for name in STAGE:
            if set(cluster.allocatable(resource(name)).values()) != {DEVICES_EACH}:
                return False
            obj = self.devices.get(name)
            status = obj.get("status", {})
            if status.get("observedGeneration") != obj["metadata"]["generation"]:
                return False
            if self.devices.condition(name).get("status") != "True":
                return False
            if status.get("devices", {}).get("allocated") != 1:
                return False
            if any(len(self.devices.owned(kind, name)) != 1 for kind in KINDS):
                return False
        return self.holdings() == self.held

    def assert_converged(self, fault: str, started: float, timeout: float = 240) -> float:
        wait_for(f"convergence after: {fault}", self.converged, timeout=timeout, interval=1)
        seconds = round(time.monotonic() - started, 1)
        for name, pod in self.consumers.items():
            status = pod_status(self.cluster, NAMESPACE, pod)
            assert status["phase"] == "Running", (name, status)
            restarts = sum(c["restartCount"] for c in status["containerStatuses"])
            assert restarts == 0, f"{pod} restarted after {fault}"
        # No plugin objects for SimulatedDevices that do not exist, and none twice.
        names = {o["metadata"]["name"] for o in self.cluster.get_json("simdev")["items"]}
        for kind in KINDS:
            owners = [
                o["metadata"]["labels"]["simdev.io/simulated-device"]
                for o in self.cluster.get_json(
                    kind, "-A", "-l", "app.kubernetes.io/managed-by=simdev-operator"
                )["items"]
            ]
            assert sorted(owners) == sorted(set(owners)), (kind, owners)
            assert set(owners) <= names, (kind, owners)
        record(fault, seconds)
        return seconds


def record(fault: str, seconds: float) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault("benchmark", "chaos")
    results.setdefault("recovery_seconds", {})[fault] = seconds
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


@pytest.fixture(scope="module")
def stage(cluster: Cluster, images: dict[str, str]) -> Iterator[Stage]:
    if not cluster.local or os.geteuid() != 0:
        pytest.skip("needs the local cluster, as root")
    # The undeploy test may have run already: deploy again (idempotent otherwise).
    subprocess.run(
        ["bash", str(REPO / "scripts" / "deploy.sh")],
        env={**cluster.env(), "SKIP_IMAGES": "1"},
        check=True,
        timeout=600,
    )
    plugin_namespace(cluster, NAMESPACE)
    s = Stage(cluster)
    for name in STAGE:
        s.devices.create(
            name, namespace=NAMESPACE, resourceName=resource(name), numberDevices=DEVICES_EACH
        )
    for name in STAGE:
        s.devices.wait_ready(name)
        s.consumers[name] = start_pod(cluster, NAMESPACE, resource(name), 1)
    wait_for(
        "the consumers to run",
        lambda: all(
            pod_status(cluster, NAMESPACE, p).get("phase") == "Running"
            for p in s.consumers.values()
        ),
        timeout=120,
    )
    s.held = s.holdings()
    assert all(len(ids) == 1 for ids in s.held.values()), s.held
    s.assert_converged("baseline", time.monotonic())
    yield s
    s.devices.cleanup()
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def kill_daemon(name: str) -> float:
    """SIGKILLs one cluster process, then brings the cluster up again; returns the kill time."""
    pid = pids_of_cluster()[name]
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(f"{name} to die", lambda: not Path(f"/proc/{pid}").exists(), timeout=30)
    make(REPO, "cluster-up")
    return killed


@pytest.mark.parametrize("daemon", ["kubelet", "containerd", "kube-apiserver", "etcd"])
def test_killed_cluster_process(stage: Stage, daemon: str) -> None:
    stage.assert_converged(f"kill -9 {daemon}", kill_daemon(daemon))


def test_killed_operator_while_it_reconciles(stage: Stage) -> None:
    cluster = stage.cluster
    burst = [f"chaos-burst-{i:02d}" for i in range(20)]
    # The burst is about the operator's reconciles, not the nodes: its plugins run on one node
    # only, so a machine of two cores need not run twenty of them per node.
    first = {"kubernetes.io/hostname": cluster.nodes()[0]["metadata"]["name"]}
    for name in burst:
        stage.devices.create(
            name,
            namespace=NAMESPACE,
            resourceName=resource(name),
            numberDevices=1,
            nodeSelector=first,
        )
    # Mid-burst: the operator's process, as the OOM killer or a node failure would.
    operator_pid = int(
        subprocess.run(
            ["pgrep", "-of", "bin/simdev-operator"], text=True, capture_output=True, check=True
        ).stdout.split()[0]
    )
    os.kill(operator_pid, signal.SIGKILL)
    killed = time.monotonic()

    def all_ready() -> bool:
        return all(stage.devices.condition(n).get("status") == "True" for n in burst)

    wait_for("the burst to be Ready after the operator restarted", all_ready, timeout=300)
    for name in burst:
        assert [len(stage.devices.owned(kind, name)) for kind in KINDS] == [1, 1, 1], name
    stage.assert_converged("kill -9 the operator during 20 reconciles", killed)
    cluster.kubectl("delete", "simdev", *burst, "--timeout=300s", timeout=330)
    stage.devices.names = [n for n in stage.devices.names if n not in burst]
    leftover = cluster.get_json("daemonsets", "-n", NAMESPACE)["items"]
    assert {d["metadata"]["name"] for d in leftover} == {f"simdev-{n}" for n in STAGE}


def by_hand(stage: Stage, kind: str) -> Callable[[], None]:
    def delete() -> None:
        # One DaemonSet per object; of its pods, the first node's.
        first = stage.cluster.nodes()[0]["metadata"]["name"]
        (obj,) = [
            o
            for o in stage.devices.owned(kind, STAGE[0])
            if o["spec"].get("nodeName", first) == first
        ]
        meta = obj["metadata"]
        stage.cluster.kubectl("delete", kind, "-n", meta["namespace"], meta["name"])

    return delete


@pytest.mark.parametrize("kind", ["pods", "daemonsets"])
def test_plugin_object_deleted_by_hand(stage: Stage, kind: str) -> None:
    started = time.monotonic()
    by_hand(stage, kind)()
    stage.assert_converged(f"delete a plugin {kind[:-1]}", started)
