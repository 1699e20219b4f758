"""The operator's Prometheus metrics: how reconciles go and what it manages.

A registry of its own (not the process-wide default) keeps tests independent and the
endpoint free of anything the operator does not mean to publish.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Seconds; a reconcile is a few API calls, so the interesting range is 10 ms to a few s.
RECONCILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ENDPOINT_ENV = "SIMDEV_METRICS_ENDPOINT"
DEFAULT_ENDPOINT = "http://0.0.0.0:8081/metrics"


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "simdev_operator_reconciles",
            "Reconciles of SimulatedDevices, by result",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "simdev_operator_reconcile_duration_seconds",
            "Time one reconcile of a SimulatedDevice took",
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "simdev_operator_reconcile_errors",
            "Reconciles that failed and will be retried, by kind of failure",
            ["reason"],
            registry=self.registry,
        )
        self.managed = Gauge(
            "simdev_operator_managed_objects",
            "Objects the operator manages now, by kind",
            ["kind"],
            registry=self.registry,
        )

    def set_managed(self, counts: Mapping[str, int]) -> None:
        for kind, count in counts.items():
            self.managed.labels(kind=kind).set(count)


def parse_endpoint(url: str) -> tuple[str, int]:
    """Host and port of the metrics endpoint, e.g. http://127.0.0.1:8090/metrics."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(f"{ENDPOINT_ENV} must look like http://HOST:PORT/metrics, got {url!r}")
    return parts.hostname, parts.port


def serve(metrics: OperatorMetrics, url: str) -> None:
    """Serves /metrics in a background thread (prometheus_client's own server)."""
    host, port = parse_endpoint(url)
    start_http_server(port, addr=host, registry=metrics.registry)
