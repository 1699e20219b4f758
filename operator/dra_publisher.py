"""The I/O that makes a SimulatedDevice's ResourceSlices and DeviceClass match the builders.

Idempotent like the other steps: an unchanged pool is not written at all, a changed one is
applied whole under a higher generation, and whatever carries this object's labels but is
no longer wanted (a node that left, a renamed driver, DRA turned off) is deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from simdev.operator import dra
from simdev.operator.kube import RESOURCE, Kube, Ref
from simdev.operator.model import OWNER_LABEL, Device

# After the API server said it serves no DRA, objects without DRA skip their cleanup lists
# this long: each such list would cost a rediscovery of every API group.
UNSERVED_PAUSE = 300.0


def selector(device: Device) -> str:
    labels = dra.dra_labels(device)
    return ",".join(f"{k}={labels[k]}" for k in (OWNER_LABEL, "app.kubernetes.io/component"))


def _by_pool(slices: list[dict[str, Any]], driver: str) -> dict[str, list[dict[str, Any]]]:
    pools: dict[str, list[dict[str, Any]]] = {}
    for s in slices:
        spec = s.get("spec") or {}
        if spec.get("driver") == driver:
            pools.setdefault(str((spec.get("pool") or {}).get("name")), []).append(s)
    return pools


class DraPublisher:
    def __init__(self, kube: Kube, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube = kube
        self._clock = clock
        self._unserved_until = 0.0

    def _list(self, kind: str, device: Device, required: bool) -> list[dict[str, Any]] | None:
        """This object's objects of kind; None where the API server serves no DRA.

        That is an error only when something must be published: an object without DRA
        works on clusters without it.
        """
        if not required and self._clock() < self._unserved_until:
            return None
        try:
            return self._kube.list_labelled(RESOURCE, kind, selector(device))
        except ApiException as err:
            if err.status == 404 and not required:
                self._unserved_until = self._clock() + UNSERVED_PAUSE
                return None  # nothing can have been published there
            raise

    def publish(self, device: Device, wanted: dra.DraObjects) -> list[str]:
        """Applies the class and the changed pools, then prunes; returns notes for Events."""
        notes: list[str] = []
        required = wanted.device_class is not None
        live_classes = self._list("DeviceClass", device, required)
        live_slices = self._list("ResourceSlice", device, required)
        if live_classes is None or live_slices is None:
            return notes
        keep: set[str] = set()
        if wanted.device_class is not None:
            _, created = self._kube.apply(wanted.device_class)
            if created:
                notes.append(f"Created {Ref.of(wanted.device_class)}")
            keep.add(wanted.device_class["metadata"]["name"])
        for obj in live_classes:
            if obj["metadata"]["name"] not in keep:
                self._delete("DeviceClass", obj)
                notes.append(f"Deleted DeviceClass {obj['metadata']['name']}")
        live = _by_pool(live_slices, device.spec.dra.driver_name)
        names: set[str] = set()
        for pool, slices in sorted(wanted.pools.items()):
            names.update(s["metadata"]["name"] for s in slices)
            current = live.get(pool, [])
            if dra.pool_unchanged(slices, current):
                continue  # nothing to write
            for obj in dra.with_generation(slices, dra.pool_generation(slices, current)):
                self._kube.apply(obj)
        for obj in live_slices:
            if obj["metadata"]["name"] not in names:
                self._delete("ResourceSlice", obj)
        return notes

    def remove(self, device: Device) -> None:
        """Deletes every slice and class of this object (its deletion, or a conflict)."""
        for kind in ("ResourceSlice", "DeviceClass"):
            for obj in self._list(kind, device, required=False) or ():
                self._delete(kind, obj)

    def _delete(self, kind: str, obj: Mapping[str, Any]) -> None:
        self._kube.delete(Ref(RESOURCE, kind, obj["metadata"]["name"]))
