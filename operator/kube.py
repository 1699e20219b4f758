"""A small, blocking Kubernetes client for the few calls the operator makes.

Requests and responses are plain dicts, like the builders' output. Objects are addressed by
(apiVersion, kind, namespace, name); only the kinds listed in PLURALS are ever touched.

It stands on the kubernetes package's public dynamic client, which finds each kind's REST
path through API discovery, so that an upgrade of that package cannot break it the way calls
into its generated code's internals could.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from simdev.operator.model import API_VERSION, KIND, MANAGER, PLURAL

RBAC = "rbac.authorization.k8s.io/v1"
RESOURCE = "resource.k8s.io/v1"
PLURALS = {
    ("v1", "Namespace"): "namespaces",
    # Only ever the status subresource (node_status.py).
    ("v1", "Node"): "nodes",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "ConfigMap"): "configmaps",
    ("apps/v1", "DaemonSet"): "daemonsets",
    (RBAC, "ClusterRole"): "clusterroles",
    (RBAC, "ClusterRoleBinding"): "clusterrolebindings",
    (API_VERSION, KIND): PLURAL,
    (RESOURCE, "ResourceSlice"): "resourceslices",
    (RESOURCE, "DeviceClass"): "deviceclasses",
}
CLUSTER_SCOPED = {
    ("v1", "Namespace"),
    ("v1", "Node"),
    (RBAC, "ClusterRole"),
    (RBAC, "ClusterRoleBinding"),
    (API_VERSION, KIND),
    (RESOURCE, "ResourceSlice"),
    (RESOURCE, "DeviceClass"),
}

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

REQUEST_TIMEOUT = 30.0
# Connections kept open to the API server (see load_api_client).
API_CONNECTIONS = 32
PARTIAL_METADATA = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


@dataclass(frozen=True)
class Ref:
    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Ref:
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def path(ref: Ref, subresource: str | None = None) -> str:
    """The REST path of one object, e.g. /apis/apps/v1/namespaces/ns/daemonsets/name."""
    key = (ref.api_version, ref.kind)
    if key not in PLURALS:
        raise ValueError(f"the operator does not manage {ref.kind} ({ref.api_version})")
    base = "/api/v1" if ref.api_version == "v1" else f"/apis/{ref.api_version}"
    if key in CLUSTER_SCOPED:
        if ref.namespace:
            raise ValueError(f"{ref.kind} is cluster-scoped but a namespace was given")
        where = ""
    elif ref.namespace:
        where = f"/namespaces/{ref.namespace}"
    else:
        raise ValueError(f"{ref.kind} {ref.name} needs a namespace")
    tail = f"/{subresource}" if subresource else ""
    return f"{base}{where}/{PLURALS[key]}/{ref.name}{tail}"


def collection_path(ref: Ref) -> str:
    """The path objects of ref's kind are created at (ref's name is not part of it)."""
    return path(ref).rsplit("/", 1)[0]


def api_error(err: ApiException) -> str:
    """The API server's own message (it names the object and field), else the HTTP status."""
    try:
        body = json.loads(err.body or "{}")
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or f"HTTP {err.status} {err.reason}")


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """A kubeconfig file when one is named; else, in a pod, the service account
    (KUBERNETES_SERVICE_HOST may point at loopback); elsewhere, the current kubeconfig context.

    The file is named by tests: the kubernetes package reads KUBECONFIG once, at import.
    """
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    # One connection per thread that may call at once (the node-status threads and the
    # loop's executor); the default, five per CPU, made the extra ones shake hands anew.
    configuration.connection_pool_maxsize = API_CONNECTIONS
    return client.ApiClient(configuration)


def _not_served(what: str) -> ApiException:
    """The error the API server gives for a path it does not serve, for a kind that discovery
    did not find: callers treat both alike (get gives None, delete gives False)."""
    err = ApiException(status=404, reason="Not Found")
    message = f"the server could not find the requested resource ({what})"
    err.body = json.dumps({"kind": "Status", "status": "Failure", "message": message})
    return err


