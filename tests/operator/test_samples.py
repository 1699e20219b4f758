"""Every sample manifest is accepted by the real API server as it is shipped."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clusterlib import Cluster

pytestmark = pytest.mark.e2e

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "samples").glob("*.yaml"))
CRD = Path(__file__).resolve().parents[2] / "crds" / "simdev.io_simulateddevices.yaml"


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_passes_server_side_validation(cluster: Cluster, sample: Path) -> None:
    cluster.kubectl("apply", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/simulateddevices.simdev.io", "--timeout=60s"
    )
    (doc,) = list(yaml.safe_load_all(sample.read_text()))
    out = cluster.kubectl("create", "--dry-run=server", "-o", "name", "-f", str(sample))
    assert out.stdout.strip().endswith(f"/{doc['metadata']['name']}")
