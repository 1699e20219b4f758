"""Kopf wiring: indexes that keep snapshots, and thin handlers that all call one reconcile.

Run with `simdev-operator` (or `kopf run -m simdev.operator.handlers --all-namespaces`).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import kopf
import urllib3
from kubernetes.client.exceptions import ApiException

from simdev.operator.builders import PluginRuntime
from simdev.operator.deployer import Deployer
from simdev.operator.kube import Kube, load_api_client
from simdev.operator.metrics import DEFAULT_ENDPOINT as DEFAULT_METRICS_ENDPOINT
from simdev.operator.metrics import ENDPOINT_ENV as METRICS_ENDPOINT_ENV
from simdev.operator.metrics import OperatorMetrics
from simdev.operator.metrics import serve as serve_metrics
from simdev.operator.model import (
    GROUP,
    MANAGED_BY_LABEL,
    MANAGER,
    OWNER_LABEL,
    PLURAL,
    VERSION,
    Device,
)
from simdev.operator.observed import (
    DaemonSetState,
    NodeResources,
    PodDevices,
    requested_devices,
)
from simdev.operator.reconcile import Reconciler
from simdev.operator.settings import configure
from simdev.operator.world import Observe, World

PLUGIN_IMAGE_ENV = "SIMDEV_PLUGIN_IMAGE"
DEFAULT_PLUGIN_IMAGE = "localhost/simdev-plugin:0.1.0"
# The ID of the image behind that fixed tag, set by scripts/deploy.sh: a new ID rolls the
# plugin pods, and empty rolls nothing.
PLUGIN_IMAGE_ID_ENV = "SIMDEV_PLUGIN_IMAGE_ID"
# How long deletion waits for the plugin pods to stop before it lets the garbage collector
# finish alone (a node that went away never confirms).
TEARDOWN_PATIENCE = datetime.timedelta(minutes=2)
RESYNC_CHECK_INTERVAL = 30.0
# Handlers that run on every watch event or timer tick, whose success is not news.
ROUTINE_HANDLERS = (
    "node_changed",
    "pod_changed",
    "daemon_set_changed",
    "resource_slice_changed",
    "simulated_device_changed",
    "safety-net",
    "fault-clock",
)

DevicesIndex = kopf.Index[str, Device]
DaemonSetsIndex = kopf.Index[str, DaemonSetState]
NodesIndex = kopf.Index[str, NodeResources]
PodsIndex = kopf.Index[str, PodDevices]
# The fault clock wakes at least this often, so a fault added meanwhile is not missed by more.
FAULT_CLOCK_MAX_SLEEP = 2.0

T = TypeVar("T")


# Set by the local cluster's overlay, where pods reach the API server only on the host's
# loopback: plugin pods then use the host network and this address.
PLUGIN_HOST_NETWORK_ENV = "SIMDEV_PLUGIN_HOST_NETWORK"
PLUGIN_API_HOST_ENV = "SIMDEV_PLUGIN_API_HOST"
PLUGIN_API_PORT_ENV = "SIMDEV_PLUGIN_API_PORT"
# The plugins' metrics port (on the host network: the first of the ports handed out).
PLUGIN_METRICS_PORT_ENV = "SIMDEV_PLUGIN_METRICS_PORT"


def plugin_runtime(environ: Mapping[str, str]) -> PluginRuntime:
    """How plugin pods run, from the operator's environment (image ID "" when unknown)."""
    return PluginRuntime(
        image=environ.get(PLUGIN_IMAGE_ENV) or DEFAULT_PLUGIN_IMAGE,
        image_id=environ.get(PLUGIN_IMAGE_ID_ENV, "").strip(),
        host_network=environ.get(PLUGIN_HOST_NETWORK_ENV, "").lower() == "true",
        api_host=environ.get(PLUGIN_API_HOST_ENV, "").strip(),
        api_port=environ.get(PLUGIN_API_PORT_ENV, "").strip(),
        metrics_port=int(environ.get(PLUGIN_METRICS_PORT_ENV) or PluginRuntime.metrics_port),
    )


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    runtime = plugin_runtime(os.environ)
    metrics = OperatorMetrics()
    serve_metrics(metrics, os.environ.get(METRICS_ENDPOINT_ENV) or DEFAULT_METRICS_ENDPOINT)
    memo["reconciler"] = Reconciler(Deployer(Kube(load_api_client()), runtime), metrics=metrics)
    logging.getLogger(__name__).info(
        "default plugin image: %s (image ID: %s); host network: %s",
        runtime.image,
        runtime.image_id or "unknown",
        runtime.host_network,
    )


