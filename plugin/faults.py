"""Declared faults: parsing, schedules and device selection, as pure functions.

A fault comes from ``spec.faults`` of a SimulatedDevice (or the plugin's config file) with
the same camelCase keys. Nothing here reads a clock or the node: callers pass ``now`` and
the node's name and labels, so the plugin and the operator evaluate the same fault the same
way, and tests can run any schedule in microseconds. The operator imports this module too,
which is why it imports nothing beyond the standard library.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

UNHEALTHY = "Unhealthy"
ALLOCATE_ERROR = "AllocateError"
ALLOCATE_DELAY = "AllocateDelay"
PLUGIN_DOWN = "PluginDown"
TYPES = (UNHEALTHY, ALLOCATE_ERROR, ALLOCATE_DELAY, PLUGIN_DOWN)

# gRPC status codes a fault may answer Allocate with (OK would not be a fault).
GRPC_CODES = (
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
MAX_FAULTS = 32

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class FaultError(ValueError):
    """A fault definition is invalid; the message names the fault and the field."""


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``500ms``, ``30s`` or ``1m30s``."""
    if not isinstance(text, str) or not _DURATION.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration such as 500ms, 30s or 1m30s")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


@dataclass(frozen=True)
class Schedule:
    start_after: float = 0.0
    duration: float | None = None
    every: float | None = None

    def active(self, elapsed: float) -> bool:
        """Whether the fault is on, elapsed seconds after its clock started."""
        t = elapsed - self.start_after
        if t < 0:
            return False
        if self.duration is None:
            return True
        if self.every is None:
            return t < self.duration
        return t % self.every < self.duration

    def next_change(self, elapsed: float) -> float | None:
        """Elapsed time of the next switch on or off after elapsed, or None if it never does."""
        t = elapsed - self.start_after
        if t < 0:
            return self.start_after
        if self.duration is None:
            return None
        if self.every is None:
            return self.start_after + self.duration if t < self.duration else None
        cycle_start = elapsed - t % self.every
        phase = t % self.every
        return cycle_start + (self.duration if phase < self.duration else self.every)


@dataclass(frozen=True)
class DeviceChoice:
    """Which devices an Unhealthy fault hits: indices, a count, a percent, or (all None) all."""

    indices: tuple[int, ...] | None = None
    count: int | None = None
    percent: int | None = None


@dataclass(frozen=True)
class Fault:
    name: str
    type: str
    devices: DeviceChoice = DeviceChoice()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    schedule: Schedule = Schedule()
    seed: int = 0
    probability: float = 1.0
    code: str = "INTERNAL"
    delay: float = 0.0
    # A digest of the definition: an edited fault is a new fault whose clock starts anew.
    definition: str = ""

    def matches(self, node_labels: Mapping[str, str]) -> bool:
        return all(node_labels.get(k) == v for k, v in self.node_selector.items())

    def unhealthy_indices(self, node_name: str, number_devices: int) -> frozenset[int]:
        """The device indices this fault marks Unhealthy on one node.

        count and percent pick devices by a hash of seed, node name and index: stable for a
        node across restarts and resizes, different from node to node, repeatable by seed.
        """
        choice = self.devices
        if choice.indices is not None:
            return frozenset(i for i in choice.indices if i < number_devices)
        if choice.count is None and choice.percent is None:
            return frozenset(range(number_devices))
        wanted = (
            choice.count
            if choice.count is not None
            else math.floor(number_devices * (choice.percent or 0) / 100)
        )

        # hashlib loads OpenSSL's libcrypto (3 MiB resident): only when faults pick devices.
        import hashlib

        def rank(index: int) -> bytes:
            return hashlib.sha256(f"{self.seed}/{node_name}/{index}".encode()).digest()

        return frozenset(sorted(range(number_devices), key=rank)[: min(wanted, number_devices)])


def definition_digest(raw: Mapping[str, Any]) -> str:
    """A short, stable digest of one fault's definition (key order does not matter)."""
    import hashlib  # only with faults declared, as above

    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _duration_field(raw: Mapping[str, Any], key: str, where: str) -> float | None:
    if raw.get(key) is None:
        return None
    try:
        return parse_duration(raw[key])
    except ValueError as err:
        raise FaultError(f"{where}.{key}: {err}") from None


_ONLY_FOR = {"devices": UNHEALTHY, "probability": ALLOCATE_ERROR, "code": ALLOCATE_ERROR}


