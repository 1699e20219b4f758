"""Shared fixtures: the e2e cluster (started when missing) and the project images.

Cluster tests take any cluster through a kubeconfig. By default they use the local
cluster (``make cluster-up``); ``SIMDEV_KUBECONFIG`` points them at another test
cluster, for example a kind cluster, whose context must still look like a test cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlib import Cluster, ensure_images, local_cluster
from helmlib import Helm, build_helm

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A reachable test cluster; the local one is brought up when needed."""
    explicit = os.environ.get("SIMDEV_KUBECONFIG")
    c = Cluster(Path(explicit)) if explicit else local_cluster(REPO)
    c.refuse_unless_test_cluster()
    c.wait_node_ready()
    yield c


@pytest.fixture(scope="session")
def images(cluster: Cluster) -> dict[str, str]:
    """Builds the project images and loads them into the cluster; returns name -> ref."""
    return ensure_images(REPO, cluster)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm from cluster/build-helm.sh: built once per machine (a few minutes), then cached.

    Tests that use it need a timeout long enough for that first build.
    """
    return Helm(build_helm(REPO), tmp_path_factory.mktemp("helm-home"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "last: an e2e test that runs after every other (it removes what they share)"
    )
    config.addinivalue_line(
        "markers", "chaos: kills parts of the running system and checks recovery; runs late"
    )
    config.addinivalue_line(
        "markers", "disruptive: stops and restarts the cluster itself; runs after everything"
    )


def _order(item: pytest.Item) -> int:
    if not item.get_closest_marker("e2e"):
        return 0
    if item.get_closest_marker("disruptive"):
        return 4
    if item.get_closest_marker("chaos"):
        return 3
    return 2 if item.get_closest_marker("last") else 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Cluster tests share one cluster: run the fast unit tests first so they fail early, and
    # the tests that take the cluster or the operator away after all the others.
    items.sort(key=_order)
