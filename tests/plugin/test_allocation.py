"""Allocation planning (pure functions)."""

from __future__ import annotations

import pytest

from simdev.plugin.allocation import (
    AllocationError,
    AllocationSettings,
    DeviceNode,
    Failure,
    plan_allocation,
)
from simdev.plugin.devices import DeviceModel, Snapshot, make_devices

ALL = AllocationSettings(
    env_prefix="SIMPLE_DEVICE",
    device_file_prefix="simple-device",
    annotation_prefix="simdev.io/simple-device",
)


def snapshot(count: int = 4, unhealthy: tuple[int, ...] = ()) -> Snapshot:
    model = DeviceModel(make_devices("sd", "n", count))
    for i in unhealthy:
        model.set_health(f"sd-n-{i}", False)
    return model.snapshot()


def test_one_allocation_per_container_in_order() -> None:
    plans = plan_allocation(snapshot(), [["sd-n-3", "sd-n-1"], ["sd-n-0"]], ALL)
    assert len(plans) == 2
    first, second = plans
    assert first.device_ids == ("sd-n-1", "sd-n-3")
    assert first.envs == {
        "SIMPLE_DEVICE_1": "/dev/simple-device-1",
        "SIMPLE_DEVICE_3": "/dev/simple-device-3",
        "SIMPLE_DEVICE_VISIBLE_DEVICES": "sd-n-1,sd-n-3",
    }
    assert first.device_nodes == (
        DeviceNode("/dev/simple-device-1"),
        DeviceNode("/dev/simple-device-3"),
    )
    assert first.annotations == {
        "simdev.io/simple-device-1": "sd-n-1",
        "simdev.io/simple-device-3": "sd-n-3",
    }
    assert second.envs == {
        "SIMPLE_DEVICE_0": "/dev/simple-device-0",
        "SIMPLE_DEVICE_VISIBLE_DEVICES": "sd-n-0",
    }
    assert [n.path for n in second.device_nodes] == ["/dev/simple-device-0"]


def test_env_without_device_files_points_at_dev_index() -> None:
    (plan,) = plan_allocation(snapshot(), [["sd-n-2"]], AllocationSettings(env_prefix="X"))
    assert plan.envs == {"X_2": "/dev/2", "X_VISIBLE_DEVICES": "sd-n-2"}
    assert plan.device_nodes == ()
    assert plan.annotations == {}


def test_everything_off_exposes_nothing() -> None:
    (plan,) = plan_allocation(snapshot(), [["sd-n-0", "sd-n-1"]], AllocationSettings())
    assert (plan.envs, plan.device_nodes, plan.annotations) == ({}, (), {})
    assert plan.device_ids == ("sd-n-0", "sd-n-1")


def test_empty_container_request_gets_an_empty_allocation() -> None:
    plans = plan_allocation(snapshot(), [[], ["sd-n-0"]], ALL)
    assert plans[0].device_ids == ()
    assert plans[0].envs == {"SIMPLE_DEVICE_VISIBLE_DEVICES": ""}
    assert plans[1].device_ids == ("sd-n-0",)


def test_unknown_ids_are_not_found_and_named() -> None:
    with pytest.raises(AllocationError) as err:
        plan_allocation(snapshot(), [["sd-n-0"], ["bogus-1", "sd-n-1", "bogus-2"]], ALL)
    assert err.value.failure is Failure.NOT_FOUND
    assert err.value.message == 'unknown device ID(s): "bogus-1", "bogus-2"'


def test_unhealthy_ids_fail_the_precondition() -> None:
    with pytest.raises(AllocationError) as err:
        plan_allocation(snapshot(unhealthy=(2,)), [["sd-n-0"], ["sd-n-2"]], ALL)
    assert err.value.failure is Failure.FAILED_PRECONDITION
    assert err.value.message == 'device(s) not healthy: "sd-n-2"'


