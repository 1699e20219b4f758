"""The plugin's Prometheus metrics: devices, Allocate calls, registrations and faults.

A registry of its own keeps the endpoint to what the plugin means to publish. Every metric
carries the resource name, so one Prometheus can tell the plugins of a node apart.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Allocate answers in about a millisecond; injected delays reach seconds.
ALLOCATE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0)


class PluginMetrics:
    def __init__(self, resource: str, registry: CollectorRegistry | None = None) -> None:
        self.resource = resource
        self.registry = registry or CollectorRegistry()
        self._devices = Gauge(
            "simdev_plugin_devices",
            "Devices advertised to the kubelet, by health",
            ["resource", "health"],
            registry=self.registry,
        )
        self._allocations = Counter(
            "simdev_plugin_allocate_requests",
            "Allocate calls, by the gRPC code they were answered with",
            ["resource", "code"],
            registry=self.registry,
        )
        self._allocate_seconds = Histogram(
            "simdev_plugin_allocate_duration_seconds",
            "Time to answer an Allocate call, injected delays included",
            ["resource"],
            buckets=ALLOCATE_BUCKETS,
            registry=self.registry,
        )
        self._registrations = Counter(
            "simdev_plugin_registrations",
            "Successful registrations with the kubelet",
            ["resource"],
            registry=self.registry,
        )
        self._faults = Gauge(
            "simdev_plugin_fault_active",
            "1 while a declared fault is active on this node, 0 while it is listed but idle",
            ["resource", "fault", "type"],
            registry=self.registry,
        )
        self._listed: set[tuple[str, str]] = set()
        # Children by code, and the histogram's, looked up once: Allocate is the hot path.
        self._allocations_by_code: dict[str, Counter] = {}
        self._allocate_seconds_child: Histogram | None = None

    def devices(self, healthy: int, unhealthy: int) -> None:
        self._devices.labels(self.resource, "Healthy").set(healthy)
        self._devices.labels(self.resource, "Unhealthy").set(unhealthy)

    def allocated(self, code: str, seconds: float) -> None:
        counter = self._allocations_by_code.get(code)
        if counter is None:
            counter = self._allocations.labels(self.resource, code)
            self._allocations_by_code[code] = counter
        counter.inc()
        histogram = self._allocate_seconds_child
        if histogram is None:
            histogram = self._allocate_seconds_child = self._allocate_seconds.labels(self.resource)
        histogram.observe(seconds)

    def registered(self) -> None:
        self._registrations.labels(self.resource).inc()

    def faults(self, listed: Iterable[tuple[str, str]], active: Iterable[str]) -> None:
        """Every listed (name, type) with 1 when active; faults no longer listed disappear."""
        listed = set(listed)
        on = set(active)
        for name, kind in self._listed - listed:
            self._faults.remove(self.resource, name, kind)
        for name, kind in listed:
            self._faults.labels(self.resource, name, kind).set(1 if name in on else 0)
        self._listed = listed

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
