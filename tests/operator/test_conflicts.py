"""Conflict detection: who may deploy when several objects claim one resource or socket."""

from __future__ import annotations

from collections.abc import Callable

from simdev.operator.conflicts import Conflict, recorded_conflict, resolve, stale_conflicts
from simdev.operator.model import Device

DeviceFactory = Callable[..., Device]
T1, T2, T3 = "2030-01-01T00:00:01Z", "2030-01-01T00:00:02Z", "2030-01-01T00:00:03Z"


def test_distinct_resources_and_plugins_all_deploy(device: DeviceFactory) -> None:
    a = device("a", created=T1, resourceName="example.com/a")
    b = device("b", created=T2, resourceName="example.com/b")
    assert resolve([a, b]) == {"a": None, "b": None}


def test_the_earlier_object_keeps_a_shared_resource_name(device: DeviceFactory) -> None:
    first = device("zeta", created=T1, resourceName="example.com/x")
    later = device("alpha", created=T2, resourceName="example.com/x")
    verdicts = resolve([later, first])  # input order does not matter
    assert verdicts["zeta"] is None
    assert verdicts["alpha"] == Conflict("zeta", "resourceName", "example.com/x")
    message = verdicts["alpha"].message
    assert "spec.resourceName" in message and "'zeta'" in message


def test_same_creation_time_is_broken_by_uid_not_name(device: DeviceFactory) -> None:
    # Timestamps have one-second resolution; the UID never changes, so the winner is stable.
    b = device("b", created=T1, uid="0001", resourceName="example.com/x")
    a = device("a", created=T1, uid="0002", resourceName="example.com/x")
    verdicts = resolve([a, b])
    assert verdicts["b"] is None
    assert verdicts["a"] == Conflict("b", "resourceName", "example.com/x")


def test_an_old_plugin_name_is_held_until_the_rollout_ends(device: DeviceFactory) -> None:
    # a moved from socket "p" to "q"; its old pods still listen on p.sock while they roll.
    rolling = {"pluginName": "q", "rollingFromPluginName": "p"}
    a = device("a", created=T1, resourceName="example.com/a", pluginName="q", status=rolling)
    b = device("b", created=T2, resourceName="example.com/b", pluginName="p")
    assert resolve([a, b])["b"] == Conflict("a", "pluginName", "p")
    # The status not yet rewritten after the spec change counts the same.
    before = device(
        "a", created=T1, resourceName="example.com/a", pluginName="q", status={"pluginName": "p"}
    )
    assert resolve([before, b])["b"] == Conflict("a", "pluginName", "p")
    rolled = device(
        "a", created=T1, resourceName="example.com/a", pluginName="q", status={"pluginName": "q"}
    )
    assert resolve([rolled, b]) == {"a": None, "b": None}


def test_plugin_name_clashes_across_namespaces(device: DeviceFactory) -> None:
    # The socket directory is one host path, whatever namespace the DaemonSet is in.
    a = device("a", created=T1, resourceName="example.com/a", pluginName="p", namespace="n1")
    b = device("b", created=T2, resourceName="example.com/b", pluginName="p", namespace="n2")
    assert resolve([a, b])["b"] == Conflict("a", "pluginName", "p")


def test_default_plugin_name_is_the_object_name(device: DeviceFactory) -> None:
    a = device("a", created=T1, resourceName="example.com/a")
    b = device("b", created=T2, resourceName="example.com/b", pluginName="a")
    assert resolve([a, b])["b"] == Conflict("a", "pluginName", "a")


def test_an_object_that_lost_blocks_nobody(device: DeviceFactory) -> None:
    # b loses its plugin name to a; c shares only b's resource, which b never got.
    a = device("a", created=T1, resourceName="example.com/a", pluginName="p")
    b = device("b", created=T2, resourceName="example.com/b", pluginName="p")
    c = device("c", created=T3, resourceName="example.com/b", pluginName="q")
    assert resolve([a, b, c]) == {"a": None, "b": Conflict("a", "pluginName", "p"), "c": None}


def test_removing_the_holder_frees_the_next_in_line(device: DeviceFactory) -> None:
    a = device("a", created=T1, resourceName="example.com/x")
    b = device("b", created=T2, resourceName="example.com/x")
    c = device("c", created=T3, resourceName="example.com/x")
    assert resolve([b, c]) == {"b": None, "c": Conflict("b", "resourceName", "example.com/x")}
    assert resolve([a, b, c])["c"] == Conflict("a", "resourceName", "example.com/x")


def _ready(reason: str, message: str) -> dict[str, object]:
    return {
        "conditions": [{"type": "Ready", "status": "False", "reason": reason, "message": message}]
    }


def test_recorded_conflict_reads_the_ready_condition() -> None:
    assert recorded_conflict(_ready("Conflict", "taken")) == "taken"
    assert recorded_conflict(_ready("DaemonSetNotReady", "x")) is None
    assert recorded_conflict({}) is None


def test_stale_conflicts_finds_objects_whose_verdict_changed(device: DeviceFactory) -> None:
    a = device("a", created=T1, resourceName="example.com/x")
    conflict = Conflict("a", "resourceName", "example.com/x")
    waiting = device(
        "b", created=T2, resourceName="example.com/x", status=_ready("Conflict", conflict.message)
    )
    # While a exists, b's recorded conflict is right; once a is gone it is stale.
    assert stale_conflicts([a, waiting]) == []
    assert stale_conflicts([waiting]) == ["b"]
    # A new conflict that is not yet recorded is stale too.
    fresh = device("b", created=T2, resourceName="example.com/x")
    assert stale_conflicts([a, fresh]) == ["b"]


def test_stale_conflicts_skips_objects_being_deleted(device: DeviceFactory) -> None:
    a = device("a", created=T1, resourceName="example.com/x")
    b = device("b", created=T2, resourceName="example.com/x", deleting=True)
    assert stale_conflicts([a, b]) == []


def test_a_dra_driver_name_is_held_by_the_earlier_object(device: DeviceFactory) -> None:
    dra = {"enabled": True, "driverName": "gpu.example.com"}
    first = device("a", created=T1, resourceName="example.com/a", dra=dra)
    later = device("b", created=T2, resourceName="example.com/b", dra=dra)
    off = device("c", created=T3, resourceName="example.com/c", dra={**dra, "enabled": False})
    verdicts = resolve([later, first, off])
    assert verdicts["a"] is None and verdicts["c"] is None
    assert verdicts["b"] == Conflict("a", "dra.driverName", "gpu.example.com")
    assert "spec.dra.driverName" in verdicts["b"].message
