"""The reconcile loop with its blocking steps replaced by a recording fake."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from simdev.operator import node_sync, reconcile
from simdev.operator.audit import Listed
from simdev.operator.builders import PluginRuntime
from simdev.operator.deployer import Outcome, RetryLater
from simdev.operator.dra import DraObjects
from simdev.operator.model import Device
from simdev.operator.observed import DaemonSetState, NodeResources
from simdev.operator.reconcile import Reconciler
from simdev.operator.status import Event
from simdev.operator.world import World

DeviceFactory = Callable[..., Device]
NOW = "2030-01-01T00:00:00Z"


class FakeDra:
    """Records what the reconcile asks to publish, by object name."""

    def __init__(self) -> None:
        self.published: dict[str, DraObjects] = {}

    def publish(self, device: Device, wanted: DraObjects) -> list[str]:
        self.published[device.name] = wanted
        return []


class FakeDeployer:
    def __init__(self) -> None:
        self.dra = FakeDra()
        self.calls: list[tuple[str, str, list[str]]] = []
        self.statuses: dict[str, dict[str, Any]] = {}
        self.failure: Exception | None = None
        self.status_failures = 0
        self.runtime = PluginRuntime("localhost/simdev-plugin:0.1.0")
        self.ports: dict[str, int | None] = {}
        self.listed = Listed(frozenset(), frozenset(), frozenset())
        self.ready = 0
        self.node_patches: list[tuple[str, dict[str, Any]]] = []
        # Nodes whose next status patch fails with this HTTP status.
        self.node_failures: dict[str, int] = {}

    def list_identities(self) -> Listed:
        return self.listed

    def _ds(self, device: Device) -> DaemonSetState:
        return DaemonSetState(
            device.spec.namespace, f"simdev-{device.name}", 1, 1, 1, self.ready, 1, self.ready
        )

    def deploy(
        self, device: Device, namespaces: Iterable[str], metrics_port: int | None = None
    ) -> Outcome:
        self.calls.append(("deploy", device.name, sorted(namespaces)))
        self.ports[device.name] = metrics_port
        if self.failure:
            raise self.failure
        return Outcome(self._ds(device), [f"Created DaemonSet simdev-{device.name}"])

    def withdraw(self, device: Device, namespaces: Iterable[str]) -> Outcome:
        self.calls.append(("withdraw", device.name, sorted(namespaces)))
        return Outcome()

    def tear_down(self, device: Device, namespaces: Iterable[str]) -> list[str]:
        self.calls.append(("tear_down", device.name, sorted(namespaces)))
        return []

    def patch_status(self, device: Device, patch: Mapping[str, Any]) -> None:
        if self.status_failures:
            self.status_failures -= 1
            raise ApiException(status=500, reason="Internal Server Error")
        status = self.statuses.setdefault(device.name, {})
        for key, value in patch.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value

    def patch_node_status(self, node: str, patch: Mapping[str, Any]) -> None:
        failure = self.node_failures.pop(node, None)
        if failure:
            raise ApiException(status=failure, reason="Failed")
        self.node_patches.append((node, dict(patch)))


class Harness:
    def __init__(self) -> None:
        self.deployer = FakeDeployer()
        self.events: list[tuple[str, Event]] = []
        self.reconciler = Reconciler(
            self.deployer,  # type: ignore[arg-type]
            post_event=lambda d, e: self.events.append((d.name, e)),
            clock=lambda: NOW,
        )
        self.world = World()

    def run(self, name: str) -> None:
        asyncio.run(self.reconciler.reconcile(name, lambda: self.world))

    def ready(self, name: str) -> dict[str, Any]:
        conditions = self.deployer.statuses[name]["conditions"]
        found: dict[str, Any] = next(c for c in conditions if c["type"] == "Ready")
        return found


@pytest.fixture
def harness() -> Harness:
    return Harness()


def node(resource: str, count: int) -> NodeResources:
    return NodeResources("n1", {resource: count}, {resource: count})


def test_deploys_and_reports_progress(harness: Harness, device: DeviceFactory) -> None:
    d = device("a", namespace="plugins")
    harness.world = World(devices={"a": d})
    harness.run("a")
    assert harness.deployer.calls == [("deploy", "a", ["plugins"])]
    status = harness.deployer.statuses["a"]
    assert status["daemonSet"]["name"] == "simdev-a"
    assert harness.ready("a")["reason"] == "DaemonSetNotReady"
    assert harness.events == [("a", Event("Normal", "Created", "Created DaemonSet simdev-a"))]


def test_becomes_ready_once_nodes_offer_the_devices(
    harness: Harness, device: DeviceFactory
) -> None:
    d = device("a", numberDevices=2)
    harness.deployer.ready = 1
    harness.world = World(devices={"a": d}, nodes=(node("example.com/simple-device", 2),))
    harness.run("a")
    assert harness.ready("a")["status"] == "True"
    assert harness.deployer.statuses["a"]["devices"] == {
        "allocated": 0,
        "unhealthy": 0,
        "nodes": 1,
        "capacity": 2,
        "allocatable": 2,
    }
    assert ("a", Event("Normal", "Ready", harness.ready("a")["message"])) in harness.events


def test_reconciling_a_converged_object_writes_and_posts_nothing(
    harness: Harness, device: DeviceFactory
) -> None:
    harness.world = World(devices={"a": device("a")})
    harness.run("a")
    written = json.dumps(harness.deployer.statuses, sort_keys=True)
    harness.events.clear()
    harness.deployer.calls.clear()
    harness.deployer.patch_status = None  # type: ignore[assignment,method-assign]
    harness.run("a")  # would fail if it tried to patch the status
    assert json.dumps(harness.deployer.statuses, sort_keys=True) == written
    assert harness.events == [("a", Event("Normal", "Created", "Created DaemonSet simdev-a"))]
    assert harness.deployer.calls == [("deploy", "a", ["simple-device-plugin"])]


def test_the_later_object_of_a_conflict_is_withdrawn(
    harness: Harness, device: DeviceFactory
) -> None:
    first = device("first", created="2030-01-01T00:00:01Z")
    later = device("later", created="2030-01-01T00:00:02Z")
    harness.world = World(devices={"first": first, "later": later})
    harness.run("later")
    assert harness.deployer.calls == [("withdraw", "later", ["simple-device-plugin"])]
    ready = harness.ready("later")
    assert (ready["status"], ready["reason"]) == ("False", "Conflict")
    assert "'first'" in ready["message"]
    assert "daemonSet" not in harness.deployer.statuses["later"]
    assert [(e.type, e.reason) for _, e in harness.events] == [("Warning", "Conflict")]


def test_api_errors_are_reported_and_retried(harness: Harness, device: DeviceFactory) -> None:
    err = ApiException(status=403, reason="Forbidden")
    err.body = json.dumps({"message": 'daemonsets.apps "simdev-a" is forbidden'})
    harness.deployer.failure = err
    harness.world = World(devices={"a": device("a")})
    with pytest.raises(kopf.TemporaryError, match="forbidden"):
        harness.run("a")
    ready = harness.ready("a")
    assert (ready["reason"], ready["message"]) == (
        "ReconcileError",
        'daemonsets.apps "simdev-a" is forbidden',
    )
    assert [(e.type, e.reason) for _, e in harness.events] == [("Warning", "ReconcileError")]


@pytest.mark.parametrize(
    "failure",
    [
        RetryLater("namespace x is being deleted"),
        urllib3.exceptions.MaxRetryError(None, "/api", reason=ConnectionRefusedError()),  # type: ignore[arg-type]
    ],
)
def test_waiting_steps_and_unreachable_servers_are_retried(
    harness: Harness, device: DeviceFactory, failure: Exception
) -> None:
    harness.deployer.failure = failure
    harness.world = World(devices={"a": device("a")})
    with pytest.raises(kopf.TemporaryError):
        harness.run("a")
    ready = harness.ready("a")
    assert (ready["reason"], ready["message"]) == ("ReconcileError", str(failure))


def test_objects_being_deleted_or_gone_are_left_alone(
    harness: Harness, device: DeviceFactory
) -> None:
    harness.world = World(devices={"a": device("a", deleting=True)})
    harness.run("a")
    harness.run("missing")
    assert harness.deployer.calls == []


def test_old_namespaces_come_from_the_index_and_the_status(
    harness: Harness, device: DeviceFactory
) -> None:
    d = device("a", namespace="new", status={"daemonSet": {"namespace": "older"}})
    old_ds = DaemonSetState("old", "simdev-a", 1, 1, 1, 1, 1, 1)
    harness.world = World(devices={"a": d}, daemon_sets={"a": (old_ds,)})
    harness.run("a")
    assert harness.deployer.calls == [("deploy", "a", ["new", "old", "older"])]


def test_daemon_sets_already_going_away_are_left_alone(
    harness: Harness, device: DeviceFactory
) -> None:
    d = device("a", namespace="new", status={"daemonSet": {"namespace": "new"}})
    going = DaemonSetState("old", "simdev-a", 1, 1, 1, 1, 1, 1, deleting=True)
    harness.world = World(devices={"a": d}, daemon_sets={"a": (going,)})
    harness.run("a")
    assert harness.deployer.calls == [("deploy", "a", ["new"])]
    # Deletion still waits for it (and covers "new", which the last status recorded).
    harness.world = World(devices={"a": device("a", deleting=True)}, daemon_sets={"a": (going,)})
    asyncio.run(harness.reconciler.tear_down("a", lambda: harness.world))
    assert harness.deployer.calls[-1] == ("tear_down", "a", ["new", "old", "simple-device-plugin"])


def test_needing_reconcile_picks_only_objects_whose_facts_moved(
    harness: Harness, device: DeviceFactory
) -> None:
    # a runs on other nodes than the one below, so nothing about it moves.
    a = device("a", created="2030-01-01T00:00:01Z", nodeSelector={"pool": "a"})
    b = device("b", created="2030-01-01T00:00:02Z", resourceName="example.com/b")
    harness.world = World(devices={"a": a, "b": b})
    harness.run("a")
    harness.run("b")
    assert harness.reconciler.needing_reconcile(harness.world) == []
    # A node starts offering b's resource: only b's counts are stale.
    harness.world = World(devices={"a": a, "b": b}, nodes=(node("example.com/b", 2),))
    assert harness.reconciler.needing_reconcile(harness.world) == ["b"]


def test_a_node_moving_to_a_pool_is_noticed(harness: Harness, device: DeviceFactory) -> None:
    res = "example.com/simple-device"
    pools = [{"name": "big", "nodeSelector": {"size": "big"}, "numberDevices": 4}]
    d = device("a", nodePools=pools)
    harness.deployer.ready = 1
    harness.world = World(devices={"a": d}, nodes=(NodeResources("n1", {res: 2}, {res: 2}),))
    harness.run("a")
    assert harness.ready("a")["status"] == "True"
    assert harness.reconciler.needing_reconcile(harness.world) == []
    # The node is labelled into the pool: its row changes before the kubelet's counts do.
    moved = NodeResources("n1", {res: 2}, {res: 2}, {"size": "big"})
    harness.world = World(devices={"a": d}, nodes=(moved,))
    assert harness.reconciler.needing_reconcile(harness.world) == ["a"]
    harness.run("a")
    (row,) = harness.deployer.statuses["a"]["nodeDevices"]
    assert row["pool"] == "big"
    assert "expected 4 (4 on 1 node in pool big)" in harness.ready("a")["message"]


def test_a_resolved_conflict_is_noticed(harness: Harness, device: DeviceFactory) -> None:
    first = device("first", created="2030-01-01T00:00:01Z")
    later = device("later", created="2030-01-01T00:00:02Z")
    harness.world = World(devices={"first": first, "later": later})
    harness.run("first")
    harness.run("later")
    assert harness.reconciler.needing_reconcile(harness.world) == []
    harness.world = World(devices={"later": later})  # first was deleted
    assert harness.reconciler.needing_reconcile(harness.world) == ["later"]
    harness.run("later")
    assert harness.deployer.calls[-1] == ("deploy", "later", ["simple-device-plugin"])
    assert (
        "later",
        Event("Normal", "ConflictResolved", "nothing else claims its resource; deploying"),
    ) in harness.events


def test_tear_down_covers_every_namespace_used(harness: Harness, device: DeviceFactory) -> None:
    d = device("a", namespace="new", deleting=True, status={"daemonSet": {"namespace": "old"}})
    harness.world = World(devices={"a": d})
    left = asyncio.run(harness.reconciler.tear_down("a", lambda: harness.world))
    assert left == []
    assert harness.deployer.calls == [("tear_down", "a", ["new", "old"])]


def test_safety_net_runs_after_failures_and_when_never_run(
    harness: Harness, device: DeviceFactory
) -> None:
    d = device("a")
    harness.world = World(devices={"a": d})
    assert harness.reconciler.resync_due(d)
    harness.run("a")
    assert not harness.reconciler.resync_due(d)
    harness.deployer.failure = RetryLater("later")
    with pytest.raises(kopf.TemporaryError):
        harness.run("a")
    assert harness.reconciler.resync_due(d)


def test_an_expected_race_is_retried_without_an_error_status(
    harness: Harness, device: DeviceFactory
) -> None:
    harness.world = World(devices={"a": device("a")})
    harness.deployer.failure = ApiException(status=422, reason="Unprocessable Entity")
    with pytest.raises(reconcile.Raced):
        harness.run("a")
    assert "a" not in harness.deployer.statuses
    assert not [e for _, e in harness.events if e.type == "Warning"]


def test_a_failed_status_write_is_retried_within_seconds(
    harness: Harness, device: DeviceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile, "RETRY_FIRST", 0.01)
    harness.world = World(devices={"a": device("a")})
    harness.deployer.status_failures = 2

    async def trigger_then_wait() -> None:
        await harness.reconciler.reconcile_quietly("a", lambda: harness.world)
        for _ in range(200):
            if "a" in harness.deployer.statuses:
                return
            await asyncio.sleep(0.01)

    asyncio.run(trigger_then_wait())
    assert harness.deployer.statuses["a"]["observedGeneration"] == 1
    assert harness.deployer.status_failures == 0


def test_audit_hides_index_entries_of_deleted_objects(
    harness: Harness, device: DeviceFactory
) -> None:
    # b was deleted while the watch was down: the index still holds it, and it still holds
    # the resource a asks for.
    b = device("b", created="2030-01-01T00:00:01Z")
    a = device("a", created="2030-01-01T00:00:02Z")
    gone = NodeResources("gone", {"example.com/simple-device": 2}, {}, uid="n-gone")
    harness.world = World(devices={"a": a, "b": b}, nodes=(gone,))
    harness.run("a")
    assert harness.ready("a")["reason"] == "Conflict"
    harness.deployer.listed = Listed(frozenset({("a", a.uid)}), frozenset(), frozenset())
    stale = asyncio.run(harness.reconciler.audit(lambda: harness.world))
    assert stale.devices == {("b", b.uid)} and stale.nodes == {("gone", "n-gone")}
    assert harness.reconciler.needing_reconcile(harness.world) == ["a"]
    harness.run("a")
    assert harness.ready("a")["reason"] != "Conflict"
    assert harness.deployer.statuses["a"]["devices"]["capacity"] == 0
    # A re-created object has a new UID and is not hidden.
    again = device("b", created="2030-01-01T00:00:03Z", uid="uid-b2")
    world = World(devices={"a": a, "b": again})
    assert set(harness.reconciler.view(lambda: world).devices) == {"a", "b"}


def test_metrics_count_reconciles_errors_and_managed_objects(device: DeviceFactory) -> None:
    from simdev.operator.metrics import OperatorMetrics, parse_endpoint

    harness = Harness()
    metrics = OperatorMetrics()
    harness.reconciler = Reconciler(
        harness.deployer,  # type: ignore[arg-type]
        post_event=lambda d, e: None,
        clock=lambda: NOW,
        metrics=metrics,
    )
    harness.world = World(devices={"a": device("a"), "b": device("b", resourceName="x.io/b")})
    harness.run("a")
    harness.deployer.failure = ApiException(status=403, reason="Forbidden")
    with pytest.raises(kopf.TemporaryError):
        harness.run("b")

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert value("simdev_operator_reconciles_total", result="ok") == 1
    assert value("simdev_operator_reconciles_total", result="error") == 1
    assert value("simdev_operator_reconcile_errors_total", reason="http-403") == 1
    assert value("simdev_operator_reconcile_duration_seconds_count") == 2
    assert value("simdev_operator_managed_objects", kind="SimulatedDevice") == 2
    assert parse_endpoint("http://127.0.0.1:8090/metrics") == ("127.0.0.1", 8090)
    with pytest.raises(ValueError, match="SIMDEV_METRICS_ENDPOINT"):
        parse_endpoint("127.0.0.1:8090")


def test_host_network_plugins_get_distinct_lasting_metrics_ports(
    harness: Harness, device: DeviceFactory
) -> None:
    harness.deployer.runtime = PluginRuntime("img", host_network=True, metrics_port=9600)
    # b's status already records 9600 (from an earlier operator run): a must not take it.
    b = device("b", resourceName="x.io/b", status={"metricsPort": 9600})
    harness.world = World(devices={"a": device("a"), "b": b})
    harness.run("a")
    harness.run("b")
    assert harness.deployer.ports == {"a": 9601, "b": 9600}
    assert harness.deployer.statuses["a"]["metricsPort"] == 9601
    harness.run("a")
    assert harness.deployer.ports["a"] == 9601  # kept on every reconcile
    # Off the host network every plugin has its own pod IP: the default port for all.
    harness.deployer.runtime = PluginRuntime("img")
    harness.run("a")
    assert harness.deployer.ports["a"] is None


def test_publishes_dra_slices_for_the_selected_nodes(
    harness: Harness, device: DeviceFactory
) -> None:
    d = device("a", numberDevices=3, nodeSelector={"gpu": "yes"}, dra={"enabled": True})
    nodes = (
        NodeResources("n1", {}, {}, labels={"gpu": "yes"}),
        NodeResources("n2", {}, {}, labels={"gpu": "no"}),
    )
    harness.world = World(devices={"a": d}, nodes=nodes)
    harness.run("a")
    wanted = harness.deployer.dra.published["a"]
    assert wanted.device_class is not None
    assert wanted.device_class["metadata"]["name"] == "a.simdev.io"
    assert list(wanted.pools) == ["n1"]
    (only,) = wanted.pools["n1"]
    assert [dev["name"] for dev in only["spec"]["devices"]] == ["device-0", "device-1", "device-2"]


def test_without_dra_the_reconcile_publishes_nothing(
    harness: Harness, device: DeviceFactory
) -> None:
    harness.world = World(devices={"a": device("a")}, nodes=(node("x/y", 0),))
    harness.run("a")
    assert harness.deployer.dra.published["a"] == DraObjects(None, {})


def test_a_deleted_slice_reconciles_its_owner_and_nothing_else_does(
    harness: Harness, device: DeviceFactory
) -> None:
    from simdev.operator import handlers
    from simdev.operator.model import OWNER_LABEL

    harness.world = World(devices={"a": device("a", dra={"enabled": True})})
    indexes: dict[str, Any] = {
        "simdev_devices": {"a": [harness.world.devices["a"]]},
        "simdev_daemonsets": {},
        "simdev_nodes": {},
        "simdev_pods": {},
    }
    memo = kopf.Memo(reconciler=harness.reconciler)
    changed: Any = handlers.resource_slice_changed
    for kind in ("ADDED", "MODIFIED", None):
        asyncio.run(changed(type=kind, labels={OWNER_LABEL: "a"}, memo=memo, **indexes))
    asyncio.run(changed(type="DELETED", labels={}, memo=memo, **indexes))
    assert harness.deployer.calls == []
    asyncio.run(changed(type="DELETED", labels={OWNER_LABEL: "a"}, memo=memo, **indexes))
    assert harness.deployer.calls == [("deploy", "a", ["simple-device-plugin"])]
    assert "a" in harness.deployer.dra.published


def test_a_status_refresh_leaves_the_plugin_objects_alone(
    harness: Harness, device: DeviceFactory
) -> None:
    harness.world = World(devices={"a": device("a")})
    harness.run("a")
    harness.world = World(devices={"a": device("a")}, nodes=(node("example.com/simple-device", 2),))
    harness.deployer.calls.clear()
    asyncio.run(harness.reconciler.reconcile("a", lambda: harness.world, deploy=False))
    assert harness.deployer.calls == []
    assert harness.deployer.statuses["a"]["devices"]["capacity"] == 2


def test_a_status_refresh_after_a_failure_deploys(harness: Harness, device: DeviceFactory) -> None:
    harness.world = World(devices={"a": device("a")})
    harness.deployer.failure = RetryLater("waiting")
    with pytest.raises(kopf.TemporaryError):
        harness.run("a")
    harness.deployer.failure = None
    harness.deployer.calls.clear()
    asyncio.run(harness.reconciler.reconcile("a", lambda: harness.world, deploy=False))
    assert [c[0] for c in harness.deployer.calls] == ["deploy"]


def test_fake_nodes_get_the_resource_after_a_reconcile(
    harness: Harness, device: DeviceFactory
) -> None:
    fake = NodeResources("kwok-node-0", {}, {}, {"type": "kwok"}, fake=True)
    harness.world = World(devices={"a": device("a", numberDevices=3)}, nodes=(fake,))

    async def reconcile_then_wait() -> None:
        await harness.reconciler.reconcile("a", lambda: harness.world)
        await harness.reconciler.nodes.sync_all(lambda: harness.world)

    asyncio.run(reconcile_then_wait())
    (name, patch), *_ = harness.deployer.node_patches
    assert name == "kwok-node-0"
    assert patch["status"]["capacity"] == {"example.com/simple-device": "3"}


def test_only_spec_changes_and_deletions_of_an_object_make_node_passes(
    monkeypatch: pytest.MonkeyPatch, device: DeviceFactory
) -> None:
    monkeypatch.setattr(node_sync, "PASS_DELAY", 0.0)
    harness = Harness()
    res = "example.com/simple-device"
    fake = NodeResources("kwok-node-0", {}, {}, {"type": "kwok"}, fake=True)
    served = dataclasses.replace(
        fake, capacity={res: 2}, allocatable={res: 2}, recorded=frozenset({res})
    )
    harness.world = World(devices={"a": device("a")}, nodes=(fake,))
    meta = {"uid": "uid-a", "generation": 1}
    nodes = harness.reconciler.nodes

    def observe() -> World:
        return harness.world

    async def events() -> None:
        nodes.device_event("a", {"metadata": meta}, observe)
        await asyncio.sleep(0.05)
        # The object is gone from this world, so a pass would remove the resource: its
        # status writes (the same generation) make none.
        harness.world = World(devices={}, nodes=(served,))
        nodes.device_event("a", {"metadata": meta}, observe)
        await asyncio.sleep(0.05)
        assert len(harness.deployer.node_patches) == 1
        nodes.device_gone("a", observe)
        await asyncio.sleep(0.05)

    asyncio.run(events())
    (_, wrote), (_, removed) = harness.deployer.node_patches
    assert wrote["status"]["capacity"] == {res: "2"}
    assert removed["status"]["capacity"] == {res: None}


def passes_at_once(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> tuple[Harness, tuple[NodeResources, ...]]:
    """A harness whose node passes and retries run without delay, and count fake nodes."""
    monkeypatch.setattr(node_sync, "PASS_DELAY", 0.0)
    monkeypatch.setattr(node_sync, "RETRY_DELAY", 0.0)
    fakes = tuple(
        NodeResources(f"kwok-node-{i}", {}, {}, {"type": "kwok"}, fake=True) for i in range(count)
    )
    return Harness(), fakes


def test_a_pass_patches_every_node_a_gone_node_is_no_failure_and_a_failure_is_retried(
    monkeypatch: pytest.MonkeyPatch, device: DeviceFactory
) -> None:
    harness, fakes = passes_at_once(monkeypatch, 40)
    harness.world = World(devices={"a": device("a", numberDevices=2)}, nodes=fakes)
    harness.deployer.node_failures = {"kwok-node-3": 404, "kwok-node-7": 500}

    async def one_pass_then_its_retry() -> None:
        await harness.reconciler.nodes.sync_all(lambda: harness.world)
        assert {n for n, _ in harness.deployer.node_patches} == {
            f.name for f in fakes if f.name not in ("kwok-node-3", "kwok-node-7")
        }
        # The patched nodes now carry the resource, as their watch events would show.
        patched = {n for n, _ in harness.deployer.node_patches}
        harness.world = dataclasses.replace(
            harness.world,
            nodes=tuple(
                dataclasses.replace(f, capacity={res: 2}, allocatable={res: 2}, recorded=key)
                if f.name in patched
                else f
                for f in fakes
            ),
        )
        harness.deployer.node_patches.clear()
        await asyncio.sleep(0.05)

    res = "example.com/simple-device"
    key = frozenset({res})
    asyncio.run(one_pass_then_its_retry())
    # The retry is a pass like any other: the failed node, and the gone one if it is back.
    assert {n for n, _ in harness.deployer.node_patches} == {"kwok-node-3", "kwok-node-7"}


def test_a_node_event_that_fails_is_retried_by_a_pass_over_every_node(
    monkeypatch: pytest.MonkeyPatch, device: DeviceFactory
) -> None:
    harness, fakes = passes_at_once(monkeypatch, 2)
    devices = {"a": device("a")}
    harness.deployer.node_failures = {"kwok-node-0": 500}

    async def event_then_retry() -> None:
        await harness.reconciler.nodes.sync_node(
            "kwok-node-0",
            lambda: World(devices=devices, nodes=fakes[:1]),
            lambda: World(devices=devices, nodes=fakes),
        )
        assert harness.deployer.node_patches == []
        await asyncio.sleep(0.05)

    asyncio.run(event_then_retry())
    assert sorted(n for n, _ in harness.deployer.node_patches) == ["kwok-node-0", "kwok-node-1"]


def test_a_status_refresh_moves_dra_slices_to_a_new_node(
    harness: Harness, device: DeviceFactory
) -> None:
    d = device("a", numberDevices=2, dra={"enabled": True})
    harness.world = World(devices={"a": d}, nodes=(NodeResources("n1", {}, {}),))
    harness.run("a")
    assert list(harness.deployer.dra.published["a"].pools) == ["n1"]
    harness.world = World(
        devices={"a": d}, nodes=(NodeResources("n1", {}, {}), NodeResources("n2", {}, {}))
    )
    harness.deployer.calls.clear()
    asyncio.run(harness.reconciler.reconcile("a", lambda: harness.world, deploy=False))
    # The plugin objects are left alone, but the new node gets its slice at once.
    assert harness.deployer.calls == []
    assert sorted(harness.deployer.dra.published["a"].pools) == ["n1", "n2"]
