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
from simdev.plugin.pools import parse_pools
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


# Topology, allocation policies and sharing, live, over the protocol.


def test_topology_reaches_list_and_watch_and_allocate(
    start_plugin: Start, simulation: Simulation
) -> None:
    conn = start(start_plugin, simulation)
    apply(simulation, numberDevices=8, topology={"numaNodes": 2}, allocationPolicy="NUMAAligned")
    listed = conn.wait_for_list(lambda r: len(r.devices) == 8)
    assert [[n.ID for n in d.topology.nodes] for d in listed.devices] == [[0]] * 4 + [[1]] * 4
    # The kubelet offers node 0's device 3 and all of node 1: a request of 4 fits node 1.
    available = [dev(i) for i in (3, 4, 5, 6, 7)]
    assert conn.preferred(available, [], 4) == [dev(i) for i in (4, 5, 6, 7)]
    (c,) = conn.allocate([[dev(3), dev(4)]]).container_responses
    assert c.envs["SD_NUMA_NODES"] == "0,1"
    apply(simulation, numberDevices=8)  # topology removed: no NUMA nodes any more
    listed = conn.wait_for_list(lambda r: not any(d.HasField("topology") for d in r.devices))
    (c,) = conn.allocate([[dev(1)]]).container_responses
    assert "SD_NUMA_NODES" not in c.envs


def test_spread_policy_over_the_protocol(start_plugin: Start, simulation: Simulation) -> None:
    conn = start(start_plugin, simulation)
    apply(simulation, numberDevices=6, topology={"numaNodes": 3}, allocationPolicy="Spread")
    conn.wait_for_list(lambda r: len(r.devices) == 6)
    assert conn.preferred([dev(i) for i in range(6)], [dev(0)], 3) == [dev(0), dev(2), dev(4)]


def rep(i: int, r: int) -> str:
    return f"{dev(i)}::{r}"


def test_replicas_are_advertised_and_allocated(start_plugin: Start, simulation: Simulation) -> None:
    conn = start(start_plugin, simulation)
    apply(simulation, numberDevices=2, sharing={"replicas": 3})
    listed = conn.wait_for_list(lambda r: len(r.devices) == 6)
    assert [d.ID for d in listed.devices] == [rep(i, r) for i in range(2) for r in range(3)]
    everything = [d.ID for d in listed.devices]
    # Spread: a request for 2 gets two physical devices.
    assert conn.preferred(everything, [], 2) == [rep(0, 0), rep(1, 0)]
    (c,) = conn.allocate([[rep(0, 0), rep(0, 2), rep(1, 1)]]).container_responses
    assert c.envs["SD_VISIBLE_DEVICES"] == f"{dev(0)},{dev(1)}"
    assert c.envs["SD_REPLICAS"] == f"{dev(0)}=2,{dev(1)}=1"
    apply(simulation, numberDevices=2, sharing={"replicas": 3, "policy": "Packed"})
    assert conn.preferred(everything, [], 2) == [rep(0, 0), rep(0, 1)]


def test_fail_requests_greater_than_one(start_plugin: Start, simulation: Simulation) -> None:
    conn = start(start_plugin, simulation)
    apply(simulation, sharing={"replicas": 2, "failRequestsGreaterThanOne": True})
    conn.wait_for_list(lambda r: len(r.devices) == 8)
    with pytest.raises(grpc.RpcError) as err:
        conn.allocate([[rep(0, 0), rep(1, 0)]])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "failRequestsGreaterThanOne" in err.value.details()
    assert conn.allocate([[rep(0, 1)]]).container_responses


def test_an_unhealthy_device_takes_all_its_replicas(
    start_plugin: Start, simulation: Simulation
) -> None:
    conn = start(start_plugin, simulation)
    sick = {"name": "sick", "type": "Unhealthy", "devices": {"indices": [1]}}
    apply(simulation, numberDevices=2, sharing={"replicas": 2}, faults=[sick])
    health(conn)(
        {
            rep(0, 0): "Healthy",
            rep(0, 1): "Healthy",
            rep(1, 0): "Unhealthy",
            rep(1, 1): "Unhealthy",
        }
    )


