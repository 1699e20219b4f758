"""What the operator knows about the cluster at one moment, assembled from its kopf indexes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simdev.operator.model import Device
from simdev.operator.observed import DaemonSetState, NodeResources, PodDevices


@dataclass(frozen=True)
class World:
    """What the operator knows about the cluster at one moment, from its indexes."""

    devices: Mapping[str, Device] = field(default_factory=dict)
    # DaemonSets labelled as ours, by the name of the SimulatedDevice they serve.
    daemon_sets: Mapping[str, tuple[DaemonSetState, ...]] = field(default_factory=dict)
    nodes: tuple[NodeResources, ...] = ()
    # Pods that hold extended resources, whatever their resource.
    pods: tuple[PodDevices, ...] = ()

    def namespaces_of(
        self, device: Device, status: Mapping[str, Any], *, terminating: bool = True
    ) -> set[str]:
        """Every namespace this object may have deployed into: spec, index and status.

        terminating=False leaves out DaemonSets already being deleted: nothing is left to
        do about them but wait.
        """
        found = {device.spec.namespace}
        found.update(
            ds.namespace
            for ds in self.daemon_sets.get(device.name, ())
            if terminating or not ds.deleting
        )
        recorded = (status.get("daemonSet") or {}).get("namespace")
        if recorded:
            found.add(str(recorded))
        return found

    def daemon_set_in(self, device: Device, namespace: str) -> DaemonSetState | None:
        return next(
            (d for d in self.daemon_sets.get(device.name, ()) if d.namespace == namespace), None
        )


Observe = Callable[[], World]