def parse_fault(raw: Any, position: int = 0) -> Fault:
    """One fault from its camelCase mapping; raises FaultError naming the field."""
    where = f"faults[{position}]"
    if not isinstance(raw, Mapping):
        raise FaultError(f"{where} must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name):
        raise FaultError(f"{where}.name must be a DNS label, got {name!r}")
    where = f"faults[{position}] ({name})"
    kind = raw.get("type")
    if kind not in TYPES:
        raise FaultError(f"{where}.type must be one of {', '.join(TYPES)}, got {kind!r}")
    for key, owner in _ONLY_FOR.items():
        if raw.get(key) is not None and kind != owner:
            raise FaultError(f"{where}.{key} may only be set on an {owner} fault")
    if kind != ALLOCATE_DELAY and raw.get("delay") is not None:
        raise FaultError(f"{where}.delay may only be set on an {ALLOCATE_DELAY} fault")
    delay = _duration_field(raw, "delay", where)
    if kind == ALLOCATE_DELAY and delay is None:
        raise FaultError(f"{where}.delay is required for an {ALLOCATE_DELAY} fault")

    schedule_raw = raw.get("schedule") or {}
    if not isinstance(schedule_raw, Mapping):
        raise FaultError(f"{where}.schedule must be a mapping")
    swhere = f"{where}.schedule"
    schedule = Schedule(
        start_after=_duration_field(schedule_raw, "startAfter", swhere) or 0.0,
        duration=_duration_field(schedule_raw, "duration", swhere),
        every=_duration_field(schedule_raw, "every", swhere),
    )
    if schedule.every is not None and (
        schedule.duration is None or schedule.every <= schedule.duration
    ):
        raise FaultError(f"{swhere}.every must be longer than {swhere}.duration")

    probability = raw.get("probability", 1.0)
    if not isinstance(probability, int | float) or not 0.0 <= float(probability) <= 1.0:
        raise FaultError(f"{where}.probability must be a number in [0, 1], got {probability!r}")
    code = raw.get("code") or "INTERNAL"
    if code not in GRPC_CODES:
        raise FaultError(f"{where}.code must be a gRPC status code name other than OK")
    selector = raw.get("nodeSelector") or {}
    if not isinstance(selector, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in selector.items()
    ):
        raise FaultError(f"{where}.nodeSelector must map label names to strings")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise FaultError(f"{where}.seed must be an integer")
    return Fault(
        name=name,
        type=kind,
        devices=_device_choice(raw.get("devices"), where),
        node_selector=dict(selector),
        schedule=schedule,
        seed=seed,
        probability=float(probability),
        code=code,
        delay=delay or 0.0,
        definition=definition_digest(raw),
    )


def _device_choice(raw: Any, where: str) -> DeviceChoice:
    if raw is None:
        return DeviceChoice()
    if not isinstance(raw, Mapping):
        raise FaultError(f"{where}.devices must be a mapping")
    given = [k for k in ("indices", "count", "percent") if raw.get(k) is not None]
    if len(given) != 1:
        raise FaultError(f"{where}.devices must set exactly one of indices, count or percent")
    key = given[0]
    value = raw[key]
    if key == "indices":
        if not isinstance(value, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value
        ):
            raise FaultError(f"{where}.devices.indices must be non-negative integers")
        return DeviceChoice(indices=tuple(value))
    limit = 100 if key == "percent" else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FaultError(f"{where}.devices.{key} must be a non-negative integer")
    if limit is not None and value > limit:
        raise FaultError(f"{where}.devices.percent must be at most 100")
    return DeviceChoice(count=value) if key == "count" else DeviceChoice(percent=value)


def parse_faults(raw: Any) -> tuple[Fault, ...]:
    """Every fault of a list; names must be unique."""
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise FaultError("faults must be a list")
    if len(raw) > MAX_FAULTS:
        raise FaultError(f"faults may hold at most {MAX_FAULTS} entries")
    faults = tuple(parse_fault(item, n) for n, item in enumerate(raw))
    seen: set[str] = set()
    for f in faults:
        if f.name in seen:
            raise FaultError(f"faults: the name {f.name!r} is used twice")
        seen.add(f.name)
    return faults


@dataclass(frozen=True)
class Clock:
    """When each fault's clock started (seconds since the epoch), by name and definition."""

    anchors: Mapping[str, tuple[str, float]] = field(default_factory=dict)

    def started(self, fault: Fault) -> float | None:
        anchor = self.anchors.get(fault.name)
        return anchor[1] if anchor and anchor[0] == fault.definition else None

    def advance(self, faults: Sequence[Fault], now: float, known: Clock | None = None) -> Clock:
        """Anchors for the current faults: kept when the definition is unchanged, else now.

        known supplies anchors someone else recorded (the operator's status), which win
        over our own so that every node runs the same schedule.
        """
        anchors: dict[str, tuple[str, float]] = {}
        for f in faults:
            started = (known.started(f) if known else None) or self.started(f)
            anchors[f.name] = (f.definition, now if started is None else started)
        return Clock(anchors)


def recorded_clock(status: Mapping[str, Any]) -> Clock:
    """The fault clocks a SimulatedDevice's status records (status.faults[].since)."""
    anchors: dict[str, tuple[str, float]] = {}
    for entry in status.get("faults") or ():
        try:
            since = datetime.fromisoformat(str(entry["since"])).timestamp()
            anchors[str(entry["name"])] = (str(entry["definition"]), since)
        except (KeyError, TypeError, ValueError):
            continue  # an entry not fully written: the fault gets a fresh clock
    return Clock(anchors)


def to_time(epoch: float) -> str:
    """RFC 3339 in UTC with milliseconds, the form status.faults[].since takes."""
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def is_active(fault: Fault, clock: Clock, now: float) -> bool:
    started = clock.started(fault)
    return started is not None and fault.schedule.active(now - started)


def next_change(faults: Sequence[Fault], clock: Clock, now: float) -> float | None:
    """The soonest moment (epoch seconds) after now at which any fault switches."""
    soonest: float | None = None
    for f in faults:
        started = clock.started(f)
        if started is None:
            continue
        change = f.schedule.next_change(now - started)
        if change is not None:
            at = started + change
            soonest = at if soonest is None else min(soonest, at)
    return soonest
