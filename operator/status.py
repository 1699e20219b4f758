"""Pure status logic: what a SimulatedDevice's status says, given what was observed.

Also decides which status transitions deserve a Kubernetes Event, so that events are posted
once per transition instead of once per reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from simdev.operator.conflicts import CONFLICT_REASON, Conflict
from simdev.operator.model import Device
from simdev.operator.observed import DaemonSetState, DeviceTotals
from simdev.operator.simulation import NodeRow, fault_transitions, listed_rows

READY = "Ready"
PROGRESSING = "Progressing"


@dataclass(frozen=True)
class Verdict:
    """The Ready and Progressing conditions, before timestamps are attached."""

    ready: bool
    reason: str
    message: str
    progressing: bool
    progressing_reason: str
    progressing_message: str


def judge(
    device: Device,
    *,
    conflict: Conflict | None,
    daemon_set: DaemonSetState | None,
    totals: DeviceTotals,
    error: str | None = None,
    rows: Sequence[NodeRow] = (),
) -> Verdict:
    resource = device.spec.resource_name
    if conflict is not None:
        return Verdict(False, CONFLICT_REASON, conflict.message, False, CONFLICT_REASON, "")
    if error is not None:
        return Verdict(False, "ReconcileError", error, True, "Retrying", "retrying with backoff")
    if daemon_set is None or daemon_set.deleting:
        msg = "the plugin DaemonSet does not exist yet"
        return Verdict(False, "DaemonSetNotReady", msg, True, "RollingOut", msg)
    if daemon_set.observed_generation < daemon_set.generation:
        msg = "the DaemonSet controller has not yet seen the latest plugin DaemonSet"
        return Verdict(False, "DaemonSetNotReady", msg, True, "RollingOut", msg)
    if daemon_set.desired == 0:
        msg = "no node matches spec.nodeSelector and spec.tolerations, so no plugin runs"
        return Verdict(False, "NoMatchingNodes", msg, False, "NoMatchingNodes", msg)
    if not daemon_set.rolled_out:
        msg = (
            f"{daemon_set.ready} of {daemon_set.desired} plugin pods ready, "
            f"{daemon_set.updated} up to date"
        )
        return Verdict(False, "DaemonSetNotReady", msg, True, "RollingOut", msg)
    if device.spec.node_pools:
        return _judge_per_node(device, daemon_set.desired, totals, rows)
    # Devices that active faults take away on purpose are expected to be missing.
    held_back = sum(r.expected_capacity - r.expected_allocatable for r in rows)
    # With sharing a node offers every device once per replica.
    per_node = device.spec.advertised_devices
    expected = per_node * daemon_set.desired - held_back
    if totals.allocatable != expected:
        return _not_advertised(
            device, totals, expected, f"{per_node} on each of {daemon_set.desired} nodes", held_back
        )
    nodes = "1 node offers" if daemon_set.desired == 1 else f"{daemon_set.desired} nodes offer"
    msg = f"{nodes} {per_node} {resource} each"
    if held_back:
        msg += f"; faults hold back {held_back}"
    return Verdict(True, "DevicesAdvertised", msg, False, "RolloutComplete", "")


def plugin_rows(rows: Sequence[NodeRow], desired: int) -> list[NodeRow]:
    """The rows of the nodes that run a plugin, as far as the operator can tell.

    The DaemonSet says how many do, spec.nodeSelector which may. When it runs on fewer of
    those (taints it does not tolerate), nodes that report the resource come first: a node
    where no plugin ever registered does not.
    """
    candidates = sorted((r for r in rows if r.selected), key=lambda r: (not r.reported, r.name))
    return candidates[:desired]


def _judge_per_node(
    device: Device, desired: int, totals: DeviceTotals, rows: Sequence[NodeRow]
) -> Verdict:
    """With node pools, each node has its own expectation: the sum over the plugins' nodes."""
    counted = plugin_rows(rows, desired)
    if len(counted) < desired:
        msg = (
            f"the plugin runs on {desired} nodes, {len(counted)} of them known to match "
            "spec.nodeSelector; waiting for the node list to catch up"
        )
        return Verdict(False, "DevicesNotAdvertised", msg, True, "WaitingForKubelet", msg)
    held_back = sum(r.expected_capacity - r.expected_allocatable for r in counted)
    expected = sum(r.expected_allocatable for r in counted)
    breakdown = _breakdown(device, counted)
    if totals.allocatable != expected:
        return _not_advertised(device, totals, expected, breakdown, held_back)
    nodes = "1 node offers" if desired == 1 else f"{desired} nodes offer"
    offered = sum(r.expected_capacity for r in counted)
    msg = f"{nodes} {offered} {device.spec.resource_name}: {breakdown}"
    if held_back:
        msg += f"; faults hold back {held_back}"
    return Verdict(True, "DevicesAdvertised", msg, False, "RolloutComplete", "")


def _breakdown(device: Device, rows: Sequence[NodeRow]) -> str:
    """What the nodes of each pool offer, in the spec's order, the top level last."""
    order = [str(p.get("name", "")) for p in device.spec.node_pools] + [""]
    parts = []
    for pool in order:
        members = [r for r in rows if r.pool == pool]
        if not members:
            continue
        # Every node of a pool expects the same capacity.
        per, n = members[0].expected_capacity, len(members)
        where = f"in pool {pool}" if pool else "at the top level"
        on = "on 1 node" if n == 1 else f"on each of {n} nodes"
        parts.append(f"{per} {on} {where}")
    return ", ".join(parts)


