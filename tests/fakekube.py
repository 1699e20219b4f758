"""An in-memory API server that keeps objects by name, for the operator's I/O steps.

It implements just the API semantics the steps rely on: create conflicts, server-side
apply by name, owner-reference merging, resourceVersion preconditions, slow foreground
deletion and lists by label.
"""

from __future__ import annotations

import copy
from typing import Any

from kubernetes.client.exceptions import ApiException

from simdev.operator.kube import JSON_PATCH, MERGE, STRATEGIC, Ref


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """What an apply sets: everything but status and server-maintained metadata."""
    meta = {k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "generation")}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[Ref, dict[str, Any]] = {}
        self.version = 0
        # Foreground deletion keeps a DaemonSet until its pods are gone; collect() ends it.
        self.terminating: set[Ref] = set()

    def _store(self, ref: Ref, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[ref] = obj
        return copy.deepcopy(obj)

    def list_labelled(
        self, api_version: str, kind: str, label_selector: str
    ) -> list[dict[str, Any]]:
        wanted = dict(term.split("=", 1) for term in label_selector.split(","))
        return [
            copy.deepcopy(obj)
            for ref, obj in sorted(self.objects.items(), key=lambda item: item[0].name)
            if (ref.api_version, ref.kind) == (api_version, kind)
            and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
        ]

    def get(self, ref: Ref) -> dict[str, Any] | None:
        obj = self.objects.get(ref)
        return copy.deepcopy(obj) if obj is not None else None

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        ref = Ref.of(obj)
        if ref in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        return self._store(ref, copy.deepcopy(obj))

    def apply(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        ref = Ref.of(obj)
        old = self.objects.get(ref)
        new = copy.deepcopy(obj)
        if old is None:
            new["metadata"]["generation"] = 1
            return self._store(ref, new), True
        if _content(old) == _content(new):
            return copy.deepcopy(old), False  # a no-op apply writes nothing
        new["status"] = old.get("status", {})
        new["metadata"]["generation"] = old["metadata"]["generation"] + 1
        return self._store(ref, new), False

    def patch(
        self, ref: Ref, patch: Any, content_type: str, subresource: str | None = None
    ) -> dict[str, Any]:
        if ref not in self.objects:
            raise ApiException(status=404, reason="NotFound")
        obj = copy.deepcopy(self.objects[ref])
        meta = obj["metadata"]
        if content_type == STRATEGIC:
            owners = meta.setdefault("ownerReferences", [])
            for owner in patch["metadata"]["ownerReferences"]:
                owners[:] = [o for o in owners if o["uid"] != owner["uid"]] + [owner]
        elif content_type == JSON_PATCH:
            for op in patch:
                if op["op"] == "test" and meta["resourceVersion"] != op["value"]:
                    # What the API server answers to a failed test operation.
                    raise ApiException(status=422, reason="Unprocessable Entity")
                if op["op"] == "replace":
                    assert op["path"] == "/metadata/ownerReferences"
                    meta["ownerReferences"] = op["value"]
        elif content_type == MERGE and subresource == "status":
            status = obj.setdefault("status", {})
            for key, value in patch["status"].items():
                if value is None:
                    status.pop(key, None)
                else:
                    status[key] = value
        else:
            raise AssertionError(f"unexpected patch {content_type}")
        return self._store(ref, obj)

    def delete(
        self, ref: Ref, *, propagation: str = "Background", resource_version: str | None = None
    ) -> bool:
        obj = self.objects.get(ref)
        if obj is None:
            return False
        if resource_version and obj["metadata"]["resourceVersion"] != resource_version:
            raise ApiException(status=409, reason="Conflict")
        if propagation == "Foreground" and ref.kind == "DaemonSet":
            obj["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
            self.terminating.add(ref)
        else:
            del self.objects[ref]
        return True

    def collect(self) -> None:
        """The garbage collector finishing foreground deletions."""
        for ref in self.terminating:
            self.objects.pop(ref, None)
        self.terminating.clear()

    def kinds_in(self, namespace: str) -> list[str]:
        return sorted(r.kind for r in self.objects if r.namespace == namespace)

    def namespace(self, name: str) -> dict[str, Any]:
        obj = self.objects[Ref("v1", "Namespace", name)]
        return obj

    def owners_of_namespace(self, name: str) -> list[str]:
        return [o["uid"] for o in self.namespace(name)["metadata"].get("ownerReferences", [])]
