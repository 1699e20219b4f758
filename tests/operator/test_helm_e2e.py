"""helm install on a real cluster: the chart replaces the kustomize-deployed operator, runs a
SimulatedDevice through to a consumer pod, and helm uninstall takes it away again.

Like the undeploy test, it removes the operator that every other operator test needs, so it
is marked last. Each of the two starts from the kustomize install (scripts/deploy.sh,
idempotent), so either may run first. It leaves the cluster as it found it minus the
operator, as undeploy does: the chaos tests deploy again.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from clusterlib import LOCAL_SERVER, Cluster, wait_for
from devices import Devices, run_consumer, unique
from helmlib import Helm

# deploy, undeploy, helm install and uninstall each wait up to a few minutes.
pytestmark = [pytest.mark.e2e, pytest.mark.last, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "simdev"
RELEASE = "simdev"
NAMESPACE = "simdev-system"
OPERATOR = "simdev-operator"
CRD = "simulateddevices.simdev.io"
PLUGINS = "app.kubernetes.io/managed-by=simdev-operator"
# What the chart installs, besides the CRD.
INSTALLED = [
    ("deployment", "-n", NAMESPACE, OPERATOR),
    ("serviceaccount", "-n", NAMESPACE, OPERATOR),
    ("configmap", "-n", NAMESPACE, "simdev-admission"),
    ("clusterrole", OPERATOR),
    ("clusterrolebinding", OPERATOR),
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


def gone(cluster: Cluster, *args: str) -> bool:
    return state(cluster, *args) == "gone"


def is_local(cluster: Cluster) -> bool:
    """The local cluster, which needs values-local.yaml (scripts/deploy.sh decides alike)."""
    cfg = json.loads(cluster.kubectl("config", "view", "--minify", "-o", "json").stdout)
    server = cfg["clusters"][0]["cluster"]["server"]
    return bool(
        cluster.local or (cfg["current-context"] == "simdev-local" and server == LOCAL_SERVER)
    )


def script(cluster: Cluster, name: str, **extra: str) -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts" / name)],
        env={**cluster.env(), **extra},
        check=True,
        timeout=600,
    )


def release_exists(cluster: Cluster, helm: Helm) -> bool:
    out = helm.run("status", RELEASE, "--namespace", NAMESPACE, env=cluster.env(), check=False)
    return out.returncode == 0


def remove_what_the_release_left(cluster: Cluster, helm: Helm) -> None:
    """Only when the test failed midway: the chaos tests need a cluster deploy.sh can take."""
    if release_exists(cluster, helm):
        if not gone(cluster, "crd", CRD):
            # The operator still runs and stops the plugins first.
            cluster.kubectl("delete", "simdev", "--all", "--timeout=150s", check=False, timeout=180)
        helm.run(
            "uninstall",
            RELEASE,
            "--namespace",
            NAMESPACE,
            "--wait",
            env=cluster.env(),
            check=False,
            timeout=300,
        )
    cluster.kubectl("delete", "crd", CRD, "--ignore-not-found", check=False, timeout=180)
    cluster.kubectl(
        "delete", "namespace", NAMESPACE, "--ignore-not-found", check=False, timeout=180
    )


def test_helm_install_replaces_the_kustomize_install_and_helm_uninstall_removes_it(
    operator: Cluster, helm: Helm
) -> None:
    cluster = operator
    env = cluster.env()
    # The start: the kustomize install, whichever last test ran before.
    script(cluster, "deploy.sh", SKIP_IMAGES="1")
    assert state(cluster, "deployment", "-n", NAMESPACE, OPERATOR) == "live"
    script(cluster, "undeploy.sh")
    wait_for(
        f"namespace {NAMESPACE} to be gone",
        lambda: gone(cluster, "namespace", NAMESPACE),
        timeout=120,
    )
    assert gone(cluster, "crd", CRD)

    values = ["-f", str(CHART / "values-local.yaml")] if is_local(cluster) else []
    try:
        helm.run(
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            *values,
            "--wait",
            "--timeout",
            "180s",
            env=env,
            timeout=300,
        )
        deployment = cluster.get_json("deployment", "-n", NAMESPACE, OPERATOR)["metadata"]
        # Helm's objects, not kustomize's left behind.
        assert deployment["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert deployment["annotations"]["meta.helm.sh/release-name"] == RELEASE
        assert "kubectl.kubernetes.io/last-applied-configuration" not in deployment["annotations"]
        for args in INSTALLED:
            assert state(cluster, *args) == "live", f"{args} is missing"
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")

        # A SimulatedDevice, through to a pod that holds one of its devices.
        devices = Devices(cluster)
        name = unique("e2e-helm")
        resource = f"e2e.simdev.io/{name}"
        # Its own namespace, which the operator creates and deletes with it.
        devices.create(
            name, namespace=name, resourceName=resource, numberDevices=2, envPrefix="HELM"
        )
        cluster.wait_allocatable(resource, 2)
        devices.wait_ready(name)
        log = run_consumer(cluster, name, resource, 1)
        assert "HELM_VISIBLE_DEVICES=" in log, log
        # The SimulatedDevices go while the operator runs: it stops their plugins.
        devices.delete(name)
        wait_for(
            f"namespace {name}, created by the operator, to be gone",
            lambda: gone(cluster, "namespace", name),
            timeout=120,
        )
        cluster.wait_allocatable(resource, 0, timeout=60)

        out = helm.run(
            "uninstall",
            RELEASE,
            "--namespace",
            NAMESPACE,
            "--wait",
            "--timeout",
            "180s",
            env=env,
            timeout=300,
        )
        # helm.sh/resource-policy: keep. Deleting it is the user's last step.
        assert CRD in out.stdout, out.stdout
        assert state(cluster, "crd", CRD) == "live"
        cluster.kubectl("delete", "crd", CRD, "--timeout=120s", timeout=180)
        # helm install --create-namespace made it; helm uninstall leaves it.
        cluster.kubectl("delete", "namespace", NAMESPACE, "--timeout=120s", timeout=180)

        assert not release_exists(cluster, helm)
        for args in [*INSTALLED, ("crd", CRD), ("namespace", NAMESPACE)]:
            assert gone(cluster, *args), f"{args} is left"
        assert cluster.get_json("daemonsets", "-A", "-l", PLUGINS)["items"] == []
    finally:
        remove_what_the_release_left(cluster, helm)
