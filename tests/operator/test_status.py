"""Status logic: conditions, counts, merge patches and the events of transitions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from simdev.operator.conflicts import Conflict
from simdev.operator.model import Device
from simdev.operator.observed import DaemonSetState, DeviceTotals, NodeResources
from simdev.operator.simulation import NodeRow, fault_clock, node_rows
from simdev.operator.status import build_status, judge, status_patch, transition_events
from simdev.plugin.faults import Clock

DeviceFactory = Callable[..., Device]
T0, T1 = "2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z"


def ds(
    desired: int = 1, ready: int = 1, updated: int | None = None, gen: int = 1
) -> DaemonSetState:
    return DaemonSetState(
        namespace="plugins",
        name="simdev-sample",
        generation=gen,
        observed_generation=1,
        desired=desired,
        ready=ready,
        updated=desired if updated is None else updated,
        available=ready,
    )


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in status["conditions"] if c["type"] == kind)
    return found


@pytest.mark.parametrize(
    ("daemon_set", "totals", "reason", "progressing"),
    [
        (None, DeviceTotals(), "DaemonSetNotReady", True),
        (ds(gen=2), DeviceTotals(), "DaemonSetNotReady", True),
        (ds(desired=0, ready=0), DeviceTotals(), "NoMatchingNodes", False),
        (ds(desired=2, ready=1), DeviceTotals(1, 2, 2), "DaemonSetNotReady", True),
        (ds(desired=1, ready=1, updated=0), DeviceTotals(1, 2, 2), "DaemonSetNotReady", True),
        (ds(), DeviceTotals(), "DevicesNotAdvertised", True),
        (ds(), DeviceTotals(1, 4, 4), "DevicesNotAdvertised", True),  # still the old size
    ],
)
def test_not_ready_reasons(
    device: DeviceFactory,
    daemon_set: DaemonSetState | None,
    totals: DeviceTotals,
    reason: str,
    progressing: bool,
) -> None:
    verdict = judge(device(numberDevices=2), conflict=None, daemon_set=daemon_set, totals=totals)
    assert (verdict.ready, verdict.reason, verdict.progressing) == (False, reason, progressing)
    assert verdict.message


def test_ready_when_every_node_offers_every_device(device: DeviceFactory) -> None:
    verdict = judge(
        device(numberDevices=2),
        conflict=None,
        daemon_set=ds(desired=3, ready=3),
        totals=DeviceTotals(3, 6, 6),
    )
    assert verdict.ready and verdict.reason == "DevicesAdvertised" and not verdict.progressing
    assert verdict.message == "3 nodes offer 2 example.com/simple-device each"
    # Zero devices is a valid, ready configuration.
    zero = judge(device(numberDevices=0), conflict=None, daemon_set=ds(), totals=DeviceTotals())
    assert zero.ready


def test_replicas_multiply_what_each_node_offers(device: DeviceFactory) -> None:
    shared = device(numberDevices=2, sharing={"replicas": 3})
    short = judge(shared, conflict=None, daemon_set=ds(2, 2), totals=DeviceTotals(2, 4, 4))
    assert (short.ready, short.reason) == (False, "DevicesNotAdvertised")
    assert "expected 12 (6 on each of 2 nodes)" in short.message
    ready = judge(shared, conflict=None, daemon_set=ds(2, 2), totals=DeviceTotals(2, 12, 12))
    assert ready.ready
    assert ready.message == "2 nodes offer 6 example.com/simple-device each"


def test_conflict_and_errors_win_over_everything(device: DeviceFactory) -> None:
    conflict = Conflict("other", "resourceName", "example.com/x")
    verdict = judge(device(), conflict=conflict, daemon_set=ds(), totals=DeviceTotals(1, 2, 2))
    assert (verdict.ready, verdict.reason, verdict.message) == (False, "Conflict", conflict.message)
    assert not verdict.progressing
    failed = judge(device(), conflict=None, daemon_set=ds(), totals=DeviceTotals(), error="boom")
    assert (failed.reason, failed.message, failed.progressing) == ("ReconcileError", "boom", True)


def test_status_reports_daemon_set_and_device_counts(device: DeviceFactory) -> None:
    d = device("sample", generation=4, numberDevices=2, pluginName="p")
    status = build_status(
        d, conflict=None, daemon_set=ds(desired=2, ready=1), totals=DeviceTotals(1, 2, 2), now=T0
    )
    assert status["observedGeneration"] == 4
    assert status["pluginName"] == "p"
    assert status["nodes"] == "1/2"
    assert status["devices"] == {
        "nodes": 1,
        "capacity": 2,
        "allocatable": 2,
        "allocated": 0,
        "unhealthy": 0,
    }
    assert status["daemonSet"] == {
        "namespace": "plugins",
        "name": "simdev-sample",
        "desiredNumberScheduled": 2,
        "numberReady": 1,
        "updatedNumberScheduled": 2,
        "numberAvailable": 1,
    }
    ready = condition(status, "Ready")
    assert ready["status"] == "False" and ready["observedGeneration"] == 4
    assert condition(status, "Progressing")["status"] == "True"


def test_conflict_status_has_no_daemon_set(device: DeviceFactory) -> None:
    conflict = Conflict("other", "pluginName", "p")
    status = build_status(
        device(), conflict=conflict, daemon_set=ds(), totals=DeviceTotals(), now=T0
    )
    assert status["daemonSet"] is None
    assert status["nodes"] == "0/0"


def test_transition_time_moves_only_when_the_status_flips(device: DeviceFactory) -> None:
    first = build_status(
        device(), conflict=None, daemon_set=ds(ready=0), totals=DeviceTotals(), now=T0
    )
    # Still not ready, for another reason: the transition time stays.
    again = build_status(
        device(status=first), conflict=None, daemon_set=ds(), totals=DeviceTotals(), now=T1
    )
    assert condition(again, "Ready")["reason"] == "DevicesNotAdvertised"
    assert condition(again, "Ready")["lastTransitionTime"] == T0
    ready = build_status(
        device(status=again), conflict=None, daemon_set=ds(), totals=DeviceTotals(1, 2, 2), now=T1
    )
    assert condition(ready, "Ready")["lastTransitionTime"] == T1


def test_status_patch_is_minimal_and_deletes_withdrawn_keys() -> None:
    old = {"nodes": "1/1", "daemonSet": {"name": "x"}, "devices": {"nodes": 1}}
    assert status_patch(old, dict(old)) is None
    new = {"nodes": "0/0", "daemonSet": None, "devices": {"nodes": 1}}
    assert status_patch(old, new) == {"nodes": "0/0", "daemonSet": None}
    assert status_patch({"stale": 1}, {}) == {"stale": None}
    # Nothing to delete when the key was never there.
    assert status_patch({}, {"daemonSet": None}) is None


def _status(ready: bool, reason: str, message: str = "m") -> dict[str, Any]:
    value = "True" if ready else "False"
    return {
        "conditions": [{"type": "Ready", "status": value, "reason": reason, "message": message}]
    }


def test_events_mark_transitions_once() -> None:
    not_ready = _status(False, "DaemonSetNotReady")
    ready = _status(True, "DevicesAdvertised", "1 nodes offer 2")
    assert [e.reason for e in transition_events(not_ready, ready)] == ["Ready"]
    assert transition_events(ready, ready) == []
    lost = transition_events(ready, _status(False, "DaemonSetNotReady", "0 of 1 ready"))
    assert [(e.type, e.reason) for e in lost] == [("Warning", "NotReady")]
    assert transition_events(not_ready, _status(False, "DaemonSetNotReady", "other")) == []


def test_conflict_events_on_start_and_resolution() -> None:
    conflict = _status(False, "Conflict", "taken by a")
    start = transition_events({}, conflict)
    assert [(e.type, e.reason, e.message) for e in start] == [("Warning", "Conflict", "taken by a")]
    assert transition_events(conflict, conflict) == []
    resolved = transition_events(conflict, _status(False, "DaemonSetNotReady"))
    assert [e.reason for e in resolved] == ["ConflictResolved"]


def test_errors_are_reported_once_per_message() -> None:
    failed = _status(False, "ReconcileError", "forbidden")
    assert [e.reason for e in transition_events({}, failed)] == ["ReconcileError"]
    assert transition_events(failed, failed) == []


def test_device_totals_sum_one_resource_over_nodes() -> None:
    nodes = [
        NodeResources("n1", {"example.com/x": 2}, {"example.com/x": 2}),
        NodeResources("n2", {"example.com/x": 2}, {"example.com/x": 0}),  # plugin stopped
        NodeResources("n3", {"example.com/y": 5}, {"example.com/y": 5}),
    ]
    assert DeviceTotals.of("example.com/x", nodes) == DeviceTotals(
        nodes=1, capacity=4, allocatable=2
    )
    assert DeviceTotals.of("example.com/z", nodes) == DeviceTotals()


def test_snapshots_read_kubernetes_bodies() -> None:
    node = NodeResources.from_body(
        {
            "metadata": {"name": "n1"},
            "status": {
                "capacity": {"cpu": "2", "memory": "1Gi", "example.com/x": "3"},
                "allocatable": {"cpu": "1900m", "example.com/x": "1"},
            },
        }
    )
    assert node == NodeResources("n1", {"example.com/x": 3}, {"example.com/x": 1})
    state = DaemonSetState.from_body(
        {
            "metadata": {"namespace": "ns", "name": "d", "generation": 2},
            "status": {
                "observedGeneration": 2,
                "desiredNumberScheduled": 3,
                "numberReady": 3,
                "updatedNumberScheduled": 3,
                "numberAvailable": 3,
            },
        }
    )
    assert state.rolled_out and (state.namespace, state.name, state.desired) == ("ns", "d", 3)
    fresh = DaemonSetState.from_body(
        {"metadata": {"namespace": "ns", "name": "d", "generation": 1}}
    )
    assert not fresh.rolled_out


def test_old_plugin_name_is_kept_until_the_rollout_ends(device: DeviceFactory) -> None:
    moved = device(pluginName="q", status={"pluginName": "p"})

    def status_with(daemon_set: DaemonSetState) -> dict[str, Any]:
        return build_status(
            moved, conflict=None, daemon_set=daemon_set, totals=DeviceTotals(), now=T0
        )

    rolling = status_with(ds(desired=2, ready=1))
    assert (rolling["pluginName"], rolling["rollingFromPluginName"]) == ("q", "p")
    # Still rolling on the next reconcile: the old name stays recorded.
    again = device(pluginName="q", status=rolling)
    kept = build_status(again, conflict=None, daemon_set=ds(2, 1), totals=DeviceTotals(), now=T1)
    assert kept["rollingFromPluginName"] == "p"
    assert status_with(ds(desired=2, ready=2))["rollingFromPluginName"] is None


# Node pools: Ready sums each node's own expectation.

POOLS = [{"name": "big", "nodeSelector": {"size": "big"}, "numberDevices": 8}]
RES = "example.com/simple-device"


def pool_rows(d: Device, *nodes: NodeResources) -> list[NodeRow]:
    return node_rows(d, nodes, {}, Clock(), 0.0)


def res_node(name: str, count: int | None, **labels: str) -> NodeResources:
    held = {} if count is None else {RES: count}
    return NodeResources(name, held, held, labels)


def test_ready_with_pools_sums_the_nodes_expectations(device: DeviceFactory) -> None:
    d = device(numberDevices=2, nodePools=POOLS)
    rows = pool_rows(
        d, res_node("n1", 8, size="big"), res_node("n2", 8, size="big"), res_node("n3", 2)
    )
    ready = judge(d, conflict=None, daemon_set=ds(3, 3), totals=DeviceTotals(3, 18, 18), rows=rows)
    assert ready.ready, ready.message
    assert ready.message == (
        "3 nodes offer 18 example.com/simple-device: 8 on each of 2 nodes in pool big, "
        "2 on 1 node at the top level"
    )
    # The kubelet still shows a big node's old count: 12 of 18.
    short = judge(d, conflict=None, daemon_set=ds(3, 3), totals=DeviceTotals(3, 12, 12), rows=rows)
    assert (short.ready, short.reason) == (False, "DevicesNotAdvertised")
    assert "expected 18 (8 on each of 2 nodes in pool big, 2 on 1 node" in short.message


def test_nodes_without_a_plugin_pod_are_not_expected(device: DeviceFactory) -> None:
    d = device(numberDevices=2, nodePools=POOLS)
    # n0 matches but its taint keeps the plugin away: it never reported the resource.
    rows = pool_rows(d, res_node("n0", None, size="big"), res_node("n1", 8, size="big"))
    verdict = judge(d, conflict=None, daemon_set=ds(1, 1), totals=DeviceTotals(1, 8, 8), rows=rows)
    assert verdict.ready, verdict.message
    assert verdict.message.startswith("1 node offers 8 example.com/simple-device: 8 on 1 node")


def test_with_pools_a_node_the_operator_does_not_know_blocks_ready(device: DeviceFactory) -> None:
    d = device(numberDevices=2, nodePools=POOLS)
    rows = pool_rows(d, res_node("n1", 8, size="big"))
    verdict = judge(d, conflict=None, daemon_set=ds(2, 2), totals=DeviceTotals(1, 8, 8), rows=rows)
    assert (verdict.ready, verdict.reason) == (False, "DevicesNotAdvertised")
    assert "1 of them known to match spec.nodeSelector" in verdict.message


def test_faults_in_a_pool_hold_back_that_pools_devices(device: DeviceFactory) -> None:
    sick = {"name": "two", "type": "Unhealthy", "devices": {"count": 2}}
    d = device(numberDevices=2, nodePools=POOLS, faults=[sick])
    clock = fault_clock(d, {}, 0.0)
    rows = node_rows(d, [res_node("n1", 8, size="big"), res_node("n2", 2)], {}, clock, 0.0)
    verdict = judge(d, conflict=None, daemon_set=ds(2, 2), totals=DeviceTotals(2, 10, 6), rows=rows)
    assert verdict.ready, verdict.message
    assert verdict.message.endswith("; faults hold back 4")
    status = build_status(
        d, conflict=None, daemon_set=ds(2, 2), totals=DeviceTotals(2, 10, 6), now=T0, rows=rows
    )
    assert {r["name"]: r.get("pool") for r in status["nodeDevices"]} == {"n1": "big", "n2": None}
