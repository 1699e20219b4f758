"""Node pools: per-node overrides of the device count, topology and sharing, as pure functions.

``spec.nodePools`` lists pools in order; a node takes the settings of the first pool whose
``nodeSelector`` matches its labels, and the top-level spec's when none does. A pool keeps
its overrides flat, under the plugin's setting keys (``numberDevices``,
``topology.numaNodes``, ``sharing.replicas``, ...), so applying one is a plain update: what
the pool leaves out stays the top level's, key by key, inside a group too. The operator
imports this module (its per-node expectations follow the same rule), so it imports
nothing beyond the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_POOLS = 32
POOLS_KEY = "nodePools"

# What a pool may override, by flat key, and the type each takes.
SETTINGS: Mapping[str, type] = {
    "numberDevices": int,
    "topology.numaNodes": int,
    "sharing.replicas": int,
    "sharing.policy": str,
    "sharing.failRequestsGreaterThanOne": bool,
}
GROUPS = ("topology", "sharing")
_KINDS = {int: "an integer", str: "a string", bool: "a boolean"}

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class PoolError(ValueError):
    """A pool definition is invalid; the message names the pool and the field."""


@dataclass(frozen=True)
class NodePool:
    name: str
    node_selector: Mapping[str, str] = field(default_factory=dict)
    # The overrides, by flat setting key; a key left out is the top level's.
    settings: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, node_labels: Mapping[str, str]) -> bool:
        return all(node_labels.get(k) == v for k, v in self.node_selector.items())


def pool_for(pools: Sequence[NodePool], node_labels: Mapping[str, str]) -> NodePool | None:
    """The first pool that selects a node with these labels; None: the top level."""
    return next((p for p in pools if p.matches(node_labels)), None)


def overlay(settings: Mapping[str, Any], pool: NodePool | None) -> dict[str, Any]:
    """Flat settings of the top level with a pool's overrides on top."""
    return {**settings, **(pool.settings if pool is not None else {})}


def parse_pool(raw: Any, position: int = 0) -> NodePool:
    """One pool from its camelCase mapping; raises PoolError naming the field."""
    where = f"{POOLS_KEY}[{position}]"
    if not isinstance(raw, Mapping):
        raise PoolError(f"{where} must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name):
        raise PoolError(f"{where}.name must be a DNS label, got {name!r}")
    where = f"{where} ({name})"
    selector = raw.get("nodeSelector")
    if not isinstance(selector, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in selector.items()
    ):
        raise PoolError(f"{where}.nodeSelector is required and must map label names to strings")
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("name", "nodeSelector") or value is None:
            continue
        if key not in GROUPS:
            settings[key] = value
        elif isinstance(value, Mapping):
            settings.update({f"{key}.{sub}": v for sub, v in value.items() if v is not None})
        else:
            raise PoolError(f"{where}.{key} must be a mapping")
    for key, value in settings.items():
        kind = SETTINGS.get(key)
        if kind is None:
            known = ", ".join(["name", "nodeSelector", *SETTINGS])
            raise PoolError(f"{where}: unknown field {key} (known fields: {known})")
        # bool is an int subclass: a count must not be a boolean.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise PoolError(f"{where}.{key} must be {_KINDS[kind]}, got {value!r}")
    return NodePool(name=name, node_selector=dict(selector), settings=settings)


def parse_pools(raw: Any) -> tuple[NodePool, ...]:
    """Every pool of a list, in order; names must be unique."""
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise PoolError(f"{POOLS_KEY} must be a list")
    if len(raw) > MAX_POOLS:
        raise PoolError(f"{POOLS_KEY} may hold at most {MAX_POOLS} entries")
    pools = tuple(parse_pool(item, n) for n, item in enumerate(raw))
    seen: set[str] = set()
    for p in pools:
        if p.name in seen:
            raise PoolError(f"{POOLS_KEY}: the name {p.name!r} is used twice")
        seen.add(p.name)
    return pools
