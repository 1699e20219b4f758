"""The blocking steps that make the cluster match the builders' output.

Every step is idempotent: it can be repeated after a crash, a restart or a conflicting write,
and converges on the same objects under the same deterministic names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from simdev.operator import builders
from simdev.operator.audit import Listed
from simdev.operator.builders import PluginRuntime
from simdev.operator.dra_publisher import DraPublisher
from simdev.operator.kube import JSON_PATCH, MERGE, RBAC, STRATEGIC, Kube, Ref
from simdev.operator.model import (
    API_VERSION,
    CREATED_NAMESPACE_LABEL,
    KIND,
    PLURAL,
    Device,
    child_name,
)
from simdev.operator.observed import DaemonSetState


class RetryLater(Exception):
    """A step cannot go on yet; the message says what it waits for."""


@dataclass
class Outcome:
    """What one step did: the DaemonSet it left behind and notes worth an Event."""

    daemon_set: DaemonSetState | None = None
    notes: list[str] = field(default_factory=list)


def _owner_uids(obj: Mapping[str, Any]) -> set[str]:
    return {o.get("uid", "") for o in obj.get("metadata", {}).get("ownerReferences") or ()}


def _is_ours(namespace: Mapping[str, Any]) -> bool:
    labels = namespace.get("metadata", {}).get("labels") or {}
    return labels.get(CREATED_NAMESPACE_LABEL) == "true"


def _children(device: Device, namespace: str) -> list[Ref]:
    name = child_name(device.name)
    # DaemonSet first: its pods must stop before their configuration goes away.
    return [
        Ref("apps/v1", "DaemonSet", name, namespace),
        Ref("v1", "ConfigMap", name, namespace),
        Ref("v1", "ServiceAccount", name, namespace),
    ]


def _cluster_children(device: Device) -> list[Ref]:
    name = builders.plugin_role_name(device)
    return [Ref(RBAC, "ClusterRoleBinding", name), Ref(RBAC, "ClusterRole", name)]


class Deployer:
    def __init__(self, kube: Kube, runtime: PluginRuntime) -> None:
        self._kube = kube
        self.runtime = runtime
        # The DRA objects (ResourceSlices, DeviceClass): see dra_publisher.py.
        self.dra = DraPublisher(kube)

    def ensure_namespace(self, device: Device) -> list[str]:
        """Creates the target namespace if missing, or joins its owners if the operator made it.

        A namespace that existed before (no creation label) is used as it is: it is neither
        relabelled nor adopted, so it is never deleted because of a SimulatedDevice.
        """
        name = device.spec.namespace
        ref = Ref("v1", "Namespace", name)
        live = self._kube.get(ref)
        if live is None:
            try:
                self._kube.create(builders.namespace(device))
                return [f"Created namespace {name} for the plugin"]
            except ApiException as err:
                if err.status != 409:
                    raise
                live = self._kube.get(ref)
                if live is None:
                    raise RetryLater(f"namespace {name} is being created and deleted") from err
        if (live.get("status") or {}).get("phase") == "Terminating":
            raise RetryLater(f"namespace {name} is being deleted; it is created again once gone")
        if _is_ours(live) and device.uid not in _owner_uids(live):
            # A strategic merge adds this owner to the list (merged by uid), keeping the others.
            owner = device.owner_reference(controller=False)
            self._kube.patch(ref, {"metadata": {"ownerReferences": [owner]}}, STRATEGIC)
        return []

    def release_namespace(self, device: Device, name: str) -> list[str]:
        """Drops this object's ownership of a namespace the operator made.

        The last owner to leave deletes it. The resourceVersion guard makes this safe
        against another SimulatedDevice joining at the same moment: that write conflicts, and
        the next reconcile decides again.
        """
        ref = Ref("v1", "Namespace", name)
        live = self._kube.get(ref)
        if live is None or not _is_ours(live) or device.uid not in _owner_uids(live):
            return []
        meta = live["metadata"]
        others = [o for o in meta.get("ownerReferences") or () if o.get("uid") != device.uid]
        version = meta["resourceVersion"]
        if others:
            patch = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": version},
                {"op": "replace", "path": "/metadata/ownerReferences", "value": others},
            ]
            self._kube.patch(ref, patch, JSON_PATCH)
            return []
        self._kube.delete(ref, resource_version=version)
        return [f"Deleted namespace {name}, which no SimulatedDevice uses any more"]

    def _remove(self, device: Device, namespace: str) -> list[str]:
        notes = []
        for ref in _children(device, namespace):
            # Foreground: the DaemonSet object outlives its pods, so its absence means that
            # no plugin of this object runs any more.
            propagation = "Foreground" if ref.kind == "DaemonSet" else "Background"
            if self._kube.delete(ref, propagation=propagation) and ref.kind == "DaemonSet":
                notes.append(f"Deleted {ref}")
        return notes

    def deploy(
        self, device: Device, stale_namespaces: Iterable[str], metrics_port: int | None = None
    ) -> Outcome:
        """Namespace, ServiceAccount, ConfigMap and DaemonSet, then cleanup of old namespaces."""
        outcome = Outcome(notes=self.ensure_namespace(device))
        # The plugin's read access first, so that a new pod can follow its object at once.
        for obj in builders.cluster_objects(device):
            self._kube.apply(obj)
        for obj in builders.namespaced_objects(device, self.runtime, metrics_port):
            live, created = self._kube.apply(obj)
            if obj["kind"] == "DaemonSet":
                outcome.daemon_set = DaemonSetState.from_body(live)
                if created:
                    outcome.notes.append(f"Created {Ref.of(obj)}")
        for namespace in sorted(set(stale_namespaces) - {device.spec.namespace}):
            outcome.notes += self._remove(device, namespace)
            outcome.notes += self.release_namespace(device, namespace)
        return outcome

    def withdraw(self, device: Device, namespaces: Iterable[str]) -> Outcome:
        """Removes everything deployed for a SimulatedDevice that may not be deployed."""
        outcome = Outcome()
        for namespace in sorted(set(namespaces)):
            outcome.notes += self._remove(device, namespace)
            outcome.notes += self.release_namespace(device, namespace)
        self._remove_cluster_children(device)
        self.dra.remove(device)
        return outcome

    def _remove_cluster_children(self, device: Device) -> None:
        for ref in _cluster_children(device):
            self._kube.delete(ref)

    def tear_down(self, device: Device, namespaces: Iterable[str]) -> list[str]:
        """Deletes the plugin objects of a SimulatedDevice being deleted.

        Returns the namespaces where its DaemonSet still exists: the deletion is foreground,
        so the DaemonSet stays until its pods are gone and their sockets are closed. The
        namespace is left to the garbage collector, which deletes it after its last owner.
        """
        # Slices go first: the scheduler must stop placing claims on devices being removed.
        self.dra.remove(device)
        left = []
        for namespace in sorted(set(namespaces)):
            self._remove(device, namespace)
            daemon_set = _children(device, namespace)[0]
            if self._kube.get(daemon_set) is not None:
                left.append(namespace)
        if not left:
            # Only once the plugins are gone: until then they still follow their object.
            self._remove_cluster_children(device)
        return left

    def list_identities(self) -> Listed:
        """Every SimulatedDevice, Node and Pod the API server has now, for the audit."""
        return Listed(
            devices=self._kube.identities(f"/apis/{API_VERSION}/{PLURAL}"),
            nodes=self._kube.identities("/api/v1/nodes"),
            pods=self._kube.identities("/api/v1/pods"),
        )

    def patch_status(self, device: Device, patch: Mapping[str, Any]) -> None:
        ref = Ref(API_VERSION, KIND, device.name)
        self._kube.patch(ref, {"status": dict(patch)}, MERGE, subresource="status")

    def patch_node_status(self, node: str, patch: Mapping[str, Any]) -> None:
        """A merge patch of one node's status subresource (see node_status.py)."""
        self._kube.patch(Ref("v1", "Node", node), dict(patch), MERGE, subresource="status")
