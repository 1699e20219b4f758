"""make undeploy on a real cluster: the SimulatedDevices go first, then the operator and CRD.

It removes the operator and the CRD that every other operator test needs, so it is marked
last, like the helm test, which removes them too: it deploys again first. The cluster is
left without the operator: the next session's deploy fixture runs scripts/deploy.sh again,
which installs everything afresh.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from clusterlib import Cluster, wait_for

# Undeploy's own waits are bounded at a few minutes; the default test timeout is shorter.
pytestmark = [pytest.mark.e2e, pytest.mark.last, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "simdev-system"
OPERATOR = "simdev-operator"
CRD = "simulateddevices.simdev.io"
PLUGINS = "app.kubernetes.io/managed-by=simdev-operator"
EXISTS = ("live", "deleting")
# What the manifests install besides the operator (the ConfigMap goes with its namespace).
INSTALLED = [
    ("validatingadmissionpolicy", "simdev-simulateddevices"),
    ("validatingadmissionpolicybinding", "simdev-simulateddevices"),
    ("validatingadmissionpolicy", "simdev-operator-namespaces"),
    ("validatingadmissionpolicybinding", "simdev-operator-namespaces"),
    ("clusterrole", "simdev-viewer"),
    ("clusterrole", "simdev-editor"),
]


def state(cluster: Cluster, *args: str) -> str:
    """Whether an object is live, deleting or gone; unknown when kubectl fails otherwise."""
    proc = cluster.kubectl(
        "get", *args, "-o", "jsonpath={.metadata.deletionTimestamp}", check=False
    )
    if proc.returncode == 0:
        return "deleting" if proc.stdout.strip() else "live"
    return "gone" if "NotFound" in proc.stderr else "unknown"


def absent(cluster: Cluster, *args: str) -> bool:
    return state(cluster, *args) == "gone"


def test_undeploy_deletes_the_devices_first_then_the_operator_and_the_crd(
    operator: Cluster, tmp_path: Path
) -> None:
    cluster = operator
    # The helm test may have removed the operator, and a cluster test restarted the cluster:
    # deploy again (idempotent), which waits until the operator is available.
    subprocess.run(
        ["bash", str(REPO / "scripts" / "deploy.sh")],
        env={**cluster.env(), "SKIP_IMAGES": "1"},
        check=True,
        timeout=600,
    )
    name = f"e2e-undeploy-{uuid.uuid4().hex[:6]}"
    resource = f"e2e.simdev.io/{name}"
    body = {
        "apiVersion": "simdev.io/v1alpha1",
        "kind": "SimulatedDevice",
        "metadata": {"name": name},
        # Its own namespace, which the operator creates.
        "spec": {"namespace": name, "resourceName": resource, "numberDevices": 2},
    }
    cluster.apply(json.dumps(body))
    try:
        cluster.wait_allocatable(resource, 2)
        labels = cluster.get_json("namespace", name)["metadata"]["labels"]
        assert labels["simdev.io/created-namespace"] == "true"
        for kind, installed in INSTALLED:
            assert state(cluster, kind, installed) == "live", f"{kind} {installed} is missing"

        log = tmp_path / "undeploy.log"
        with log.open("w") as out:
            undeploy = subprocess.Popen(
                ["bash", str(REPO / "scripts" / "undeploy.sh")],
                env=cluster.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            # Watched while it runs: the operator may go only once the device is gone, since
            # only the operator stops the plugin before the object goes. Polling can miss a
            # brief overlap; the finalizer check below cannot.
            too_early = []
            while undeploy.poll() is None:
                # The operator first: it cannot come back, so a device seen after it is late.
                operator_state = state(cluster, "deployment", "-n", OPERATOR_NAMESPACE, OPERATOR)
                if (
                    operator_state in ("deleting", "gone")
                    and state(cluster, "simdev", name) in EXISTS
                ):
                    too_early.append(time.strftime("%H:%M:%S"))
                time.sleep(0.2)
        output = log.read_text()
        assert undeploy.returncode == 0, output
        assert not too_early, f"the operator went before SimulatedDevice {name}: {too_early}"
        # The operator ran the finalizer; the script did not have to strip it.
        assert "removing its finalizer" not in output, output

        assert absent(cluster, "crd", CRD)
        wait_for(
            f"namespace {OPERATOR_NAMESPACE} to be gone",
            lambda: absent(cluster, "namespace", OPERATOR_NAMESPACE),
            timeout=120,
        )
        assert absent(cluster, "deployment", "-n", OPERATOR_NAMESPACE, OPERATOR)
        assert absent(cluster, "clusterrole", OPERATOR)
        assert absent(cluster, "clusterrolebinding", OPERATOR)
        for kind, installed in INSTALLED:
            assert absent(cluster, kind, installed), f"{kind} {installed} is left"
        assert absent(cluster, "daemonset", "-n", name, f"simdev-{name}")
        assert cluster.get_json("daemonsets", "-A", "-l", PLUGINS)["items"] == []
        wait_for(
            f"namespace {name}, created by the operator, to be gone",
            lambda: absent(cluster, "namespace", name),
            timeout=120,
        )
        # The kubelet keeps the resource in capacity but stops offering it.
        cluster.wait_allocatable(resource, 0, timeout=60)
    finally:
        # Only when undeploy failed before it got to the device: no litter for the next run.
        if not absent(cluster, "crd", CRD):
            cluster.kubectl("delete", "simdev", name, "--ignore-not-found", "--wait=false")
