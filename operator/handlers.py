"""Kopf wiring: indexes that keep snapshots, and thin handlers that all call one reconcile.

Run with `simdev-operator` (or `kopf run -m simdev.operator.handlers --all-namespaces`).
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import kopf

from simdev.operator.deployer import Deployer
from simdev.operator.kube import Kube, load_api_client
from simdev.operator.model import (
    GROUP,
    MANAGED_BY_LABEL,
    MANAGER,
    OWNER_LABEL,
    PLURAL,
    VERSION,
    Device,
)
from simdev.operator.observed import DaemonSetState, NodeResources
from simdev.operator.reconcile import Observe, Reconciler, World
from simdev.operator.settings import configure

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
ROUTINE_HANDLERS = ("node_changed", "daemon_set_changed", "simulated_device_changed", "safety-net")

DevicesIndex = kopf.Index[str, Device]
DaemonSetsIndex = kopf.Index[str, DaemonSetState]
NodesIndex = kopf.Index[str, NodeResources]

T = TypeVar("T")


def plugin_image(environ: Mapping[str, str]) -> tuple[str, str]:
    """The default plugin image and its ID ("" when unknown) from the operator's environment."""
    image = environ.get(PLUGIN_IMAGE_ENV) or DEFAULT_PLUGIN_IMAGE
    return image, environ.get(PLUGIN_IMAGE_ID_ENV, "").strip()


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    image, image_id = plugin_image(os.environ)
    memo["reconciler"] = Reconciler(Deployer(Kube(load_api_client()), image, image_id))
    logging.getLogger(__name__).info(
        "default plugin image: %s (image ID: %s)", image, image_id or "unknown"
    )


@kopf.index(GROUP, VERSION, PLURAL)
def simdev_devices(body: kopf.Body, **_: Any) -> dict[str, Device]:
    device = Device.from_body(body)
    return {device.name: device}


@kopf.index("apps", "v1", "daemonsets", labels={MANAGED_BY_LABEL: MANAGER})
def simdev_daemonsets(body: kopf.Body, labels: kopf.Labels, **_: Any) -> dict[str, DaemonSetState]:
    owner = labels.get(OWNER_LABEL)
    return {owner: DaemonSetState.from_body(body)} if owner else {}


@kopf.index("v1", "nodes")
def simdev_nodes(body: kopf.Body, name: str, **_: Any) -> dict[str, NodeResources]:
    return {name: NodeResources.from_body(body)}


def _values(store: Iterable[T]) -> list[T]:
    return list(store)


def observer(devices: DevicesIndex, daemon_sets: DaemonSetsIndex, nodes: NodesIndex) -> Observe:
    """A function that snapshots the live indexes whenever the reconciler asks."""

    def observe() -> World:
        return World(
            devices={name: d for name, store in devices.items() for d in _values(store)[:1]},
            daemon_sets={owner: tuple(_values(store)) for owner, store in daemon_sets.items()},
            nodes=tuple(n for store in nodes.values() for n in _values(store)[:1]),
        )

    return observe


def observer_from(kwargs: Mapping[str, Any]) -> Observe:
    """The observer over the indexes kopf passes to every handler by their function names."""
    return observer(kwargs["simdev_devices"], kwargs["simdev_daemonsets"], kwargs["simdev_nodes"])


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
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    # A change of one object (most often a deletion) can settle or start a conflict of
    # others; its own changes are handled by the create/update/delete handlers.
    reconciler = _reconciler(memo)
    observe = observer_from(kwargs)
    for other in reconciler.needing_reconcile(observe()):
        if other != name:
            await reconciler.reconcile_quietly(other, observe)


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


@kopf.on.event("v1", "nodes")
async def node_changed(
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    # Most node updates are heartbeats; only objects whose device counts moved are touched.
    reconciler = _reconciler(memo)
    observe = observer_from(kwargs)
    for name in reconciler.needing_reconcile(observe()):
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
    # Retries what failed on an event that kopf does not retry, and catches a missed event.
    reconciler = _reconciler(memo)
    observe = observer_from(kwargs)
    device = observe().devices.get(name)
    if device is not None and not device.deleting and reconciler.resync_due(device):
        await reconciler.reconcile_quietly(name, observe)
