"""Fixtures shared by the operator's tests: SimulatedDevice factories and the deployed operator.

Exposed as fixtures because test modules are imported by path, not as a package.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterlib import Cluster
from devices import Devices, plugin_namespace
from simdev.operator.model import API_VERSION, KIND, Device

REPO = Path(__file__).resolve().parents[2]


def make_body(
    name: str = "sample",
    *,
    created: str = "2030-01-01T00:00:00Z",
    uid: str | None = None,
    generation: int = 1,
    deleting: bool = False,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": uid or f"uid-{name}",
        "generation": generation,
        "creationTimestamp": created,
    }
    if deleting:
        meta["deletionTimestamp"] = "2030-01-02T00:00:00Z"
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": meta,
        "spec": spec,
        "status": status or {},
    }


def make_device(name: str = "sample", **kwargs: Any) -> Device:
    return Device.from_body(make_body(name, **kwargs))


BodyFactory = Callable[..., dict[str, Any]]
DeviceFactory = Callable[..., Device]


@pytest.fixture
def body() -> BodyFactory:
    """body(name, created=..., uid=..., generation=..., deleting=..., status=..., **spec)."""
    return make_body


@pytest.fixture
def device() -> DeviceFactory:
    """Like body, but returns the operator's snapshot of it."""
    return make_device


@pytest.fixture(scope="session")
def operator(cluster: Cluster, images: dict[str, str]) -> Cluster:
    """The operator, deployed once per session the way a user does (scripts/deploy.sh).

    The images fixture has already built and loaded the images. The operator is left
    running: the next deploy is idempotent, and each test deletes what it created.
    """
    subprocess.run(
        ["bash", str(REPO / "scripts" / "deploy.sh")],
        env={**cluster.env(), "SKIP_IMAGES": "1"},
        check=True,
        timeout=600,
    )
    return cluster


@pytest.fixture(scope="module")
def namespace(request: pytest.FixtureRequest, operator: Cluster) -> Iterator[str]:
    """The test module's plugin namespace (its NAMESPACE), made beforehand so that it
    outlives each test's SimulatedDevices."""
    name: str = request.module.NAMESPACE
    plugin_namespace(operator, name)
    yield name
    operator.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def devices(operator: Cluster, namespace: str) -> Iterator[Devices]:
    """SimulatedDevices of one test, deleted afterwards with the pods it left in namespace."""
    made = Devices(operator)
    yield made
    made.cleanup()
    operator.kubectl(
        "delete", "pods", "-n", namespace, "--all", "--wait=false", "--ignore-not-found"
    )


FAKE_NODES = 3


@pytest.fixture
def fake_nodes(operator: Cluster) -> Iterator[list[str]]:
    """KWOK fake nodes made by the local cluster's scripts (cluster/kwok.sh), then the count
    the cluster had before: tests that expect every node to be real never see them."""
    if not operator.local:
        pytest.skip("fake nodes come from the local cluster's scripts")
    script = str(REPO / "cluster" / "kwok.sh")

    def kwok(*args: str) -> str:
        out = subprocess.run(
            ["bash", script, *args], check=True, text=True, stdout=subprocess.PIPE, timeout=600
        )
        return out.stdout.strip()

    before = kwok("count")
    kwok("up", str(FAKE_NODES))
    yield [f"kwok-node-{i}" for i in range(FAKE_NODES)]
    kwok("up", before)
