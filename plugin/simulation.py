"""The live simulation of one node: settings and faults, turned into devices and behaviour.

It owns what may change while the plugin runs (the device count, the prefixes, the faults,
the node pools, the node's labels) and derives the rest: the node's own settings (its
pool's), the device set in the model, the allocation settings, which faults are active. A
clock thread re-evaluates exactly when the next fault switches, so transitions are on time
without polling. No gRPC here.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simdev.plugin.allocation import AllocationSettings
from simdev.plugin.config import Config, ConfigError, for_node
from simdev.plugin.devices import DeviceModel, make_devices
from simdev.plugin.faults import (
    ALLOCATE_DELAY,
    ALLOCATE_ERROR,
    PLUGIN_DOWN,
    UNHEALTHY,
    Clock,
    Fault,
    is_active,
    next_change,
)

if TYPE_CHECKING:  # prometheus_client is loaded only when metrics are served
    from simdev.plugin.metrics import PluginMetrics

log = logging.getLogger("simdev.plugin")

# Longest sleep of the clock thread; a wake-up re-checks everything, so this only bounds
# the damage of a wall-clock jump.
MAX_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class State:
    """What the simulation derived at one moment; replaced whole, never changed."""

    # The node's own settings: the top level's, or its pool's (config.pool names it).
    config: Config
    active: tuple[Fault, ...] = ()
    settings: AllocationSettings = field(default_factory=AllocationSettings)

    def faults_of(self, kind: str) -> tuple[Fault, ...]:
        return tuple(f for f in self.active if f.type == kind)


def allocation_settings(cfg: Config) -> AllocationSettings:
    return AllocationSettings(
        env_prefix=cfg.env_prefix,
        device_file_prefix=cfg.device_file_prefix,
        annotation_prefix=cfg.annotation_prefix,
        policy=cfg.allocation_policy,
        sharing_policy=cfg.sharing_policy,
        fail_requests_greater_than_one=cfg.fail_requests_greater_than_one,
    )


class Simulation:
    def __init__(
        self,
        config: Config,
        model: DeviceModel,
        now: Callable[[], float] = time.time,
        metrics: PluginMetrics | None = None,
    ) -> None:
        self._model = model
        self._now = now
        self._metrics = metrics
        self._lock = threading.Condition()
        self._labels: Mapping[str, str] = {}
        self._clock = Clock()
        self._known = Clock()
        self._draws: dict[str, random.Random] = {}
        # The top level's settings, with the pools; the state holds the node's own.
        self._settings = config
        self._state = State(config, settings=allocation_settings(config))
        self._changed = False
        with self._lock:
            self._resolve()
            self._evaluate()

    @property
    def state(self) -> State:
        return self._state

    def update(self, config: Config, anchors: Clock | None = None) -> None:
        """New settings, pools and faults (from the SimulatedDevice); anchors are the operator's."""
        with self._lock:
            self._settings = config
            if anchors is not None:
                self._known = anchors
            self._resolve()
            self._evaluate()

    def set_node_labels(self, labels: Mapping[str, str]) -> None:
        with self._lock:
            if dict(labels) == dict(self._labels):
                return
            self._labels = dict(labels)
            # The node may have moved to another pool, and fault selectors may match anew.
            self._resolve()
            self._evaluate()

    def allocation_settings(self) -> AllocationSettings:
        return self._state.settings

    def plugin_down(self) -> bool:
        return bool(self._state.faults_of(PLUGIN_DOWN))

    def draw(self, fault: Fault) -> float:
        """The next number in [0, 1) of this fault's random stream (seeded per node)."""
        with self._lock:
            key = f"{fault.name}/{fault.definition}"
            rng = self._draws.get(key)
            if rng is None:
                rng = self._draws[key] = random.Random(
                    f"{fault.seed}/{self._state.config.node_name}"
                )
            return rng.random()

    def allocate_faults(self) -> tuple[Fault, ...]:
        """Active faults that act on Allocate, delays before errors."""
        state = self._state
        return state.faults_of(ALLOCATE_DELAY) + state.faults_of(ALLOCATE_ERROR)

    def run(self, stop: threading.Event) -> None:
        """Re-evaluates whenever a fault is due to switch, until stop is set."""
        while not stop.is_set():
            with self._lock:
                self._evaluate()
                due = next_change(self._candidates(), self._clock, self._now())
                wait = MAX_WAIT_SECONDS if due is None else due - self._now()
                self._changed = False
                self._lock.wait_for(
                    lambda: self._changed or stop.is_set(), max(0.0, min(wait, MAX_WAIT_SECONDS))
                )

    def wake(self) -> None:
        with self._lock:
            self._changed = True
            self._lock.notify_all()

    def _resolve(self) -> None:
        # Caller holds the lock. The node's settings: the top level's or its pool's.
        try:
            cfg = for_node(self._settings, self._labels)
        except ConfigError as err:
            # Pools are checked when read, so only a hand-made Config gets here.
            log.error("ignoring the node pool", extra={"fields": {"error": str(err)}})
            cfg = self._settings
        before = self._state.config.pool
        if cfg.pool != before:
            log.info(
                "node pool changed",
                extra={"fields": {"from": before or "-", "to": cfg.pool or "-"}},
            )
        self._state = State(cfg, self._state.active, allocation_settings(cfg))

    def _candidates(self) -> Sequence[Fault]:
        return [f for f in self._state.config.faults if f.matches(self._labels)]

    def _evaluate(self) -> None:
        # Caller holds the lock (or is the constructor).
        now = self._now()
        cfg = self._state.config
        candidates = self._candidates()
        self._clock = self._clock.advance(cfg.faults, now, self._known)
        active = tuple(f for f in candidates if is_active(f, self._clock, now))
        self._log_transitions(self._state.active, active)
        self._state = State(cfg, active, self._state.settings)
        broken: dict[int, list[str]] = {}
        for f in self._state.faults_of(UNHEALTHY):
            for index in f.unhealthy_indices(cfg.node_name, cfg.number_devices):
                broken.setdefault(index, []).append(f.name)
        reasons = {i: "fault " + ", ".join(names) for i, names in broken.items()}
        devices = make_devices(
            cfg.device_id_prefix,
            cfg.node_name,
            cfg.number_devices,
            reasons,
            numa_nodes=cfg.numa_nodes,
            replicas=cfg.sharing_replicas,
        )
        if self._metrics is not None:
            sick = sum(1 for d in devices if not d.healthy)
            self._metrics.devices(len(devices) - sick, sick)
            self._metrics.faults(((f.name, f.type) for f in candidates), (f.name for f in active))
        if self._model.set_devices(devices):
            log.info(
                "devices changed",
                extra={
                    "fields": {
                        "pool": cfg.pool or "-",
                        "devices": cfg.number_devices,
                        "advertised": len(devices),
                        "unhealthy": len(reasons),
                    }
                },
            )
        self._changed = True
        self._lock.notify_all()

    def _log_transitions(self, before: Sequence[Fault], after: Sequence[Fault]) -> None:
        was = {f.name: f for f in before}
        now = {f.name: f for f in after}
        for name in sorted(now.keys() - was.keys()):
            f = now[name]
            log.warning("fault active", extra={"fields": {"fault": name, "type": f.type}})
        for name in sorted(was.keys() - now.keys()):
            f = was[name]
            log.info("fault cleared", extra={"fields": {"fault": name, "type": f.type}})
