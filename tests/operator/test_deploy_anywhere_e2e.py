"""`make deploy` works with any kubectl on PATH and KUBECONFIG, no local build needed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from clusterlib import Cluster
from devices import Devices, unique

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_deploy_with_only_a_kubectl_copied_elsewhere(operator: Cluster, tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    shutil.copy2(operator.kubectl_bin, tools / "kubectl")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECTL", "VIRTUAL_ENV", "PYTHONPATH", "SIMDEV_CACHE")
    }
    env.update(
        PATH=f"{SYSTEM_PATH}:{tools}",
        KUBECONFIG=str(operator.kubeconfig),
        # An empty cache: the Makefile finds no local build and uses the kubectl on PATH.
        SIMDEV_CACHE=str(tmp_path / "cache"),
        SKIP_IMAGES="1",
    )
    out = subprocess.run(
        ["make", "-s", "-C", str(REPO), "deploy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("kubectl"))
    # The operator it (re)applied still serves SimulatedDevices.
    devices = Devices(operator)
    name = unique("e2e-anywhere")
    try:
        devices.create(name, resourceName=f"e2e.simdev.io/{name}", numberDevices=1)
        devices.wait_ready(name)
    finally:
        devices.cleanup()
