"""The optional kustomize components build on top of the base."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def kubectl() -> str:
    local = subprocess.run(
        ["make", "-s", "-C", str(REPO), "cluster-kubectl"], capture_output=True, text=True
    ).stdout.strip()
    found = local if Path(local).exists() else shutil.which("kubectl")
    if not found:
        pytest.skip("no kubectl to run kustomize with")
    return found


def test_prometheus_component_adds_pod_monitors() -> None:
    # Kustomize takes only relative paths, so the trial overlay lives inside the repo.
    (REPO / "build").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=REPO / "build") as trial:
        Path(trial, "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            "resources: [../../manifests/overlays/local]\n"
            "components: [../../manifests/components/prometheus]\n"
        )
        out = subprocess.run(
            [kubectl(), "kustomize", trial], capture_output=True, text=True, check=True
        ).stdout
    objects = [o for o in yaml.safe_load_all(out) if o]
    monitors = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodMonitor"}
    assert set(monitors) == {"simdev-operator", "simdev-plugins"}
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    operator = monitors["simdev-operator"]["spec"]
    assert operator["selector"]["matchLabels"].items() <= labels.items()
    assert monitors["simdev-plugins"]["spec"]["namespaceSelector"] == {"any": True}
    assert all(e["port"] == "metrics" for m in monitors.values()
               for e in m["spec"]["podMetricsEndpoints"])  # fmt: skip