def test_unknown_wins_over_unhealthy() -> None:
    with pytest.raises(AllocationError) as err:
        plan_allocation(snapshot(unhealthy=(0,)), [["sd-n-0", "nope"]], ALL)
    assert err.value.failure is Failure.NOT_FOUND
    assert '"nope"' in err.value.message


def test_duplicate_id_in_one_container_is_invalid() -> None:
    with pytest.raises(AllocationError) as err:
        plan_allocation(snapshot(), [["sd-n-0", "sd-n-0"]], ALL)
    assert err.value.failure is Failure.INVALID_ARGUMENT
    assert '"sd-n-0"' in err.value.message


def test_numa_nodes_of_the_devices_are_listed_once() -> None:
    snap = DeviceModel(make_devices("sd", "n", 6, numa_nodes=3)).snapshot()  # 2 per node
    (plan,) = plan_allocation(snap, [["sd-n-5", "sd-n-0", "sd-n-1"]], ALL)
    assert plan.envs["SIMPLE_DEVICE_NUMA_NODES"] == "0,2"
    (plan,) = plan_allocation(snapshot(), [["sd-n-0"]], ALL)
    assert "SIMPLE_DEVICE_NUMA_NODES" not in plan.envs  # no topology


def shared(count: int = 3, replicas: int = 3) -> Snapshot:
    return DeviceModel(make_devices("sd", "n", count, replicas=replicas)).snapshot()


def test_replicas_map_back_to_physical_devices() -> None:
    request = ["sd-n-2::0", "sd-n-0::1", "sd-n-0::2"]
    (plan,) = plan_allocation(shared(), [request], ALL)
    assert plan.device_ids == ("sd-n-0::1", "sd-n-0::2", "sd-n-2::0")
    assert plan.envs == {
        "SIMPLE_DEVICE_0": "/dev/simple-device-0",
        "SIMPLE_DEVICE_2": "/dev/simple-device-2",
        "SIMPLE_DEVICE_VISIBLE_DEVICES": "sd-n-0,sd-n-2",
        "SIMPLE_DEVICE_REPLICAS": "sd-n-0=2,sd-n-2=1",
    }
    assert [n.path for n in plan.device_nodes] == ["/dev/simple-device-0", "/dev/simple-device-2"]
    assert plan.annotations == {
        "simdev.io/simple-device-0": "sd-n-0",
        "simdev.io/simple-device-2": "sd-n-2",
    }


def test_replicas_of_an_unhealthy_device_are_refused() -> None:
    model = DeviceModel(make_devices("sd", "n", 2, unhealthy={1: "fault x"}, replicas=2))
    with pytest.raises(AllocationError) as err:
        plan_allocation(model.snapshot(), [["sd-n-0::0", "sd-n-1::1"]], ALL)
    assert err.value.failure is Failure.FAILED_PRECONDITION
    assert err.value.message == 'device(s) not healthy: "sd-n-1::1" (fault x)'


ONE_ONLY = AllocationSettings(env_prefix="X", fail_requests_greater_than_one=True)


def test_fail_requests_greater_than_one_refuses_two_replicas() -> None:
    with pytest.raises(AllocationError) as err:
        plan_allocation(shared(), [["sd-n-0::0"], ["sd-n-0::1", "sd-n-1::0"]], ONE_ONLY)
    assert err.value.failure is Failure.INVALID_ARGUMENT
    assert err.value.message == (
        "container request 1 asks for 2 replicas of shared devices; "
        "failRequestsGreaterThanOne allows 1 per container"
    )
    (plan,) = plan_allocation(shared(), [["sd-n-1::2"]], ONE_ONLY)
    assert plan.envs["X_REPLICAS"] == "sd-n-1=1"


def test_fail_requests_greater_than_one_needs_sharing() -> None:
    (plan,) = plan_allocation(snapshot(), [["sd-n-0", "sd-n-1"]], ONE_ONLY)
    assert plan.device_ids == ("sd-n-0", "sd-n-1")
    assert "X_REPLICAS" not in plan.envs
