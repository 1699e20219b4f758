"""Which SimulatedDevices may deploy when several claim the same resource or socket.

Two plugins that register the same resource name replace each other in the kubelet, and two
plugins with the same plugin name listen on the same socket file. Both break every node, so
only one object per resource name and per plugin name is deployed: the one created first
(ties broken by UID: creation timestamps have one-second resolution, and a UID never changes,
so the winner never flips after the fact). The socket directory is one host path shared by
every namespace, so the plugin name clashes whatever namespace each object deploys into.
A DRA driver name (spec.dra) is claimed the same way: its slices and class are named by it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from simdev.operator.model import Device

CONFLICT_REASON = "Conflict"


@dataclass(frozen=True)
class Conflict:
    """Why a SimulatedDevice is not deployed: another one holds what it claims."""

    holder: str
    field: str
    value: str

    @property
    def message(self) -> str:
        return (
            f"spec.{self.field} {self.value!r} is already served by SimulatedDevice "
            f"{self.holder!r}, which was created earlier; this one is not deployed until "
            f"{self.holder!r} is deleted or changed"
        )


def _claims(device: Device) -> list[tuple[str, str]]:
    claims = [
        ("resourceName", device.spec.resource_name),
        ("pluginName", device.spec.plugin_name),
    ]
    # Two objects with one DRA driver would overwrite each other's slices and class.
    if device.spec.dra.enabled:
        claims.append(("dra.driverName", device.spec.dra.driver_name))
    return claims


def _lingering(device: Device) -> list[tuple[str, str]]:
    """Plugin names its running pods may still serve under, besides the spec's.

    status.pluginName is the name last deployed until the next reconcile, and
    status.rollingFromPluginName keeps the old one until the DaemonSet has rolled out.
    """
    status = device.status
    names = {str(status.get(k) or "") for k in ("pluginName", "rollingFromPluginName")}
    return [("pluginName", n) for n in sorted(names - {"", device.spec.plugin_name})]


def admission_order(device: Device) -> tuple[str, str]:
    return (device.created, device.uid or device.name)


def resolve(devices: Iterable[Device]) -> dict[str, Conflict | None]:
    """Maps every object's name to the conflict that keeps it from deploying, or None.

    Objects are admitted in creation order; one is admitted when nothing it claims is held
    by an object admitted before it. An object that lost a conflict holds nothing, so it
    does not block a third one: the outcome depends only on the set of objects.

    An admitted object that changed its pluginName keeps the old one as well until its
    DaemonSet has rolled out: its old pods still listen on that socket, and a newcomer there
    would take it from them.
    """
    held: dict[tuple[str, str], str] = {}
    result: dict[str, Conflict | None] = {}
    for device in sorted(devices, key=admission_order):
        conflict = next(
            (Conflict(held[claim], *claim) for claim in _claims(device) if claim in held),
            None,
        )
        result[device.name] = conflict
        if conflict is None:
            for claim in _claims(device) + _lingering(device):
                held.setdefault(claim, device.name)
    return result


def recorded_conflict(status: Mapping[str, Any]) -> str | None:
    """The conflict message a status currently reports, or None when it reports none."""
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready" and condition.get("reason") == CONFLICT_REASON:
            return str(condition.get("message", ""))
    return None


def stale_conflicts(devices: Iterable[Device]) -> list[str]:
    """Names of objects whose reported conflict no longer matches the current set of objects.

    Called on every change of any SimulatedDevice: when the holder of a claim is deleted or
    changes its claims, the objects waiting behind it are reconciled at once.
    """
    live = list(devices)
    verdicts = resolve(live)
    stale = []
    for device in live:
        if device.deleting:
            continue
        conflict = verdicts[device.name]
        wanted = conflict.message if conflict else None
        if recorded_conflict(device.status) != wanted:
            stale.append(device.name)
    return sorted(stale)
