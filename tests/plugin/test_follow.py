"""Turning versions of the SimulatedDevice and the Node into simulation updates."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from simdev.plugin.config import Config
from simdev.plugin.devices import DeviceModel
from simdev.plugin.faults import to_time
from simdev.plugin.follow import Follower, live_config
from simdev.plugin.simulation import Simulation

BASE = Config(node_name="n1", number_devices=2, simulated_device="gpu")


def obj(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    # Keys the plugin does not take live are ignored, as the API server's defaults are.
    full = {"namespace": "ns", "resourceName": "other.io/x", "pluginName": "other", **spec}
    return {"metadata": {"name": "gpu"}, "spec": full, "status": status or {}}


def test_live_keys_apply_and_restart_keys_do_not() -> None:
    cfg, _ = live_config(BASE, obj(numberDevices=5, envPrefix="GPU", deviceIdPrefix="g"))
    assert (cfg.number_devices, cfg.env_prefix, cfg.device_id_prefix) == (5, "GPU", "g")
    assert (cfg.resource_name, cfg.plugin_name) == (BASE.resource_name, BASE.plugin_name)


def test_recorded_fault_clocks_are_read_from_the_status() -> None:
    fault = {"name": "f", "type": "PluginDown"}
    cfg, clock = live_config(BASE, obj(faults=[fault]))
    (parsed,) = cfg.faults
    status = {"faults": [{"name": "f", "definition": parsed.definition, "since": to_time(100.5)}]}
    _, recorded = live_config(BASE, obj(status, faults=[fault]))
    assert clock.started(parsed) is None
    assert recorded.started(parsed) == pytest.approx(100.5)


def test_invalid_versions_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    sim = Simulation(BASE, DeviceModel(()))
    follower = Follower(BASE, sim)
    follower.on_device(obj(numberDevices=3))
    assert sim.state.config.number_devices == 3
    with caplog.at_level(logging.ERROR, logger="simdev.plugin"):
        follower.on_device(obj(numberDevices=3, envPrefix="1bad"))
    assert sim.state.config.number_devices == 3
    (record,) = caplog.records
    assert 'invalid envPrefix "1bad" in SimulatedDevice gpu' in record.__dict__["fields"]["error"]
    follower.on_device(None)  # deleted: keep serving what we have
    assert sim.state.config.number_devices == 3


def test_node_labels_select_faults() -> None:
    sim = Simulation(BASE, DeviceModel(()))
    follower = Follower(BASE, sim)
    selected = {"name": "z", "type": "Unhealthy", "nodeSelector": {"zone": "b"}}
    follower.on_device(obj(faults=[selected]))
    assert sim.state.active == ()
    follower.on_node({"metadata": {"name": "n1", "labels": {"zone": "b"}}})
    assert [f.name for f in sim.state.faults_of("Unhealthy")] == ["z"]
    follower.on_node({"metadata": {"name": "n1", "labels": {}}})
    assert sim.state.active == ()


def test_node_labels_choose_the_pool() -> None:
    sim = Simulation(BASE, DeviceModel(()))
    follower = Follower(BASE, sim)
    big = {"name": "big", "nodeSelector": {"size": "big"}, "numberDevices": 5}
    follower.on_device(obj(numberDevices=2, nodePools=[big]))
    assert (sim.state.config.pool, sim.state.config.number_devices) == ("", 2)
    follower.on_node({"metadata": {"name": "n1", "labels": {"size": "big"}}})
    assert (sim.state.config.pool, sim.state.config.number_devices) == ("big", 5)
    # The spec's next version keeps the node in its pool.
    follower.on_device(obj(numberDevices=3, nodePools=[{**big, "numberDevices": 7}]))
    assert (sim.state.config.pool, sim.state.config.number_devices) == ("big", 7)
    follower.on_device(obj(numberDevices=3))
    assert (sim.state.config.pool, sim.state.config.number_devices) == ("", 3)
