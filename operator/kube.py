"""A small, blocking Kubernetes client for the few calls the operator makes.

Requests and responses are plain dicts, like the builders' output. Objects are addressed by
(apiVersion, kind, namespace, name); only the kinds listed in PLURALS are ever touched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from simdev.operator.model import API_VERSION, KIND, MANAGER, PLURAL

RBAC = "rbac.authorization.k8s.io/v1"
PLURALS = {
    ("v1", "Namespace"): "namespaces",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "ConfigMap"): "configmaps",
    ("apps/v1", "DaemonSet"): "daemonsets",
    (RBAC, "ClusterRole"): "clusterroles",
    (RBAC, "ClusterRoleBinding"): "clusterrolebindings",
    (API_VERSION, KIND): PLURAL,
}
CLUSTER_SCOPED = {
    ("v1", "Namespace"),
    (RBAC, "ClusterRole"),
    (RBAC, "ClusterRoleBinding"),
    (API_VERSION, KIND),
}

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

REQUEST_TIMEOUT = 30.0
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


def load_api_client() -> client.ApiClient:
    """In a pod, the service account (KUBERNETES_SERVICE_HOST may point at loopback);
    elsewhere, the current kubeconfig context."""
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


class Kube:
    """Blocking calls; the reconciler runs them in worker threads."""

    def __init__(self, api: client.ApiClient, field_manager: str = MANAGER) -> None:
        self._api = api
        self._field_manager = field_manager

    def _call(
        self,
        method: str,
        url: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": "application/json", **(headers or {})}
        if content_type:
            headers["Content-Type"] = content_type
        request = self._api.param_serialize(
            method=method,
            resource_path=url,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return response.status, json.loads(data) if data else {}

    def identities(self, collection: str) -> frozenset[tuple[str, str]]:
        """(name, uid) of every object at a collection path, as metadata only.

        Namespaced objects are named "namespace/name". Asking for PartialObjectMetadataList
        keeps a list of every Pod small.
        """
        _, data = self._call(
            "GET",
            collection,
            headers={"Accept": PARTIAL_METADATA},
        )
        found = set()
        for item in data.get("items") or ():
            meta = item.get("metadata") or {}
            namespace = meta.get("namespace")
            name = f"{namespace}/{meta['name']}" if namespace else str(meta["name"])
            found.add((name, str(meta.get("uid", ""))))
        return frozenset(found)

    def get(self, ref: Ref) -> dict[str, Any] | None:
        try:
            return self._call("GET", path(ref))[1]
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", collection_path(Ref.of(obj)), body=dict(obj))[1]

    def apply(self, obj: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Server-side apply under the operator's field manager; True when it created.

        Forcing takes back fields another manager changed: the operator's spec wins.
        """
        status, live = self._call(
            "PATCH",
            path(Ref.of(obj)),
            query=[("fieldManager", self._field_manager), ("force", "true")],
            body=dict(obj),
            content_type=APPLY,
        )
        return live, status == 201

    def patch(
        self, ref: Ref, patch: Any, content_type: str, subresource: str | None = None
    ) -> dict[str, Any]:
        return self._call(
            "PATCH",
            path(ref, subresource),
            query=[("fieldManager", self._field_manager)],
            body=patch,
            content_type=content_type,
        )[1]

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
            self._call("DELETE", path(ref), body=options, content_type="application/json")
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True
