"""The standalone plugin deployment (manifests/standalone-plugin) on a real kubelet."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from clusterlib import Cluster, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests" / "standalone-plugin"
RESOURCE = "example.com/simple-device"
NAMESPACE = "simple-device-plugin"


def plugin_env() -> dict[str, str]:
    """The env the standalone DaemonSet gives the plugin, read from the manifest itself."""
    docs = [
        d
        for f in sorted(MANIFESTS.glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
        if d and d.get("kind") == "DaemonSet"
    ]
    assert len(docs) == 1
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def release_resource(cluster: Cluster) -> None:
    """Makes the resource free for the standalone plugin: the demo's sample uses it too."""
    crd = cluster.kubectl("get", "crd", "simulateddevices.simdev.io", check=False)
    if crd.returncode == 0:
        for item in cluster.get_json("simulateddevices")["items"]:
            if item["spec"].get("resourceName") == RESOURCE:
                cluster.kubectl("delete", "simulateddevice", item["metadata"]["name"])
    others = {node: n for node, n in cluster.allocatable(RESOURCE).items() if n}
    if others:
        # Allocatable drops once the other plugin has stopped; anything else is a stranger.
        try:
            cluster.wait_allocatable(RESOURCE, 0, timeout=60)
        except TimeoutError:
            pytest.fail(f"{RESOURCE} is still offered on {others} by a plugin we did not start")

    # The operator deletes a namespace it created along with its last SimulatedDevice, and
    # the sample's namespace is the standalone manifest's too: let that deletion finish.
    def namespace_settled() -> bool:
        ns = cluster.kubectl("get", "namespace", NAMESPACE, "-o", "json", check=False)
        return ns.returncode != 0 or json.loads(ns.stdout)["status"]["phase"] != "Terminating"

    wait_for(f"namespace {NAMESPACE} to finish terminating", namespace_settled, timeout=120)


@pytest.fixture(scope="module")
def standalone(cluster: Cluster, images: dict[str, str]) -> Iterator[Cluster]:
    release_resource(cluster)
    cluster.kubectl("apply", "-k", str(MANIFESTS))
    cluster.kubectl("-n", NAMESPACE, "rollout", "status", "daemonset", "--timeout=120s")
    cluster.wait_allocatable(RESOURCE, int(plugin_env().get("NUMBER_DEVICES", "2")), timeout=60)
    yield cluster
    cluster.kubectl("delete", "-k", str(MANIFESTS), "--ignore-not-found", "--timeout=120s")
    cluster.wait_allocatable(RESOURCE, 0, timeout=60)


def plugin_pod(cluster: Cluster, node: str) -> dict[str, object]:
    """The DaemonSet's one pod on node."""
    pods = cluster.get_json("-n", NAMESPACE, "pods", "--field-selector", f"spec.nodeName={node}")
    assert len(pods["items"]) == 1, [p["metadata"]["name"] for p in pods["items"]]
    pod: dict[str, object] = pods["items"][0]
    return pod


def test_node_reports_two_devices(standalone: Cluster) -> None:
    assert set(standalone.allocatable(RESOURCE).values()) == {2}
    for node in standalone.nodes():
        assert node["status"]["capacity"][RESOURCE] == "2"


def test_consumer_sees_env_and_device_file(standalone: Cluster) -> None:
    env = plugin_env()
    prefix, file_prefix = env["ENV_PREFIX"], env["DEVICE_FILE_PREFIX"]
    pod = f"""
apiVersion: v1
kind: Pod
metadata: {{name: consumer, namespace: {NAMESPACE}}}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: busybox:1.36
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'env | sort; ls -l /dev']
    resources:
      limits: {{{RESOURCE}: 1}}
"""
    standalone.apply(pod)
    try:
        wait_for(
            "consumer pod to succeed",
            lambda: (
                standalone.get_json("-n", NAMESPACE, "pod", "consumer")["status"].get("phase")
                == "Succeeded"
            ),
            timeout=120,
        )
        logs = standalone.kubectl("-n", NAMESPACE, "logs", "consumer").stdout
    finally:
        standalone.kubectl("-n", NAMESPACE, "delete", "pod", "consumer", "--wait=false")
    env_lines = dict(line.split("=", 1) for line in logs.splitlines() if "=" in line)
    visible = env_lines[f"{prefix}_VISIBLE_DEVICES"].split(",")
    assert len(visible) == 1
    index = visible[0].rsplit("-", 1)[1]
    device_path = f"/dev/{file_prefix}-{index}"
    assert env_lines[f"{prefix}_{index}"] == device_path
    # The device node is mapped into the container as a character device.
    assert any(
        line.startswith("c") and line.endswith(f"{file_prefix}-{index}")
        for line in logs.splitlines()
    ), logs


def test_kubelet_restart_restores_devices_without_touching_plugin(standalone: Cluster) -> None:
    if not standalone.local:
        pytest.skip("restarting the kubelet process needs the local cluster")
    node = standalone.nodes()[0]["metadata"]["name"]
    before = plugin_pod(standalone, node)
    name = before["metadata"]["name"]  # type: ignore[index]

    def reregistrations() -> int:
        logs = standalone.kubectl("-n", NAMESPACE, "logs", name).stdout
        return logs.count("re-registered")

    count = reregistrations()
    subprocess.run(
        ["bash", str(REPO / "cluster" / "restart-kubelet.sh")],
        env={**os.environ, "NODE": node},
        check=True,
        timeout=240,
    )
    # Within 30 s of the kubelet coming back, the devices are allocatable again.
    standalone.wait_allocatable(RESOURCE, 2, timeout=30)
    # The plugin noticed the new kubelet and registered again (not a stale node status).
    wait_for("the plugin to re-register", lambda: reregistrations() > count, timeout=30)
    after = plugin_pod(standalone, node)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # type: ignore[index]
    restarts = after["status"]["containerStatuses"][0]["restartCount"]  # type: ignore[index]
    assert restarts == before["status"]["containerStatuses"][0]["restartCount"]  # type: ignore[index]
