"""The kopf wiring: settings, index functions and the observer over the indexes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import kopf
import pytest

from simdev.operator import builders, handlers
from simdev.operator.builders import PluginRuntime
from simdev.operator.model import PLUGIN_IMAGE_ID_ANNOTATION, Device
from simdev.operator.observed import DaemonSetState, NodeResources, PodDevices
from simdev.operator.settings import configure


def test_settings_use_our_own_names_and_a_quiet_posting_level() -> None:
    settings = kopf.OperatorSettings()
    configure(settings)
    assert settings.persistence.finalizer == "simdev.io/finalizer"
    progress = settings.persistence.progress_storage
    diffbase = settings.persistence.diffbase_storage
    assert isinstance(progress, kopf.AnnotationsProgressStorage)
    assert isinstance(diffbase, kopf.AnnotationsDiffBaseStorage)
    assert progress.prefix == diffbase.prefix == "simdev.io"
    assert settings.posting.level == logging.INFO and not settings.posting.loggers
    assert settings.watching.server_timeout and settings.watching.client_timeout
    assert settings.peering.standalone
    assert settings.watching.chunk_size == 100
    (selector,) = list(settings.watching.label_selectors)
    assert (
        settings.watching.label_selectors[selector]
        == "app.kubernetes.io/managed-by=simdev-operator"
    )


def test_index_functions_key_snapshots_by_what_the_reconciler_looks_up(
    body: Callable[..., dict[str, Any]],
) -> None:
    # kopf's decorators type these as callbacks taking every kwarg; they are plain functions.
    index_devices: Any = handlers.simdev_devices
    index_daemon_sets: Any = handlers.simdev_daemonsets
    index_nodes: Any = handlers.simdev_nodes
    device_body = kopf.Body(cast(kopf.RawBody, body("sample", numberDevices=3)))
    devices = asyncio.run(index_devices(body=device_body))
    assert devices["sample"].spec.number_devices == 3

    ds_raw = {"metadata": {"namespace": "ns", "name": "simdev-sample"}, "status": {}}
    ds_body = kopf.Body(cast(kopf.RawBody, ds_raw))
    owned = asyncio.run(
        index_daemon_sets(body=ds_body, labels={"simdev.io/simulated-device": "sample"})
    )
    assert owned["sample"].namespace == "ns"
    assert asyncio.run(index_daemon_sets(body=ds_body, labels={})) == {}

    node_raw = {"metadata": {"name": "n1"}, "status": {"allocatable": {"example.com/x": "2"}}}
    nodes = asyncio.run(index_nodes(body=kopf.Body(cast(kopf.RawBody, node_raw)), name="n1"))
    assert nodes["n1"].allocatable == {"example.com/x": 2}


def test_observer_snapshots_the_live_indexes(device: Callable[..., Device]) -> None:
    a = device("a")
    ds = DaemonSetState("ns", "simdev-a", 1, 1, 1, 1, 1, 1)
    node = NodeResources("n1", {}, {})
    # kopf indexes map keys to stores; any iterable store behaves the same here.
    devices: dict[str, list[Any]] = {"a": [a]}
    daemon_sets: dict[str, list[Any]] = {"a": [ds]}
    nodes: dict[str, list[Any]] = {"n1": [node]}
    pods: dict[str, list[Any]] = {"ns/p": [PodDevices("n1", {"example.com/x": 1})]}
    observe = handlers.observer_from(
        {
            "simdev_devices": devices,
            "simdev_daemonsets": daemon_sets,
            "simdev_nodes": nodes,
            "simdev_pods": pods,
        }
    )
    world = observe()
    assert world.devices == {"a": a}
    assert world.daemon_sets == {"a": (ds,)}
    assert world.nodes == (node,)
    assert world.pods == (PodDevices("n1", {"example.com/x": 1}),)
    # The indexes are read again on every call: later changes are seen.
    devices["b"] = [device("b")]
    assert set(observe().devices) == {"a", "b"}


def test_a_node_event_observes_its_own_node_and_the_objects_only(
    device: Callable[..., Device],
) -> None:
    a = device("a")
    n1, n2 = NodeResources("n1", {}, {}), NodeResources("n2", {}, {})
    kwargs = {
        "simdev_devices": {"a": [a]},
        "simdev_daemonsets": {},
        "simdev_nodes": {"n1": [n1], "n2": [n2]},
        "simdev_pods": {"ns/p": [PodDevices("n1", {"example.com/x": 1})]},
    }
    world = handlers.node_observer(kwargs, "n2")()
    assert (world.devices, world.nodes, world.pods) == ({"a": a}, (n2,), ())
    # A node already gone from the index (its DELETED event) is seen as no node at all.
    assert handlers.node_observer(kwargs, "gone")().nodes == ()


def test_the_diff_base_is_built_for_simulated_devices_only(
    body: Callable[..., dict[str, Any]],
) -> None:
    settings = kopf.OperatorSettings()
    configure(settings)
    storage = settings.persistence.diffbase_storage
    device_body = kopf.Body(cast(kopf.RawBody, body("sample", numberDevices=3)))
    assert storage.build(body=device_body)["spec"]["numberDevices"] == 3
    node_raw = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "labels": {"type": "kwok"}},
        "status": {"allocatable": {"example.com/x": "2"}},
    }
    assert storage.build(body=kopf.Body(cast(kopf.RawBody, node_raw))) == {}


def test_the_plugin_runtime_comes_from_the_environment() -> None:
    default = handlers.DEFAULT_PLUGIN_IMAGE
    assert handlers.plugin_runtime({}) == PluginRuntime(default)
    assert handlers.plugin_runtime({"SIMDEV_PLUGIN_IMAGE_ID": "abc"}).image_id == "abc"
    assert handlers.plugin_runtime({"SIMDEV_PLUGIN_IMAGE": "x:1"}) == PluginRuntime("x:1")
    # kubectl set env can leave the variable set but empty.
    assert handlers.plugin_runtime({"SIMDEV_PLUGIN_IMAGE_ID": " "}).image_id == ""
    local = handlers.plugin_runtime(
        {
            "SIMDEV_PLUGIN_HOST_NETWORK": "true",
            "SIMDEV_PLUGIN_API_HOST": "127.0.0.1",
            "SIMDEV_PLUGIN_API_PORT": "6443",
        }
    )
    assert (local.host_network, local.api_host, local.api_port) == (True, "127.0.0.1", "6443")


@pytest.mark.parametrize("environ", [{}, {"SIMDEV_PLUGIN_IMAGE_ID": ""}])
def test_without_an_image_id_the_pod_template_has_no_image_id(
    environ: dict[str, str], device: Callable[..., Device]
) -> None:
    template = builders.daemon_set(device(), handlers.plugin_runtime(environ))["spec"]["template"]
    assert PLUGIN_IMAGE_ID_ANNOTATION not in template["metadata"]["annotations"]
