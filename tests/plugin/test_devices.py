"""The device model: IDs, health changes and change notification."""

from __future__ import annotations

import threading
import time

import pytest

from simdev.plugin.devices import (
    HEALTHY,
    UNHEALTHY,
    Device,
    DeviceModel,
    device_id,
    make_devices,
    numa_node_of,
)


def test_ids_are_prefix_node_index() -> None:
    assert device_id("simple-device", "worker-1", 0) == "simple-device-worker-1-0"
    devices = make_devices("gpu", "n1", 3)
    assert [(d.index, d.id, d.health) for d in devices] == [
        (0, "gpu-n1-0", HEALTHY),
        (1, "gpu-n1-1", HEALTHY),
        (2, "gpu-n1-2", HEALTHY),
    ]
    assert make_devices("gpu", "n1", 0) == []


@pytest.mark.parametrize(
    ("count", "nodes", "split"),
    [
        (8, 2, [4, 4]),
        (10, 4, [3, 3, 2, 2]),
        (7, 3, [3, 2, 2]),
        (2, 4, [1, 1, 0, 0]),
        (5, 1, [5]),
        (0, 3, [0, 0, 0]),
    ],
)
def test_numa_nodes_hold_contiguous_blocks(count: int, nodes: int, split: list[int]) -> None:
    placed = [numa_node_of(i, count, nodes) for i in range(count)]
    assert placed == sorted(placed)  # contiguous: never back to an earlier node
    assert [placed.count(n) for n in range(nodes)] == split


def test_devices_carry_their_numa_node() -> None:
    devices = make_devices("gpu", "n1", 4, numa_nodes=2)
    assert [d.numa_node for d in devices] == [0, 0, 1, 1]
    assert all(d.numa_node is None for d in make_devices("gpu", "n1", 4))


def test_replicas_are_advertised_with_a_suffix() -> None:
    devices = make_devices("gpu", "n1", 2, unhealthy={1: "fault x"}, numa_nodes=2, replicas=3)
    assert [d.id for d in devices] == [f"gpu-n1-{i}::{r}" for i in range(2) for r in range(3)]
    assert [(d.index, d.replica, d.numa_node) for d in devices[2:4]] == [(0, 2, 0), (1, 0, 1)]
    # A fault on the physical device reaches every replica.
    assert [d.healthy for d in devices] == [True] * 3 + [False] * 3
    assert {d.physical_id for d in devices} == {"gpu-n1-0", "gpu-n1-1"}
    assert make_devices("gpu", "n1", 1, replicas=1)[0].physical_id == "gpu-n1-0"


def test_snapshot_orders_replicas_after_their_device() -> None:
    devices = make_devices("d", "n", 2, replicas=2)
    model = DeviceModel(reversed(devices))
    assert list(model.snapshot().devices) == ["d-n-0::0", "d-n-0::1", "d-n-1::0", "d-n-1::1"]


def test_snapshot_is_in_index_order() -> None:
    model = DeviceModel([Device(2, "c"), Device(0, "a"), Device(1, "b")])
    assert list(model.snapshot().devices) == ["a", "b", "c"]


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        DeviceModel([Device(0, "a"), Device(1, "a")])


def test_set_health_publishes_a_new_version() -> None:
    model = DeviceModel(make_devices("d", "n", 2))
    before = model.snapshot()
    assert model.set_health("d-n-1", False) is True
    after = model.snapshot()
    assert after.version == before.version + 1
    assert after.devices["d-n-1"].health == UNHEALTHY
    assert after.devices["d-n-0"].healthy
    # Snapshots are immutable views: the old one still shows the old state.
    assert before.devices["d-n-1"].healthy
    # Setting the same health again is not a change.
    assert model.set_health("d-n-1", False) is False
    assert model.snapshot().version == after.version


def test_unknown_id_raises_key_error() -> None:
    model = DeviceModel(make_devices("d", "n", 1))
    with pytest.raises(KeyError):
        model.set_health("nope", False)


def test_waiters_wake_on_change() -> None:
    model = DeviceModel(make_devices("d", "n", 2))
    seen = model.snapshot().version
    timer = threading.Timer(0.1, model.set_health, args=("d-n-0", False))
    started = time.monotonic()
    timer.start()
    latest = model.wait_for_change(seen, timeout=10)
    assert time.monotonic() - started < 5
    assert latest.version == seen + 1
    assert not latest.devices["d-n-0"].healthy


def test_wait_returns_unchanged_snapshot_on_timeout_or_cancel() -> None:
    model = DeviceModel(make_devices("d", "n", 1))
    seen = model.snapshot().version
    assert model.wait_for_change(seen, timeout=0.05).version == seen
    cancel = threading.Event()

    def cancel_and_wake() -> None:
        cancel.set()
        model.wake_all()

    timer = threading.Timer(0.1, cancel_and_wake)
    started = time.monotonic()
    timer.start()
    assert model.wait_for_change(seen, timeout=10, cancel=cancel).version == seen
    assert time.monotonic() - started < 5


def test_set_devices_replaces_the_set() -> None:
    model = DeviceModel(make_devices("d", "n", 2))
    model.set_devices(make_devices("d", "n", 4))
    snap = model.snapshot()
    assert snap.version == 1
    assert list(snap.devices) == ["d-n-0", "d-n-1", "d-n-2", "d-n-3"]