def _decoded(response: Any) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of an unserialized response; errors were raised before."""
    data = response.data
    return int(response.status), json.loads(data) if data else {}


class _TimedClient(DynamicClient):
    """The dynamic client, with every request bounded in time.

    Its discovery requests pass no timeout of their own; every request goes through this
    one method, so the default set here bounds them as well.
    """

    def __init__(self, api: client.ApiClient, cache_file: str, timeout: float) -> None:
        # Set first: the constructor already discovers.
        self.request_timeout = timeout
        super().__init__(api, cache_file=cache_file)  # type: ignore[no-untyped-call]

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        params.setdefault("_request_timeout", self.request_timeout)
        return super().request(method, path, body, **params)


class Kube:
    """Blocking calls; the reconciler runs them in worker threads.

    The dynamic client is built at the first call, and each kind is looked up in discovery
    once and then kept. A kind discovery does not know (a CRD installed after the client was
    built) makes the client discover again, so it is found from then on; until it exists,
    each call on it costs that rediscovery and fails like a request for a missing resource,
    with a 404.
    """

    def __init__(
        self,
        api: client.ApiClient,
        field_manager: str = MANAGER,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._api = api
        self._field_manager = field_manager
        self._timeout = timeout
        # Worker threads share one client; discovery's cache is not safe to fill from two.
        self._lock = threading.Lock()
        self._client: DynamicClient | None = None
        self._cache_dir: tempfile.TemporaryDirectory[str] | None = None
        self._resources: dict[tuple[str, str], Any] = {}

    def _dynamic(self) -> Any:
        """The dynamic client; the caller holds the lock."""
        if self._client is None:
            # Discovery keeps its cache in a file, by default one in the shared temporary
            # folder named after the server, which other processes read and write too. A
            # private folder per client means no stale or foreign discovery is ever read.
            self._cache_dir = tempfile.TemporaryDirectory(prefix="simdev-discovery-")
            cache_file = os.path.join(self._cache_dir.name, "discovery.json")
            self._client = _TimedClient(self._api, cache_file, self._timeout)
        return self._client

    def _resource(self, ref: Ref, subresource: str | None = None) -> Any:
        """The dynamic client's resource (or subresource) for ref's kind, discovered once."""
        path(ref, subresource)  # unmanaged kinds and scope mistakes fail before any request
        key = (ref.api_version, ref.kind)
        with self._lock:
            resource = self._resources.get(key)
            if resource is None:
                # The prefix keeps a core kind's lookup from loading every group's "v1".
                prefix = "apis" if "/" in ref.api_version else "api"
                try:
                    resource = self._dynamic().resources.get(
                        prefix=prefix, api_version=ref.api_version, kind=ref.kind
                    )
                except ResourceNotFoundError as err:
                    raise _not_served(f"{ref.kind} {ref.api_version}") from err
                self._resources[key] = resource
        if subresource is None:
            return resource
        found = resource.subresources.get(subresource)
        if found is None:
            raise _not_served(f"{ref.kind}/{subresource} {ref.api_version}")
        return found

    def identities(self, collection: str) -> frozenset[tuple[str, str]]:
        """(name, uid) of every object at a collection path, as metadata only.

        Namespaced objects are named "namespace/name". Asking for PartialObjectMetadataList
        keeps a list of every Pod small. The path is requested as it is: a list needs no
        discovery.
        """
        with self._lock:
            dynamic = self._dynamic()
        response = dynamic.request(
            "get", collection, header_params={"Accept": PARTIAL_METADATA}, serialize=False
        )
        found = set()
        for item in _decoded(response)[1].get("items") or ():
            meta = item.get("metadata") or {}
            namespace = meta.get("namespace")
            name = f"{namespace}/{meta['name']}" if namespace else str(meta["name"])
            found.add((name, str(meta.get("uid", ""))))
        return frozenset(found)

    def list_labelled(
        self, api_version: str, kind: str, label_selector: str
    ) -> list[dict[str, Any]]:
        """Every object of a cluster-scoped kind with these labels (whole objects)."""
        resource = self._resource(Ref(api_version, kind, ""))
        response = resource.get(label_selector=label_selector, serialize=False)
        items: list[dict[str, Any]] = _decoded(response)[1].get("items") or []
        return items

    def get(self, ref: Ref) -> dict[str, Any] | None:
        try:
            response = self._resource(ref).get(
                name=ref.name, namespace=ref.namespace, serialize=False
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return _decoded(response)[1]

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        ref = Ref.of(obj)
        response = self._resource(ref).create(
            body=dict(obj), namespace=ref.namespace, serialize=False
        )
        return _decoded(response)[1]

    def apply(self, obj: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Server-side apply under the operator's field manager; True when it created.

        Forcing takes back fields another manager changed: the operator's spec wins.
        """
        ref = Ref.of(obj)
        response = self._resource(ref).server_side_apply(
            body=dict(obj),
            name=ref.name,
            namespace=ref.namespace,
            field_manager=self._field_manager,
            force_conflicts=True,
            serialize=False,
        )
        status, live = _decoded(response)
        return live, status == 201

    def patch(
        self, ref: Ref, patch: Any, content_type: str, subresource: str | None = None
    ) -> dict[str, Any]:
        response = self._resource(ref, subresource).patch(
            body=patch,
            name=ref.name,
            namespace=ref.namespace,
            content_type=content_type,
            field_manager=self._field_manager,
            serialize=False,
        )
        return _decoded(response)[1]

    def delete(
        self,
        ref: Ref,
        *,
        propagation: str = "Background",
        resource_version: str | None = None,
    ) -> bool:
        """Deletes one object; False when it was already gone.

        With resource_version the deletion happens only if nobody changed the object since.
        """
        options: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": propagation,
        }
        if resource_version:
            options["preconditions"] = {"resourceVersion": resource_version}
        try:
            self._resource(ref).delete(
                name=ref.name, namespace=ref.namespace, body=options, serialize=False
            )
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True
