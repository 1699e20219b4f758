"""The SimulatedDevice API as the operator sees it: identifiers, defaults and typed snapshots.

A snapshot is taken from each watched object as it arrives and kept in a kopf index; the
reconciler reads only these snapshots, so every decision is made from plain, immutable data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simdev.plugin.limits import MAX_DEVICES

GROUP = "simdev.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SimulatedDevice"
PLURAL = "simulateddevices"

# The schema applies these defaults; they are repeated here so that an object the API server
# has not defaulted (an older stored version, a test body) still means the same thing.
DEFAULT_NAMESPACE = "simple-device-plugin"
DEFAULT_RESOURCE_NAME = "example.com/simple-device"
DEFAULT_NUMBER_DEVICES = 2
DEFAULT_DEVICE_ID_PREFIX = "simple-device"
DEFAULT_ALLOCATION_POLICY = "Packed"
DEFAULT_SHARING_REPLICAS = 1
DEFAULT_SHARING_POLICY = "Spread"
# One ListAndWatch message lists every device of a node (numberDevices * replicas) and must
# stay under the kubelet's 4 MiB gRPC limit: the plugin's own bound, which the CRD repeats.
MAX_NUMBER_DEVICES = MAX_DEVICES

MANAGER = "simdev-operator"
FINALIZER = "simdev.io/finalizer"
OWNER_LABEL = "simdev.io/simulated-device"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
# Marks a namespace the operator created (and may therefore delete); a namespace without it
# belonged to someone else and is never adopted.
CREATED_NAMESPACE_LABEL = "simdev.io/created-namespace"
CONFIG_HASH_ANNOTATION = "simdev.io/config-hash"
# The default plugin image's ID on the pod template: its tag never changes, so this is what
# rolls the plugin pods when the image is rebuilt.
PLUGIN_IMAGE_ID_ANNOTATION = "simdev.io/plugin-image-id"


# spec.dra.driverName defaults to "<metadata.name>" followed by this domain.
DRA_DRIVER_DOMAIN = "simdev.io"


@dataclass(frozen=True)
class DraSpec:
    """spec.dra: the same devices offered through Dynamic Resource Allocation."""

    enabled: bool = False
    driver_name: str = ""
    # Typed attributes as written ({"string": "h100-sim"}, ...), by name, sorted.
    attributes: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    # Quantities as strings ("80Gi"), by name, sorted.
    capacity: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_spec(cls, raw: Mapping[str, Any], object_name: str) -> DraSpec:
        return cls(
            enabled=bool(raw.get("enabled")),
            # The schema cannot default a field from metadata, so the operator does it.
            driver_name=str(raw.get("driverName") or f"{object_name}.{DRA_DRIVER_DOMAIN}"),
            attributes=tuple(
                sorted((str(k), dict(v)) for k, v in (raw.get("attributes") or {}).items())
            ),
            capacity=tuple(
                sorted((str(k), str(v)) for k, v in (raw.get("capacity") or {}).items())
            ),
        )


@dataclass(frozen=True)
class DeviceSpec:
    """The effective spec of a SimulatedDevice, with every default resolved."""

    namespace: str
    plugin_name: str
    resource_name: str
    number_devices: int
    device_id_prefix: str
    annotation_prefix: str
    env_prefix: str
    device_file_prefix: str
    node_selector: tuple[tuple[str, str], ...]
    tolerations: tuple[Mapping[str, Any], ...]
    image: str | None
    # spec.faults as written (the plugin parses them too); validated by the API server.
    faults: tuple[Mapping[str, Any], ...] = ()
    # spec.topology.numaNodes; None: no topology.
    numa_nodes: int | None = None
    allocation_policy: str = DEFAULT_ALLOCATION_POLICY
    sharing_replicas: int = DEFAULT_SHARING_REPLICAS
    sharing_policy: str = DEFAULT_SHARING_POLICY
    fail_requests_greater_than_one: bool = False
    # spec.nodePools as written (the plugin parses them too); validated by the API server.
    node_pools: tuple[Mapping[str, Any], ...] = ()
    dra: DraSpec = DraSpec()

    @property
    def advertised_devices(self) -> int:
        """What each node of the top level offers: every device once per replica."""
        return self.number_devices * self.sharing_replicas


@dataclass(frozen=True)
class Device:
    """An immutable snapshot of one SimulatedDevice object."""

    name: str
    uid: str
    generation: int
    created: str
    deleting: bool
    spec: DeviceSpec
    status: Mapping[str, Any]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Device:
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        topology = spec.get("topology") or {}
        sharing = spec.get("sharing") or {}
        name = str(meta["name"])
        return cls(
            name=name,
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
            # RFC 3339 timestamps of one format sort as strings, which is all we need.
            created=str(meta.get("creationTimestamp") or ""),
            deleting=bool(meta.get("deletionTimestamp")),
            spec=DeviceSpec(
                namespace=str(spec.get("namespace") or DEFAULT_NAMESPACE),
                # The schema cannot default a field from metadata, so the operator does it.
                plugin_name=str(spec.get("pluginName") or name),
                resource_name=str(spec.get("resourceName") or DEFAULT_RESOURCE_NAME),
                number_devices=_int_or(spec.get("numberDevices"), DEFAULT_NUMBER_DEVICES),
                device_id_prefix=str(spec.get("deviceIdPrefix") or DEFAULT_DEVICE_ID_PREFIX),
                annotation_prefix=str(spec.get("annotationPrefix") or ""),
                env_prefix=str(spec.get("envPrefix") or ""),
                device_file_prefix=str(spec.get("deviceFilePrefix") or ""),
                node_selector=tuple(sorted((spec.get("nodeSelector") or {}).items())),
                tolerations=tuple(spec.get("tolerations") or ()),
                image=spec.get("image") or None,
                faults=tuple(spec.get("faults") or ()),
                numa_nodes=(
                    None if topology.get("numaNodes") is None else int(topology["numaNodes"])
                ),
                allocation_policy=str(spec.get("allocationPolicy") or DEFAULT_ALLOCATION_POLICY),
                sharing_replicas=_int_or(sharing.get("replicas"), DEFAULT_SHARING_REPLICAS),
                sharing_policy=str(sharing.get("policy") or DEFAULT_SHARING_POLICY),
                fail_requests_greater_than_one=bool(sharing.get("failRequestsGreaterThanOne")),
                node_pools=tuple(spec.get("nodePools") or ()),
                dra=DraSpec.from_spec(spec.get("dra") or {}, name),
            ),
            status=dict(body.get("status") or {}),
        )

    def owner_reference(self, *, controller: bool = True) -> dict[str, Any]:
        """An owner reference to this object, so that deleting it garbage-collects dependents.

        blockOwnerDeletion stays off: it would need update rights on the finalizers
        subresource and buys nothing, since the operator's own finalizer orders deletion.
        """
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": controller,
            "blockOwnerDeletion": False,
        }

    def event_target(self) -> dict[str, Any]:
        """The minimal body kopf needs to post a Kubernetes Event about this object."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name, "uid": self.uid},
        }


def _int_or(value: Any, default: int) -> int:
    return default if value is None else int(value)


def child_name(device_name: str) -> str:
    """The name of the ServiceAccount, ConfigMap and DaemonSet that serve one SimulatedDevice.

    Derived from the object's name alone, so a restarted operator finds (and never
    duplicates) what it made before; the CRD limits names to 63 characters.
    """
    return f"simdev-{device_name}"
