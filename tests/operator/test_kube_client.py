"""Kube against a small fake API server that speaks HTTP: what goes over the wire, and how
discovery behaves (once per kind, a CRD installed later, bounded in time)."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from simdev.operator.kube import (
    APPLY,
    JSON_PATCH,
    MERGE,
    PARTIAL_METADATA,
    STRATEGIC,
    Kube,
    Ref,
    api_error,
    load_api_client,
)

DS = Ref("apps/v1", "DaemonSet", "simdev-a", "plugins")
DS_PATH = "/apis/apps/v1/namespaces/plugins/daemonsets/simdev-a"
DEVICE = Ref("simdev.io/v1alpha1", "SimulatedDevice", "a")
DEVICE_PATH = "/apis/simdev.io/v1alpha1/simulateddevices/a"


def _resources(group_version: str, *kinds: tuple[str, str, bool]) -> dict[str, Any]:
    """An APIResourceList: each (plural, kind, namespaced) with its status subresource."""
    listed = []
    for plural, kind, namespaced in kinds:
        listed.append({"name": plural, "kind": kind, "namespaced": namespaced, "verbs": []})
        listed.append({"name": f"{plural}/status", "kind": kind, "namespaced": namespaced})
    return {"kind": "APIResourceList", "groupVersion": group_version, "resources": listed}


CORE = _resources(
    "v1",
    ("namespaces", "Namespace", False),
    ("configmaps", "ConfigMap", True),
    ("serviceaccounts", "ServiceAccount", True),
    ("nodes", "Node", False),
    ("pods", "Pod", True),
)
GROUPS = {
    "apps/v1": _resources("apps/v1", ("daemonsets", "DaemonSet", True)),
    "rbac.authorization.k8s.io/v1": _resources(
        "rbac.authorization.k8s.io/v1",
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ),
    "resource.k8s.io/v1": _resources(
        "resource.k8s.io/v1",
        ("resourceslices", "ResourceSlice", False),
        ("deviceclasses", "DeviceClass", False),
    ),
}
CRD_GROUP = "simdev.io/v1alpha1"
CRD = _resources(CRD_GROUP, ("simulateddevices", "SimulatedDevice", False))


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "status": "Failure", "code": code, "message": message}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # concurrent clients connect at once


class FakeApiServer:
    """Serves discovery for the operator's kinds; every other answer is set by the test
    (by method and path), else 404. Records each request."""

    def __init__(self) -> None:
        self.crd_installed = True
        self.replies: dict[tuple[str, str], tuple[int, Any]] = {}
        self.delays: dict[str, float] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._http = _HTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def count(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path == path)

    def requests(self) -> list[Seen]:
        """What was asked beyond discovery."""
        return [s for s in self.seen if not self._discovery(s.path)[0]]

    def _discovery(self, path: str) -> tuple[bool, Any]:
        groups = dict(GROUPS)
        if self.crd_installed:
            groups[CRD_GROUP] = CRD
        if path == "/version":
            return True, {"major": "1", "minor": "34", "gitVersion": "v1.34.0"}
        if path == "/api/v1":
            return True, CORE
        if path == "/apis":
            listed = []
            for gv in groups:
                group, version = gv.split("/")
                ref = {"groupVersion": gv, "version": version}
                listed.append({"name": group, "versions": [ref], "preferredVersion": ref})
            return True, {"kind": "APIGroupList", "groups": listed}
        if path.startswith("/apis/") and path.count("/") == 3:
            found = groups.get(path.removeprefix("/apis/"))
            return True, found if found else _status(404, "not found")
        return False, None

    def answer(self, method: str, path: str) -> tuple[int, Any]:
        time.sleep(self.delays.get(path, 0))
        is_discovery, body = self._discovery(path)
        if is_discovery:
            return (404 if body.get("kind") == "Status" else 200), body
        return self.replies.get((method, path), (404, _status(404, f"{path} not found")))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with server._lock:
                    server.seen.append(
                        Seen(
                            self.command,
                            url.path,
                            dict(parse_qsl(url.query)),
                            {k.lower(): v for k, v in self.headers.items()},
                            json.loads(raw) if raw else None,
                        )
                    )
                code, body = server.answer(self.command, url.path)
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting (the timeout test)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

            def log_message(self, *_: Any) -> None:
                pass

        return Handler


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    s = FakeApiServer()
    yield s
    s.close()


def make_kube(server: FakeApiServer, timeout: float = 5.0) -> Kube:
    configuration = client.Configuration()
    configuration.host = server.url
    return Kube(client.ApiClient(configuration), timeout=timeout)


@pytest.fixture
def kube(server: FakeApiServer) -> Kube:
    return make_kube(server)


def daemon_set() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "simdev-a", "namespace": "plugins"},
        "spec": {"template": {}},
    }


def test_apply_is_a_forced_server_side_apply_that_tells_creation(
    server: FakeApiServer, kube: Kube
) -> None:
    obj = daemon_set()
    server.replies[("PATCH", DS_PATH)] = (201, {**obj, "status": {"numberReady": 0}})
    live, created = kube.apply(obj)
    assert created and live["status"] == {"numberReady": 0}
    server.replies[("PATCH", DS_PATH)] = (200, obj)
    assert kube.apply(obj) == (obj, False)
    sent = server.requests()
    assert [s.method for s in sent] == ["PATCH", "PATCH"]
    assert sent[0].query == {"fieldManager": "simdev-operator", "force": "true"}
    assert sent[0].headers["content-type"] == APPLY
    assert sent[0].body == obj


def test_get_gives_none_for_a_missing_object_and_raises_other_errors(
    server: FakeApiServer, kube: Kube
) -> None:
    assert kube.get(DS) is None
    server.replies[("GET", DS_PATH)] = (200, daemon_set())
    assert kube.get(DS) == daemon_set()
    server.replies[("GET", DS_PATH)] = (403, _status(403, 'daemonsets.apps "x" is forbidden'))
    with pytest.raises(ApiException) as raised:
        kube.get(DS)
    assert raised.value.status == 403
    assert api_error(raised.value) == 'daemonsets.apps "x" is forbidden'


def test_create_posts_to_the_collection(server: FakeApiServer, kube: Kube) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plugins"}}
    server.replies[("POST", "/api/v1/namespaces")] = (201, namespace)
    assert kube.create(namespace) == namespace
    server.replies[("POST", "/api/v1/namespaces")] = (409, _status(409, "already exists"))
    with pytest.raises(ApiException) as raised:
        kube.create(namespace)
    assert raised.value.status == 409
    assert server.requests()[0].body == namespace


@pytest.mark.parametrize(
    ("patch", "content_type"),
    [
        ({"metadata": {"labels": {"a": "b"}}}, MERGE),
        ({"metadata": {"ownerReferences": [{"uid": "u"}]}}, STRATEGIC),
        ([{"op": "replace", "path": "/metadata/labels", "value": {}}], JSON_PATCH),
    ],
)
def test_patches_keep_their_content_type(
    server: FakeApiServer, kube: Kube, patch: Any, content_type: str
) -> None:
    server.replies[("PATCH", DS_PATH)] = (200, daemon_set())
    assert kube.patch(DS, patch, content_type) == daemon_set()
    [sent] = server.requests()
    assert sent.headers["content-type"] == content_type
    assert sent.query == {"fieldManager": "simdev-operator"}
    assert sent.body == patch


def test_a_failed_json_patch_test_surfaces_as_422(server: FakeApiServer, kube: Kube) -> None:
    server.replies[("PATCH", DS_PATH)] = (422, _status(422, "testing value failed"))
    with pytest.raises(ApiException) as raised:
        kube.patch(
            DS, [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"}], JSON_PATCH
        )
    assert raised.value.status == 422
    assert api_error(raised.value) == "testing value failed"


def test_status_patches_go_to_the_subresource(server: FakeApiServer, kube: Kube) -> None:
    server.replies[("PATCH", f"{DEVICE_PATH}/status")] = (200, {"status": {"phase": "x"}})
    assert kube.patch(DEVICE, {"status": {"phase": "x"}}, MERGE, subresource="status") == {
        "status": {"phase": "x"}
    }
    [sent] = server.requests()
    assert (sent.path, sent.headers["content-type"]) == (f"{DEVICE_PATH}/status", MERGE)


def test_delete_sends_options_and_tells_whether_it_deleted(
    server: FakeApiServer, kube: Kube
) -> None:
    assert kube.delete(DS, propagation="Foreground") is False
    server.replies[("DELETE", DS_PATH)] = (200, _status(200, "deleted"))
    assert kube.delete(DS, resource_version="7") is True
    first, second = server.requests()
    assert first.body == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Foreground",
    }
    assert second.body["preconditions"] == {"resourceVersion": "7"}
    server.replies[("DELETE", DS_PATH)] = (409, _status(409, "precondition failed"))
    with pytest.raises(ApiException) as raised:
        kube.delete(DS, resource_version="6")
    assert raised.value.status == 409


def test_identities_are_read_as_metadata_only(server: FakeApiServer, kube: Kube) -> None:
    items = [
        {"metadata": {"name": "p", "namespace": "ns", "uid": "1"}},
        {"metadata": {"name": "q", "namespace": "ns", "uid": "2"}},
    ]
    server.replies[("GET", "/api/v1/pods")] = (
        200,
        {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "items": items},
    )
    server.replies[("GET", "/api/v1/nodes")] = (200, {"kind": "List", "items": []})
    assert kube.identities("/api/v1/pods") == {("ns/p", "1"), ("ns/q", "2")}
    assert kube.identities("/api/v1/nodes") == frozenset()
    assert server.requests()[0].headers["accept"] == PARTIAL_METADATA


def test_labelled_lists_send_the_selector_and_give_whole_objects(
    server: FakeApiServer, kube: Kube
) -> None:
    items = [{"metadata": {"name": "n1-d-0"}, "spec": {"driver": "d", "devices": []}}]
    server.replies[("GET", "/apis/resource.k8s.io/v1/resourceslices")] = (
        200,
        {"kind": "ResourceSliceList", "apiVersion": "resource.k8s.io/v1", "items": items},
    )
    selector = "simdev.io/simulated-device=a,app.kubernetes.io/component=dra-driver"
    assert kube.list_labelled("resource.k8s.io/v1", "ResourceSlice", selector) == items
    (listed,) = server.requests()
    assert listed.query == {"labelSelector": selector}


def test_a_list_of_a_group_the_server_does_not_serve_is_a_404(
    server: FakeApiServer, kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the DRA publisher meets on a cluster without resource.k8s.io/v1.
    monkeypatch.delitem(GROUPS, "resource.k8s.io/v1")
    with pytest.raises(ApiException) as err:
        kube.list_labelled("resource.k8s.io/v1", "DeviceClass", "a=b")
    assert err.value.status == 404
    assert server.requests() == []


def test_unmanaged_kinds_fail_before_any_request(server: FakeApiServer, kube: Kube) -> None:
    with pytest.raises(ValueError, match="does not manage Secret"):
        kube.get(Ref("v1", "Secret", "x", "ns"))
    with pytest.raises(ValueError, match="needs a namespace"):
        kube.delete(Ref("apps/v1", "DaemonSet", "x"))
    assert server.seen == []


def test_each_kind_is_discovered_once(server: FakeApiServer, kube: Kube) -> None:
    server.replies[("PATCH", f"{DEVICE_PATH}/status")] = (200, {"status": {}})
    for _ in range(3):
        kube.get(DS)
        kube.get(Ref("v1", "Namespace", "plugins"))
        kube.delete(Ref("v1", "ConfigMap", "c", "plugins"))
        kube.patch(DEVICE, {"status": {}}, MERGE, subresource="status")
    assert server.count("/version") == 1
    assert server.count("/apis") == 1
    assert server.count("/api/v1") == 1
    assert server.count("/apis/apps/v1") == 1
    assert server.count("/apis/simdev.io/v1alpha1") == 1
    # A core kind's lookup does not load the other groups.
    assert server.count("/apis/rbac.authorization.k8s.io/v1") == 0


def test_concurrent_first_calls_share_one_discovery(server: FakeApiServer, kube: Kube) -> None:
    threads = [threading.Thread(target=kube.get, args=(DS,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.count("/version") == 1
    assert server.count("/apis/apps/v1") == 1
    assert server.count(DS_PATH) == 8


def test_a_crd_installed_after_the_first_call_is_found(server: FakeApiServer, kube: Kube) -> None:
    server.crd_installed = False
    kube.get(Ref("v1", "Namespace", "plugins"))  # the client and its discovery exist now
    # Until the CRD exists, its kind fails like a path the server does not serve.
    assert kube.get(DEVICE) is None
    assert kube.delete(DEVICE) is False
    with pytest.raises(ApiException) as raised:
        kube.patch(DEVICE, {"status": {}}, MERGE, subresource="status")
    assert raised.value.status == 404
    assert "SimulatedDevice" in api_error(raised.value)
    assert server.requests() == [server.seen[3]]  # only the Namespace reached the server

    server.crd_installed = True
    server.replies[("PATCH", f"{DEVICE_PATH}/status")] = (200, {"status": {}})
    assert kube.patch(DEVICE, {"status": {}}, MERGE, subresource="status") == {"status": {}}
    rediscovered = server.count("/apis")
    kube.get(DEVICE)
    assert server.count("/apis") == rediscovered  # found, and kept


def test_requests_and_discovery_are_bounded_in_time(server: FakeApiServer) -> None:
    kube = make_kube(server, timeout=0.3)
    server.delays["/apis/apps/v1"] = 5.0
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.HTTPError):
        kube.get(DS)
    server.delays = {"/api/v1/pods": 5.0}
    with pytest.raises(urllib3.exceptions.HTTPError):
        kube.identities("/api/v1/pods")
    # Each call may retry a few times (urllib3's default), each attempt bounded.
    assert time.monotonic() - started < 4.5
    # A discovery that timed out is tried again by the next call.
    server.delays = {}
    assert kube.get(DS) is None


def test_discovery_is_cached_in_a_private_folder(
    server: FakeApiServer, kube: Kube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    kube.get(DS)
    [folder] = tmp_path.iterdir()
    assert folder.name.startswith("simdev-discovery-")
    assert oct(folder.stat().st_mode & 0o777) == oct(0o700)
    # Another client discovers for itself rather than read what this one wrote.
    make_kube(server).get(DS)
    assert server.count("/apis/apps/v1") == 2
    assert all(os.path.isdir(p) for p in tmp_path.iterdir())


def test_a_named_kubeconfig_wins_even_in_a_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    api = load_api_client(str(kubeconfig))
    assert api.configuration.host == "https://127.0.0.1:6443"