# The index functions are async though they never wait: kopf runs a sync handler in the
# loop's thread pool, a hop per watch event (thousands at scale) for a few dict lookups.
@kopf.index(GROUP, VERSION, PLURAL)
async def simdev_devices(body: kopf.Body, **_: Any) -> dict[str, Device]:
    device = Device.from_body(body)
    return {device.name: device}


@kopf.index("apps", "v1", "daemonsets", labels={MANAGED_BY_LABEL: MANAGER})
async def simdev_daemonsets(
    body: kopf.Body, labels: kopf.Labels, **_: Any
) -> dict[str, DaemonSetState]:
    owner = labels.get(OWNER_LABEL)
    return {owner: DaemonSetState.from_body(body)} if owner else {}


@kopf.index("v1", "nodes")
async def simdev_nodes(body: kopf.Body, name: str, **_: Any) -> dict[str, NodeResources]:
    return {name: NodeResources.from_body(body)}


@kopf.index("v1", "pods")
async def simdev_pods(
    body: kopf.Body, name: str, namespace: str | None, **_: Any
) -> dict[str, PodDevices]:
    # Only pods that hold an extended resource are kept, as two small fields.
    held = PodDevices.from_body(body)
    return {f"{namespace}/{name}": held} if held else {}


def _values(store: Iterable[T]) -> list[T]:
    return list(store)


def observer(
    devices: Mapping[str, Iterable[Device]],
    daemon_sets: Mapping[str, Iterable[DaemonSetState]],
    nodes: Mapping[str, Iterable[NodeResources]],
    pods: Mapping[str, Iterable[PodDevices]] | None = None,
) -> Observe:
    """A function that snapshots the live indexes whenever the reconciler asks."""

    def observe() -> World:
        return World(
            devices={name: d for name, store in devices.items() for d in _values(store)[:1]},
            daemon_sets={owner: tuple(_values(store)) for owner, store in daemon_sets.items()},
            nodes=tuple(n for store in nodes.values() for n in _values(store)[:1]),
            pods=tuple(p for store in (pods or {}).values() for p in _values(store)[:1]),
        )

    return observe


def observer_from(kwargs: Mapping[str, Any]) -> Observe:
    """The observer over the indexes kopf passes to every handler by their function names."""
    return observer(
        kwargs["simdev_devices"],
        kwargs["simdev_daemonsets"],
        kwargs["simdev_nodes"],
        kwargs["simdev_pods"],
    )


def node_observer(kwargs: Mapping[str, Any], name: str) -> Observe:
    """The observer for one node's own event: that node and the objects, no other nodes or
    pods. A pass over 500 fake nodes brings 500 node events, and snapshotting every node
    and pod for each of them made the pass quadratic."""
    nodes = kwargs["simdev_nodes"]
    return observer(
        kwargs["simdev_devices"],
        kwargs["simdev_daemonsets"],
        {name: nodes[name]} if name in nodes else {},
    )


def _reconciler(memo: kopf.Memo) -> Reconciler:
    reconciler = memo["reconciler"]
    assert isinstance(reconciler, Reconciler)
    return reconciler


@kopf.on.resume(GROUP, VERSION, PLURAL, id="converge-on-resume")
@kopf.on.create(GROUP, VERSION, PLURAL, id="converge-on-create")
@kopf.on.update(GROUP, VERSION, PLURAL, id="converge-on-update")
async def converge(
    name: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    observe = observer_from(kwargs)
    await _reconciler(memo).reconcile(name, observe)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="tear-down")
