"""Prometheus metrics of a plugin and of the operator, scraped on the local cluster."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clusterlib import Cluster, wait_for
from devices import Devices, plugin_namespace, run_consumer, unique

pytestmark = pytest.mark.e2e

NAMESPACE = "simdev-metrics-e2e"
# Where the local overlay has the operator serve its metrics (host network, loopback).
OPERATOR_METRICS = "http://127.0.0.1:8090/metrics"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def devices(operator: Cluster) -> Iterator[Devices]:
    if not operator.local:
        pytest.skip("scrapes the local cluster's host-network endpoints")
    plugin_namespace(operator, NAMESPACE)
    made = Devices(operator)
    yield made
    made.cleanup()
    operator.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def test_plugin_and_operator_metrics_count_what_happened(devices: Devices) -> None:
    cluster = devices.cluster
    name = unique("e2e-metrics")
    resource = f"e2e.simdev.io/{name}"
    idle = {"name": "later", "type": "Unhealthy", "schedule": {"startAfter": "1h"}}
    devices.create(name, namespace=NAMESPACE, resourceName=resource, numberDevices=3, faults=[idle])
    port = devices.wait_ready(name)["status"]["metricsPort"]
    # On the host network every node's plugin serves one port, each on its node's own
    # address; consumers land on any node, so the Allocate calls are counted over all.
    plugin_urls = [f"http://{n['metadata']['name']}:{port}/metrics" for n in cluster.nodes()]
    allocated = ("simdev_plugin_allocate_requests_total", {"resource": resource, "code": "OK"})

    def allocations() -> float:
        return sum(value(scrape(url), allocated[0], **allocated[1]) for url in plugin_urls)

    before = allocations()
    for _ in range(2):
        run_consumer(cluster, NAMESPACE, resource, 1)
    wait_for(
        "the plugins to count two Allocate calls",
        lambda: allocations() - before >= 2,
        timeout=30,
    )
    assert allocations() - before == 2
    for url in plugin_urls:
        after = scrape(url)
        assert value(after, "simdev_plugin_devices", resource=resource, health="Healthy") == 3
        assert value(after, "simdev_plugin_registrations_total", resource=resource) >= 1
        fault = value(
            after, "simdev_plugin_fault_active", resource=resource, fault="later", type="Unhealthy"
        )
        assert fault == 0  # listed, not yet active
        assert (("simdev_plugin_fault_active", (("fault", "later"), ("resource", resource),
                 ("type", "Unhealthy")))) in after  # fmt: skip

    operator = scrape(OPERATOR_METRICS)
    assert value(operator, "simdev_operator_reconciles_total", result="ok") >= 1
    assert value(operator, "simdev_operator_managed_objects", kind="SimulatedDevice") >= 1
    assert value(operator, "simdev_operator_reconcile_duration_seconds_count") >= 1
