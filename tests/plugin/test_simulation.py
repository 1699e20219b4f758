"""Live settings and faults, end to end over the device plugin protocol (fake kubelet).

The simulation runs on a fake clock that the test moves, so schedules are exact and fast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest

from simdev.plugin.config import Config, with_spec
from simdev.plugin.devices import DeviceModel
from simdev.plugin.faults import Clock, parse_faults
from simdev.plugin.simulation import Simulation

pytestmark = pytest.mark.timeout(30)

NODE = "node-a"
Start = Callable[..., Any]


def dev(i: int) -> str:
    return f"simple-device-{NODE}-{i}"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def simulation(clock: FakeTime) -> Iterator[Simulation]:
    cfg = Config(node_name=NODE, number_devices=4, env_prefix="SD")
    sim = Simulation(cfg, DeviceModel(()), now=clock)
    stop = threading.Event()
    thread = threading.Thread(target=sim.run, args=(stop,), daemon=True)
    thread.start()
    yield sim
    stop.set()
    sim.wake()
    thread.join(timeout=5)


def start(start_plugin: Start, sim: Simulation) -> Any:
    plugin = start_plugin(behaviour=sim, hold=sim.plugin_down, model=sim._model)
    return plugin.connection()


def apply(sim: Simulation, **spec: Any) -> None:
    sim.update(with_spec(sim.state.config, spec, "SimulatedDevice test"))


def health(conn: Any) -> Callable[[Any], bool]:
    return lambda expected: conn.wait_for_list(
        lambda r: {d.ID: d.health for d in r.devices} == expected
    )


def test_resize_reaches_list_and_watch(start_plugin: Start, simulation: Simulation) -> None:
    conn = start(start_plugin, simulation)
    conn.wait_for_list(lambda r: len(r.devices) == 4)
    apply(simulation, numberDevices=9)
    assert len(conn.wait_for_list(lambda r: len(r.devices) == 9).devices) == 9
    apply(simulation, numberDevices=2, deviceIdPrefix="gpu")
    listed = conn.wait_for_list(lambda r: len(r.devices) == 2)
    assert [d.ID for d in listed.devices] == [f"gpu-{NODE}-0", f"gpu-{NODE}-1"]


def test_prefixes_change_what_allocate_returns(start_plugin: Start, simulation: Simulation) -> None:
    conn = start(start_plugin, simulation)
    apply(simulation, envPrefix="GPU", deviceFilePrefix="gpu", annotationPrefix="x.io/gpu")
    (c,) = conn.allocate([[dev(1)]]).container_responses
    assert dict(c.envs) == {"GPU_1": "/dev/gpu-1", "GPU_VISIBLE_DEVICES": dev(1)}
    assert [(d.container_path, d.host_path) for d in c.devices] == [("/dev/gpu-1", "/dev/null")]
    assert dict(c.annotations) == {"x.io/gpu-1": dev(1)}


def test_unhealthy_fault_and_its_removal(
    start_plugin: Start, simulation: Simulation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="simdev.plugin")
    conn = start(start_plugin, simulation)
    apply(simulation, faults=[{"name": "two", "type": "Unhealthy", "devices": {"indices": [1, 2]}}])
    health(conn)({dev(0): "Healthy", dev(1): "Unhealthy", dev(2): "Unhealthy", dev(3): "Healthy"})
    with pytest.raises(grpc.RpcError) as err:
        conn.allocate([[dev(1)]])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "fault two" in err.value.details()
    apply(simulation, faults=[])
    health(conn)({dev(i): "Healthy" for i in range(4)})
    messages = [(r.getMessage(), getattr(r, "fields", {}).get("fault")) for r in caplog.records]
    assert ("fault active", "two") in messages and ("fault cleared", "two") in messages


def test_flapping_fault_follows_the_clock(
    start_plugin: Start, simulation: Simulation, clock: FakeTime
) -> None:
    conn = start(start_plugin, simulation)
    flap = {"duration": "20s", "every": "40s", "startAfter": "5s"}
    apply(simulation, faults=[{"name": "flap", "type": "Unhealthy", "schedule": flap}])
    healthy = {dev(i): "Healthy" for i in range(4)}
    sick = {dev(i): "Unhealthy" for i in range(4)}
    start_time = clock.now
    for at, expected in [(4, healthy), (5, sick), (24, sick), (25, healthy), (45, sick)]:
        clock.now = start_time + at
        simulation.wake()
        health(conn)(expected)


def test_node_selector_needs_matching_labels(start_plugin: Start, simulation: Simulation) -> None:
    conn = start(start_plugin, simulation)
    selected = {"name": "zone-b", "type": "Unhealthy", "nodeSelector": {"zone": "b"}}
    apply(simulation, faults=[selected])
    health(conn)({dev(i): "Healthy" for i in range(4)})
    simulation.set_node_labels({"zone": "b"})
    health(conn)({dev(i): "Unhealthy" for i in range(4)})


def test_allocate_error_names_the_fault(start_plugin: Start, simulation: Simulation) -> None:
    conn = start(start_plugin, simulation)
    apply(simulation, faults=[{"name": "boom", "type": "AllocateError", "code": "UNAVAILABLE"}])
    with pytest.raises(grpc.RpcError) as err:
        conn.allocate([[dev(0)]])
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "'boom'" in err.value.details()
    apply(simulation, faults=[])
    assert conn.allocate([[dev(0)]]).container_responses


def test_allocate_error_probability_is_a_seeded_share(simulation: Simulation) -> None:
    apply(
        simulation,
        faults=[{"name": "some", "type": "AllocateError", "probability": 0.3, "seed": 4}],
    )
    (fault,) = simulation.allocate_faults()
    draws = [simulation.draw(fault) < fault.probability for _ in range(2000)]
    assert 0.25 < sum(draws) / len(draws) < 0.35


def test_allocate_delay(start_plugin: Start, simulation: Simulation) -> None:
    conn = start(start_plugin, simulation)
    apply(simulation, faults=[{"name": "slow", "type": "AllocateDelay", "delay": "700ms"}])
    began = time.monotonic()
    assert conn.allocate([[dev(0)]]).container_responses
    assert time.monotonic() - began >= 0.7


def test_plugin_down_removes_the_socket_and_comes_back(
    start_plugin: Start, simulation: Simulation, clock: FakeTime
) -> None:
    plugin = start_plugin(
        behaviour=simulation, hold=simulation.plugin_down, model=simulation._model
    )
    plugin.connection()
    apply(
        simulation,
        faults=[{"name": "crash", "type": "PluginDown", "schedule": {"duration": "20s"}}],
    )
    wait_until(lambda: not plugin.socket_path.exists())
    clock.now += 21
    simulation.wake()
    # Back: a fresh socket and a second registration.
    plugin.connection(count=2)
    assert plugin.socket_path.exists()


def test_recorded_clock_aligns_the_schedule(simulation: Simulation, clock: FakeTime) -> None:
    faults = parse_faults([{"name": "late", "type": "PluginDown", "schedule": {"duration": "10s"}}])
    cfg = replace(simulation.state.config, faults=faults)
    # The operator saw the fault 15 s ago: its window is over already.
    simulation.update(cfg, Clock({"late": (faults[0].definition, clock.now - 15)}))
    assert not simulation.plugin_down()
    simulation.update(cfg, Clock({"late": (faults[0].definition, clock.now - 5)}))
    assert simulation.plugin_down()


def wait_until(probe: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