def _not_advertised(
    device: Device, totals: DeviceTotals, expected: int, detail: str, held_back: int
) -> Verdict:
    msg = (
        f"nodes offer {totals.allocatable} {device.spec.resource_name}, expected {expected} "
        f"({detail}"
        + (f", {held_back} held back by faults" if held_back else "")
        + "); waiting for the kubelet to report them"
    )
    return Verdict(False, "DevicesNotAdvertised", msg, True, "WaitingForKubelet", msg)


def _condition(
    kind: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    previous: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    value = "True" if status else "False"
    before = next((c for c in previous.get("conditions") or () if c.get("type") == kind), None)
    # By convention the transition time moves only when the status flips.
    since = before.get("lastTransitionTime") if before and before.get("status") == value else None
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since or now,
    }


def build_status(
    device: Device,
    *,
    conflict: Conflict | None,
    daemon_set: DaemonSetState | None,
    totals: DeviceTotals,
    now: str,
    error: str | None = None,
    rows: Sequence[NodeRow] = (),
    faults: Sequence[Mapping[str, Any]] = (),
    metrics_port: int | None = None,
) -> dict[str, Any]:
    """The complete status of one SimulatedDevice; device.status supplies the old one."""
    verdict = judge(
        device, conflict=conflict, daemon_set=daemon_set, totals=totals, error=error, rows=rows
    )
    listed, omitted = listed_rows(rows)
    rolling_from = _rolling_from(device, daemon_set if conflict is None else None)
    previous = device.status
    deployed = daemon_set if conflict is None and daemon_set and not daemon_set.deleting else None
    return {
        "observedGeneration": device.generation,
        "pluginName": device.spec.plugin_name,
        "rollingFromPluginName": rolling_from,
        "metricsPort": metrics_port,
        "conditions": [
            _condition(
                READY,
                verdict.ready,
                verdict.reason,
                verdict.message,
                device.generation,
                previous,
                now,
            ),
            _condition(
                PROGRESSING,
                verdict.progressing,
                verdict.progressing_reason,
                verdict.progressing_message,
                device.generation,
                previous,
                now,
            ),
        ],
        "daemonSet": (
            {
                "namespace": deployed.namespace,
                "name": deployed.name,
                "desiredNumberScheduled": deployed.desired,
                "numberReady": deployed.ready,
                "updatedNumberScheduled": deployed.updated,
                "numberAvailable": deployed.available,
            }
            if deployed
            else None
        ),
        # A ready/desired string, since printer columns cannot combine two fields.
        "nodes": f"{deployed.ready}/{deployed.desired}" if deployed else "0/0",
        "devices": totals.as_status(),
        "nodeDevices": listed,
        "nodeDevicesOmitted": omitted,
        "faults": [dict(f) for f in faults],
    }


def _rolling_from(device: Device, daemon_set: DaemonSetState | None) -> str | None:
    """The plugin name old pods may still serve under while the DaemonSet rolls to a new one."""
    previous = device.status
    old = previous.get("rollingFromPluginName") or previous.get("pluginName")
    if not old or old == device.spec.plugin_name or daemon_set is None:
        return None
    return None if daemon_set.rolled_out and not daemon_set.deleting else str(old)


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch turning old into new at the top level, or None if they are equal.

    A None value deletes a key in a merge patch, which is how a withdrawn DaemonSet leaves
    the status.
    """
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k, v in old.items() if k not in new and v is not None})
    return patch or None


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any]:
    for c in status.get("conditions") or ():
        if c.get("type") == READY:
            return dict(c)
    return {}


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


def transition_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """The Events worth posting when a status changes from old to new."""
    before, after = _ready(old), _ready(new)
    was_ready, is_ready = before.get("status") == "True", after.get("status") == "True"
    reason, message = str(after.get("reason", "")), str(after.get("message", ""))
    same = before.get("reason") == reason and before.get("message") == message
    events: list[Event] = []
    if before.get("reason") == CONFLICT_REASON and reason != CONFLICT_REASON:
        events.append(
            Event("Normal", "ConflictResolved", "nothing else claims its resource; deploying")
        )
    if is_ready and not was_ready:
        events.append(Event("Normal", "Ready", message))
    elif not is_ready and not same and reason in (CONFLICT_REASON, "ReconcileError"):
        events.append(Event("Warning", reason, message))
    elif (not is_ready and was_ready) or (reason == "NoMatchingNodes" and not same):
        events.append(Event("Warning", "NotReady", f"{reason}: {message}"))
    return events


def fault_events(device: Device, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """One Event per fault whose window opened or closed, aggregated over its nodes."""
    events = []
    for t in fault_transitions(device, old, new.get("faults") or ()):
        kind = f" ({t.type})" if t.type else ""
        if t.active:
            where = "1 node" if t.nodes == 1 else f"{t.nodes} nodes"
            events.append(
                Event("Warning", "FaultActive", f"fault {t.name}{kind} is active on {where}")
            )
        else:
            events.append(
                Event("Normal", "FaultCleared", f"fault {t.name}{kind} is no longer active")
            )
    return events
