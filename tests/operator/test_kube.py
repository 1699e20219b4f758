"""The thin client's pure parts: REST paths and error messages."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from simdev.operator.kube import Ref, api_error, collection_path, path


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (Ref("v1", "Namespace", "plugins"), "/api/v1/namespaces/plugins"),
        (
            Ref("v1", "ConfigMap", "simdev-a", "plugins"),
            "/api/v1/namespaces/plugins/configmaps/simdev-a",
        ),
        (
            Ref("v1", "ServiceAccount", "simdev-a", "plugins"),
            "/api/v1/namespaces/plugins/serviceaccounts/simdev-a",
        ),
        (
            Ref("apps/v1", "DaemonSet", "simdev-a", "plugins"),
            "/apis/apps/v1/namespaces/plugins/daemonsets/simdev-a",
        ),
        (
            Ref("simdev.io/v1alpha1", "SimulatedDevice", "a"),
            "/apis/simdev.io/v1alpha1/simulateddevices/a",
        ),
    ],
)
def test_paths(ref: Ref, expected: str) -> None:
    assert path(ref) == expected


def test_subresource_and_collection_paths() -> None:
    device = Ref("simdev.io/v1alpha1", "SimulatedDevice", "a")
    assert path(device, "status") == "/apis/simdev.io/v1alpha1/simulateddevices/a/status"
    ds = Ref("apps/v1", "DaemonSet", "x", "ns")
    assert collection_path(ds) == "/apis/apps/v1/namespaces/ns/daemonsets"


def test_scope_mistakes_and_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="needs a namespace"):
        path(Ref("apps/v1", "DaemonSet", "x"))
    with pytest.raises(ValueError, match="cluster-scoped"):
        path(Ref("v1", "Namespace", "x", "ns"))
    with pytest.raises(ValueError, match="does not manage Secret"):
        path(Ref("v1", "Secret", "x", "ns"))


def test_ref_of_an_object() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}
    assert Ref.of(obj) == Ref("v1", "ConfigMap", "c", "n")
    assert str(Ref.of(obj)) == "ConfigMap n/c"


def test_api_error_prefers_the_servers_message() -> None:
    err = ApiException(status=403, reason="Forbidden")
    err.body = json.dumps({"kind": "Status", "message": 'daemonsets.apps "x" is forbidden'})
    assert api_error(err) == 'daemonsets.apps "x" is forbidden'
    bare = ApiException(status=503, reason="Service Unavailable")
    assert api_error(bare) == "HTTP 503 Service Unavailable"
