"""SimulatedDevices and consumer pods for cluster tests: create, read, wait, clean up.

Kept free of pytest fixtures so every e2e module (and benchmarks) can import it.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

from clusterlib import Cluster, wait_for

OWNER_LABEL = "simdev.io/simulated-device"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class Devices:
    """Creates SimulatedDevices for one test, reads them, and deletes them afterwards."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.names: list[str] = []

    def create(self, name: str, **spec: Any) -> str:
        body = {
            "apiVersion": "simdev.io/v1alpha1",
            "kind": "SimulatedDevice",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.cluster.apply(json.dumps(body))
        self.names.append(name)
        return name

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.cluster.get_json("simdev", name)
        return obj

    def condition(self, name: str, kind: str = "Ready") -> dict[str, Any]:
        conditions = self.get(name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), {})

    def wait_reason(self, name: str, reason: str, timeout: float = 90) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            ready = self.condition(name)
            return ready if ready.get("reason") == reason else None

        return wait_for(f"SimulatedDevice {name} to report {reason}", reached, timeout)

    def wait_ready(self, name: str, timeout: float = 120) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            obj = self.get(name)
            status = obj.get("status", {})
            current = status.get("observedGeneration") == obj["metadata"]["generation"]
            return obj if current and self.condition(name).get("status") == "True" else None

        return wait_for(f"SimulatedDevice {name} to be Ready", ready, timeout)

    def wait_counted(self, name: str, key: str, count: int, timeout: float = 60) -> dict[str, Any]:
        """The Ready object once status.devices[key] is count. The counts follow the nodes'
        reports, which the kubelet makes a moment after the plugin changed: a status that is
        Ready for the latest spec may still count the nodes as they were."""

        def counted() -> dict[str, Any] | None:
            obj = self.wait_ready(name, timeout)
            return obj if obj["status"].get("devices", {}).get(key) == count else None

        return wait_for(f"SimulatedDevice {name} to count {key}={count}", counted, timeout)

    def delete(self, name: str) -> None:
        self.cluster.kubectl("delete", "simdev", name, "--timeout=150s", timeout=180)

    def cleanup(self) -> None:
        if self.names:
            self.cluster.kubectl(
                "delete", "simdev", *self.names, "--ignore-not-found", "--timeout=150s", timeout=180
            )

    def owned(self, kind: str, name: str) -> list[dict[str, Any]]:
        """Objects of one kind that serve the SimulatedDevice name, in every namespace."""
        items: list[dict[str, Any]] = self.cluster.get_json(
            kind, "-A", "-l", f"{OWNER_LABEL}={name}"
        )["items"]
        return items


def node_count(cluster: Cluster) -> int:
    return len(cluster.nodes())


def run_consumer(
    cluster: Cluster, namespace: str, resource: str, count: int, node: str = ""
) -> str:
    """Runs a pod that asks for count devices (on node, when given) and prints its env and
    /dev; returns its log."""
    name = start_pod(cluster, namespace, resource, count, "env | sort; echo; ls -l /dev", node)
    try:
        wait_for(
            f"pod {name} to complete",
            lambda: (
                cluster.get_json("pod", "-n", namespace, name)["status"].get("phase") == "Succeeded"
            ),
            timeout=90,
        )
        return cluster.kubectl("logs", "-n", namespace, name).stdout
    finally:
        cluster.kubectl("delete", "pod", "-n", namespace, name, "--wait=false")


def printer_columns(cluster: Cluster, name: str) -> list[str]:
    line = cluster.kubectl("get", "simdev", name, "--no-headers").stdout
    return line.split()


def patch_spec(cluster: Cluster, name: str, **spec: Any) -> None:
    cluster.kubectl("patch", "simdev", name, "--type=merge", "-p", json.dumps({"spec": spec}))


def plugin_pods(devices: Devices, name: str) -> dict[str, int]:
    """Plugin pod UID -> restart count: equal before and after means nothing restarted."""
    return {
        p["metadata"]["uid"]: sum(c["restartCount"] for c in p["status"]["containerStatuses"])
        for p in devices.owned("pods", name)
    }


def plugin_logs(devices: Devices, name: str) -> dict[str, str]:
    """Node name -> the log of the SimulatedDevice's plugin pod there."""
    logs = {}
    for pod in devices.owned("pods", name):
        meta = pod["metadata"]
        log = devices.cluster.kubectl("logs", "-n", meta["namespace"], meta["name"]).stdout
        logs[pod["spec"]["nodeName"]] = log
    return logs


def capacity(cluster: Cluster, resource: str) -> dict[str, int]:
    return {
        n["metadata"]["name"]: int(n["status"].get("capacity", {}).get(resource, "0"))
        for n in cluster.nodes()
    }


def start_pod(
    cluster: Cluster,
    namespace: str,
    resource: str,
    count: int,
    command: str = "sleep 3600",
    node: str = "",
) -> str:
    """Creates a pod that runs command holding count devices (on node, when given); returns
    its name."""
    name = unique("consumer")
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "consumer",
                    "image": "busybox:1.36",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", command],
                    "resources": {"limits": {resource: str(count)}},
                }
            ],
        },
    }
    if node:
        pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    cluster.apply(json.dumps(pod))
    return name


def pod_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = cluster.get_json("pod", "-n", namespace, name)["status"]
    return status


def plugin_namespace(cluster: Cluster, name: str) -> str:
    """Creates a namespace for plugins ahead of time, as a team would (privileged level)."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "privileged"}},
    }
    cluster.apply(json.dumps(manifest))
    return name


@contextlib.contextmanager
def namespace_for_plugins(cluster: Cluster, name: str) -> Iterator[str]:
    """A plugin namespace made ahead of time (plugin_namespace), deleted afterwards."""
    plugin_namespace(cluster, name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")
