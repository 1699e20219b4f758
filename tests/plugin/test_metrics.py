"""The plugin's Prometheus endpoint, scraped over loopback from the real process."""

from __future__ import annotations

import socket
import time
import urllib.request
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simdev.plugin.fakekubelet import FakeKubelet
from simdev.plugin.metrics import PluginMetrics

pytestmark = pytest.mark.timeout(60)
RES = "example.com/simple-device"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_what_happened(kubelet: FakeKubelet, run_plugin: Any) -> None:
    port = free_port()
    flaky = "[{name: flaky, type: Unhealthy, devices: {indices: [2]}}]"
    run_plugin(METRICS_ADDRESS="127.0.0.1", METRICS_PORT=str(port), NUMBER_DEVICES="3",
               FAULTS=flaky)  # fmt: skip
    conn = kubelet.wait_for_registration(timeout=15)
    conn.wait_for_list(lambda r: len(r.devices) == 3)
    conn.allocate([["simple-device-node-a-0"]])
    conn.allocate([["simple-device-node-a-1"]])
    with pytest.raises(grpc.RpcError):
        conn.allocate([["simple-device-node-a-2"]])  # unhealthy by the fault
    with pytest.raises(grpc.RpcError):
        conn.allocate([["no-such-device"]])
    got = scrape(port)

    def value(name: str, **labels: str) -> float:
        return got.get((name, tuple(sorted({"resource": RES, **labels}.items()))), -1.0)

    # The plugin counts a registration once the kubelet's answer reached it, a moment after
    # the kubelet saw the call.
    deadline = time.monotonic() + 5
    while value("simdev_plugin_registrations_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        got = scrape(port)

    assert value("simdev_plugin_devices", health="Healthy") == 2
    assert value("simdev_plugin_devices", health="Unhealthy") == 1
    assert value("simdev_plugin_allocate_requests_total", code="OK") == 2
    assert value("simdev_plugin_allocate_requests_total", code="FAILED_PRECONDITION") == 1
    assert value("simdev_plugin_allocate_requests_total", code="NOT_FOUND") == 1
    assert value("simdev_plugin_allocate_duration_seconds_count") == 4
    assert value("simdev_plugin_registrations_total") == 1
    assert value("simdev_plugin_fault_active", fault="flaky", type="Unhealthy") == 1


def test_bad_metrics_port_is_one_line(run_plugin: Any) -> None:
    plugin = run_plugin(METRICS_PORT="70000")
    assert plugin.wait(timeout=15) == 2
    assert 'invalid METRICS_PORT "70000": must be a port number' in plugin.log()


def test_removed_faults_leave_the_gauge() -> None:
    metrics = PluginMetrics(RES)
    metrics.faults([("a", "Unhealthy"), ("b", "PluginDown")], ["a"])
    metrics.faults([("b", "PluginDown")], [])

    def fault(name: str, kind: str) -> float | None:
        labels = {"resource": RES, "fault": name, "type": kind}
        return metrics.registry.get_sample_value("simdev_plugin_fault_active", labels)

    assert fault("a", "Unhealthy") is None
    assert fault("b", "PluginDown") == 0
