"""Following the plugin's own SimulatedDevice and Node through the API, for live changes.

Turns each version of those two objects into an update of the simulation: the spec's live
settings, node pools and faults, the fault clocks the operator recorded in the status, and
the node's labels (node pools and fault node selectors match on them). An invalid version is
logged and skipped, so the plugin keeps serving what it had.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from simdev.plugin.apiwatch import InClusterAPI, start_watch
from simdev.plugin.config import Config, ConfigError, with_spec
from simdev.plugin.faults import Clock, recorded_clock
from simdev.plugin.simulation import Simulation

log = logging.getLogger("simdev.plugin")

SIMULATED_DEVICES = "/apis/simdev.io/v1alpha1/simulateddevices"
NODES = "/api/v1/nodes"


def live_config(base: Config, obj: Mapping[str, Any]) -> tuple[Config, Clock]:
    """The plugin's configuration under one version of its SimulatedDevice."""
    name = (obj.get("metadata") or {}).get("name", base.simulated_device)
    cfg = with_spec(base, obj.get("spec") or {}, f"SimulatedDevice {name}")
    return cfg, recorded_clock(obj.get("status") or {})


class Follower:
    def __init__(self, base: Config, simulation: Simulation) -> None:
        self._base = base
        self._simulation = simulation
        self._applied: tuple[Config, Clock] | None = None

    def on_device(self, obj: Mapping[str, Any] | None) -> None:
        if obj is None:
            # Deleted: the operator removes this plugin; until then, keep serving.
            return
        try:
            update = live_config(self._base, obj)
        except ConfigError as err:
            log.error("ignoring invalid live settings", extra={"fields": {"error": str(err)}})
            return
        if update == self._applied:
            return  # a status-only change that moved no clock
        self._applied = update
        cfg, clock = update
        log.info(
            "live settings applied",
            extra={
                "fields": {
                    "devices": cfg.number_devices,
                    "replicas": cfg.sharing_replicas,
                    "numaNodes": cfg.numa_nodes or "-",
                    "policy": str(cfg.allocation_policy),
                    "faults": ",".join(f.name for f in cfg.faults) or "-",
                    "pools": ",".join(p.name for p in cfg.node_pools) or "-",
                }
            },
        )
        self._simulation.update(cfg, clock)

    def on_node(self, obj: Mapping[str, Any] | None) -> None:
        labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
        self._simulation.set_node_labels({str(k): str(v) for k, v in labels.items()})

    def start(self, api: InClusterAPI, stop: threading.Event) -> list[threading.Thread]:
        return [
            start_watch(api, SIMULATED_DEVICES, self._base.simulated_device, self.on_device, stop),
            start_watch(api, NODES, self._base.node_name, self.on_node, stop),
        ]