async def tear_down(
    name: str,
    uid: str,
    memo: kopf.Memo,
    runtime: datetime.timedelta,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    reconciler = _reconciler(memo)
    observe = observer_from(kwargs)
    left = await reconciler.tear_down(name, observe)
    if left and runtime < TEARDOWN_PATIENCE:
        # The finalizer holds the object until its plugin pods are gone, so a successor
        # that takes over its resource never meets a still-running plugin.
        raise kopf.TemporaryError(f"waiting for plugin pods to stop in {', '.join(left)}", delay=2)
    if left:
        logger.warning("plugin pods in %s did not stop in time; leaving them to the GC", left)
    reconciler.forget(name, uid)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def simulated_device_changed(
    name: str,
    type: str,  # the event's type, by kopf's name for it
    body: kopf.Body,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    # A change of one object (most often a deletion) can settle or start a conflict of
    # others; its own changes are handled by the create/update/delete handlers.
    reconciler = _reconciler(memo)
    observe = observer_from(kwargs)
    reconciler.recheck(observe)
    # A deleted object (its finalizer gone) no longer shows in the index: nodes drop it.
    if type == "DELETED":
        reconciler.nodes.device_gone(name, observe)
    else:
        reconciler.nodes.device_event(name, body, observe)


@kopf.on.event("apps", "v1", "daemonsets", labels={MANAGED_BY_LABEL: MANAGER})
async def daemon_set_changed(
    labels: kopf.Labels,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    # Rollout progress updates the status; a deleted or edited DaemonSet is put back.
    owner = labels.get(OWNER_LABEL)
    if owner:
        observe = observer_from(kwargs)
        await _reconciler(memo).reconcile_quietly(owner, observe)


@kopf.on.event("resource.k8s.io", "v1", "resourceslices", labels={MANAGED_BY_LABEL: MANAGER})
async def resource_slice_changed(
    type: str,
    labels: kopf.Labels,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    # A slice someone else deleted is published again now, not at the next resync. Our own
    # writes need nothing: the reconcile that made them knows them.
    owner = labels.get(OWNER_LABEL)
    if type == "DELETED" and owner:
        await _reconciler(memo).reconcile_quietly(owner, observer_from(kwargs))


@kopf.on.event("v1", "nodes")
async def node_changed(
    name: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    # Most node updates are heartbeats; only objects whose device counts moved are touched.
    reconciler = _reconciler(memo)
    # A new or relabelled fake node gets its resources; a zeroed stale key goes.
    everything = observer_from(kwargs)
    await reconciler.nodes.sync_node(name, node_observer(kwargs, name), everything)
    reconciler.recheck(everything)


@kopf.on.event("v1", "pods")
async def pod_changed(
    memo: kopf.Memo,
    body: kopf.Body,
    **kwargs: Any,
) -> None:
    # Devices held by pods are counted per node; most pods ask for none and change nothing.
    if not requested_devices(body.get("spec") or {}):
        return
    _reconciler(memo).recheck(observer_from(kwargs))


@kopf.daemon(GROUP, VERSION, PLURAL, id="fault-clock", cancellation_timeout=1.0)
async def fault_clock(
    name: str,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    # Fault windows open and close with time alone, with no watch event to tell us: this
    # sleeps until the next switch, then reconciles so status and Events follow.
    reconciler = _reconciler(memo)
    observe = observer_from(kwargs)
    while not stopped:
        due = reconciler.next_fault_change(name, observe)
        if due is None or due > FAULT_CLOCK_MAX_SLEEP:
            await asyncio.sleep(FAULT_CLOCK_MAX_SLEEP)
            continue
        await asyncio.sleep(due + 0.05)
        await reconciler.reconcile_quietly(name, observe)


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    id="safety-net",
    interval=RESYNC_CHECK_INTERVAL,
    initial_delay=RESYNC_CHECK_INTERVAL,
)
async def safety_net(
    name: str,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    # Catches a missed event, and now and then checks the indexes against the API (whichever
    # object's timer comes first runs that audit for all of them).
    reconciler = _reconciler(memo)
    observe = observer_from(kwargs)
    if reconciler.audit_due():
        try:
            if await reconciler.audit(observe):
                for other in reconciler.needing_reconcile(observe()):
                    await reconciler.reconcile_quietly(other, observe)
        except (ApiException, urllib3.exceptions.HTTPError) as err:
            logging.getLogger(__name__).warning("index audit failed, next time then: %s", err)
    device = reconciler.view(observe).devices.get(name)
    if device is not None and not device.deleting and reconciler.resync_due(device):
        await reconciler.reconcile_quietly(name, observe)