def test_policy_none_registers_again_without_preferred_allocation(
    start_plugin: Start, simulation: Simulation
) -> None:
    plugin = start_plugin(
        behaviour=simulation, hold=simulation.plugin_down, model=simulation._model
    )
    first = plugin.connection()
    assert plugin.kubelet.registrations[0].options.get_preferred_allocation_available
    apply(simulation, allocationPolicy="None")
    second = plugin.connection(count=2)
    assert not plugin.kubelet.registrations[1].options.get_preferred_allocation_available
    assert first.wait_for_end() == grpc.StatusCode.OK  # the old stream ended cleanly
    second.wait_for_list(lambda r: len(r.devices) == 4)
    assert second.options is not None
    assert not second.options.get_preferred_allocation_available
    apply(simulation, allocationPolicy="Packed")
    third = plugin.connection(count=3)
    assert plugin.kubelet.registrations[2].options.get_preferred_allocation_available
    third.wait_for_list(lambda r: len(r.devices) == 4)


# Node pools: the node's labels choose its settings, live.

POOLS = [
    {
        "name": "big",
        "nodeSelector": {"size": "big"},
        "numberDevices": 6,
        "sharing": {"replicas": 2},
    },
    {"name": "small", "nodeSelector": {"size": "small"}, "numberDevices": 1},
]


def test_the_node_moves_between_pools_live(
    start_plugin: Start, simulation: Simulation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="simdev.plugin")
    plugin = start_plugin(
        behaviour=simulation, hold=simulation.plugin_down, model=simulation._model
    )
    conn = plugin.connection()
    # Device 5 exists only on nodes of the big pool: fault indices are the node's own.
    sick = {"name": "five", "type": "Unhealthy", "devices": {"indices": [5]}}
    apply(simulation, numberDevices=4, nodePools=POOLS, faults=[sick])
    health(conn)({dev(i): "Healthy" for i in range(4)})

    simulation.set_node_labels({"size": "big", "zone": "a"})
    expected = {rep(i, r): "Healthy" for i in range(6) for r in range(2)}
    health(conn)({**expected, rep(5, 0): "Unhealthy", rep(5, 1): "Unhealthy"})
    assert simulation.state.config.pool == "big"
    (c,) = conn.allocate([[rep(4, 0)]]).container_responses
    assert c.envs["SD_REPLICAS"] == f"{dev(4)}=1"

    simulation.set_node_labels({"size": "small"})
    health(conn)({dev(0): "Healthy"})
    # A pool edited in the spec reaches its nodes at once.
    apply(simulation, numberDevices=4, nodePools=[POOLS[0], {**POOLS[1], "numberDevices": 2}])
    health(conn)({dev(0): "Healthy", dev(1): "Healthy"})
    simulation.set_node_labels({})
    health(conn)({dev(i): "Healthy" for i in range(4)})

    moves = [
        (r.__dict__["fields"]["from"], r.__dict__["fields"]["to"])
        for r in caplog.records
        if r.getMessage() == "node pool changed"
    ]
    assert moves == [("-", "big"), ("big", "small"), ("small", "-")]
    # Live: one registration, the same stream all along.
    assert len(plugin.kubelet.registrations) == 1


def test_a_node_in_no_pool_ignores_pool_edits(simulation: Simulation) -> None:
    simulation.set_node_labels({"size": "medium"})
    apply(simulation, numberDevices=3, nodePools=POOLS)
    assert (simulation.state.config.pool, simulation.state.config.number_devices) == ("", 3)
    apply(simulation, numberDevices=3, nodePools=[{**POOLS[0], "numberDevices": 9}])
    assert simulation.state.config.number_devices == 3


def test_an_unchecked_pool_that_fails_leaves_the_top_level(
    clock: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    # Pools read from a spec or file are checked; one built by hand may not be valid.
    pools = parse_pools([{"name": "huge", "nodeSelector": {}, "numberDevices": 20000}])
    sim = Simulation(Config(node_name=NODE, node_pools=pools), DeviceModel(()), now=clock)
    assert (sim.state.config.pool, sim.state.config.number_devices) == ("", 2)
    assert "ignoring the node pool" in caplog.text
