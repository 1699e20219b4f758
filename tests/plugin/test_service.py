"""The device plugin protocol, in process: the fake kubelet against the real service."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import grpc
import pytest

from simdev.plugin.allocation import AllocationSettings, ContainerAllocation, DeviceNode
from simdev.plugin.api import deviceplugin_pb2 as pb
from simdev.plugin.devices import Device, DeviceModel, make_devices
from simdev.plugin.limits import MAX_DEVICES
from simdev.plugin.service import (
    MAX_WATCH_STREAMS,
    container_response,
    device_message,
    list_response,
)

# Sockets and threads: a hang must fail fast, not stall the suite.
pytestmark = pytest.mark.timeout(30)

NODE = "node-a"
Start = Callable[..., Any]


def dev(i: int) -> str:
    return f"simple-device-{NODE}-{i}"


def test_registers_with_the_options_it_answers(start_plugin: Start) -> None:
    plugin = start_plugin()
    conn = plugin.connection()
    request = conn.request
    assert request.version == "v1beta1"
    assert request.endpoint == "simple-device-plugin.sock"
    assert request.resource_name == "example.com/simple-device"
    answered = conn.stub.GetDevicePluginOptions(pb.Empty(), timeout=5)
    assert answered == request.options
    assert request.options.get_preferred_allocation_available


def test_advertised_calls_are_implemented(start_plugin: Start) -> None:
    conn = start_plugin().connection()
    # GetPreferredAllocation is advertised, PreStartContainer is a no-op: neither may
    # answer UNIMPLEMENTED.
    assert conn.preferred([dev(2), dev(1), dev(0)], [], 2) == [dev(0), dev(1)]
    reply = conn.stub.PreStartContainer(pb.PreStartContainerRequest(devices_ids=[dev(0)]))
    assert reply == pb.PreStartContainerResponse()


def test_preferred_allocation_handles_each_container(start_plugin: Start) -> None:
    conn = start_plugin(count=4).connection()
    request = pb.PreferredAllocationRequest(
        container_requests=[
            pb.ContainerPreferredAllocationRequest(
                available_deviceIDs=[dev(i) for i in (3, 2, 1)],
                must_include_deviceIDs=[dev(3)],
                allocation_size=2,
            ),
            pb.ContainerPreferredAllocationRequest(
                available_deviceIDs=[dev(i) for i in range(4)], allocation_size=1
            ),
        ]
    )
    response = conn.stub.GetPreferredAllocation(request, timeout=5)
    assert [list(r.deviceIDs) for r in response.container_responses] == [
        [dev(3), dev(1)],
        [dev(0)],
    ]


def test_list_and_watch_sends_the_list_then_changes(start_plugin: Start) -> None:
    plugin = start_plugin(count=3)
    conn = plugin.connection()
    first = conn.wait_for_list()
    assert [(d.ID, d.health) for d in first.devices] == [
        (dev(0), "Healthy"),
        (dev(1), "Healthy"),
        (dev(2), "Healthy"),
    ]
    assert not first.devices[0].HasField("topology")

    plugin.model.set_health(dev(1), False)
    conn.wait_for_list(lambda r: r.devices[1].health == "Unhealthy")
    assert conn.health() == {dev(0): "Healthy", dev(1): "Unhealthy", dev(2): "Healthy"}

    plugin.model.set_health(dev(1), True)
    conn.wait_for_list(lambda r: all(d.health == "Healthy" for d in r.devices))
    plugin.model.set_devices([Device(0, dev(0)), Device(1, "extra", numa_node=1)])
    latest = conn.wait_for_list(lambda r: len(r.devices) == 2)
    assert latest.devices[1].ID == "extra"
    assert [n.ID for n in latest.devices[1].topology.nodes] == [1]
    # One message per change: initial, unhealthy, healthy again, new set.
    assert len(conn.lists) == 4


def test_list_and_watch_ends_cleanly_on_shutdown(start_plugin: Start) -> None:
    plugin = start_plugin()
    conn = plugin.connection()
    conn.wait_for_list()
    plugin.stop()
    assert conn.wait_for_end() == grpc.StatusCode.OK
    assert not plugin.socket_path.exists()


def test_allocate_answers_each_container_in_order(start_plugin: Start) -> None:
    plugin = start_plugin(count=4)
    conn = plugin.connection()
    response = conn.allocate([[dev(2)], [dev(3), dev(0)], []])
    assert len(response.container_responses) == 3
    first, second, third = response.container_responses
    assert dict(first.envs) == {
        "SIMPLE_DEVICE_2": "/dev/simple-device-2",
        "SIMPLE_DEVICE_VISIBLE_DEVICES": dev(2),
    }
    assert [(d.container_path, d.host_path, d.permissions) for d in first.devices] == [
        ("/dev/simple-device-2", "/dev/null", "rw")
    ]
    assert dict(first.annotations) == {"simdev.io/simple-device-2": dev(2)}
    assert dict(second.envs) == {
        "SIMPLE_DEVICE_0": "/dev/simple-device-0",
        "SIMPLE_DEVICE_3": "/dev/simple-device-3",
        "SIMPLE_DEVICE_VISIBLE_DEVICES": f"{dev(0)},{dev(3)}",
    }
    assert [d.host_path for d in second.devices] == ["/dev/null", "/dev/null"]
    assert dict(second.annotations) == {
        "simdev.io/simple-device-0": dev(0),
        "simdev.io/simple-device-3": dev(3),
    }
    assert list(third.devices) == []
    assert list(first.mounts) == [] and list(first.cdi_devices) == []


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def test_unknown_id_is_not_found_and_nothing_is_applied(start_plugin: Start) -> None:
    plugin = start_plugin(count=2)
    conn = plugin.connection()
    err = rpc_error(lambda: conn.allocate([[dev(0)], [dev(1), "no-such-device"]]))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert '"no-such-device"' in err.details()


def test_unhealthy_device_fails_precondition_and_nothing_is_applied(start_plugin: Start) -> None:
    plugin = start_plugin(count=2)
    conn = plugin.connection()
    plugin.model.set_health(dev(1), False)
    err = rpc_error(lambda: conn.allocate([[dev(0)], [dev(1)]]))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dev(1) in err.details()


def test_without_file_prefix_no_device_is_mapped(start_plugin: Start) -> None:
    plugin = start_plugin(count=2, settings=AllocationSettings(env_prefix="SD"))
    conn = plugin.connection()
    (container,) = conn.allocate([[dev(1)]]).container_responses
    assert dict(container.envs) == {"SD_1": "/dev/1", "SD_VISIBLE_DEVICES": dev(1)}
    assert list(container.devices) == [] and dict(container.annotations) == {}


def test_long_lived_streams_cannot_starve_allocate(start_plugin: Start) -> None:
    plugin = start_plugin(count=2)
    conn = plugin.connection()
    conn.wait_for_list()  # the kubelet's stream holds one slot
    extra = []
    try:
        for _ in range(MAX_WATCH_STREAMS - 1):
            extra.append(conn.stub.ListAndWatch(pb.Empty()))
            assert len(next(extra[-1]).devices) == 2
        # Every stream slot is taken: one more is refused instead of queueing.
        extra.append(conn.stub.ListAndWatch(pb.Empty()))
        refused = rpc_error(lambda: next(extra[-1]))
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Unary calls still have their own threads.
        results: list[object] = []
        worker = threading.Thread(target=lambda: results.append(conn.allocate([[dev(0)]])))
        worker.start()
        worker.join(timeout=5)
        assert len(results) == 1
    finally:
        for s in extra:
            s.cancel()


@pytest.mark.parametrize("replicas", [1, 2, MAX_DEVICES])
def test_worst_case_device_list_fits_the_kubelet_message_limit(replicas: int) -> None:
    # Longest names the configuration allows: 63-char prefix, 253-char node name; replica
    # suffixes, the longer health string and a NUMA node on every device.
    node = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(node) == 253
    count = MAX_DEVICES // replicas
    broken = dict.fromkeys(range(count), "fault")
    devices = [
        replace(d, numa_node=63)
        for d in make_devices("p" * 63, node, count, broken, replicas=replicas)
    ]
    assert len(devices) == MAX_DEVICES
    size = list_response(DeviceModel(devices).snapshot()).ByteSize()
    assert size < 0.85 * 4 * 1024 * 1024


def test_messages_built_from_the_model() -> None:
    plain = device_message(Device(0, "a"))
    assert (plain.ID, plain.health, plain.HasField("topology")) == ("a", "Healthy", False)
    placed = device_message(Device(1, "b", healthy=False, numa_node=3))
    assert placed.health == "Unhealthy"
    assert [n.ID for n in placed.topology.nodes] == [3]
    plan = ContainerAllocation(
        device_ids=("a",),
        envs={"X_0": "/dev/d-0"},
        device_nodes=(DeviceNode("/dev/d-0"),),
        annotations={"k-0": "a"},
    )
    msg = container_response(plan)
    assert dict(msg.envs) == {"X_0": "/dev/d-0"}
    assert [(d.container_path, d.host_path, d.permissions) for d in msg.devices] == [
        ("/dev/d-0", "/dev/null", "rw")
    ]
    assert dict(msg.annotations) == {"k-0": "a"}
    assert len(msg.mounts) == 0 and len(msg.cdi_devices) == 0
