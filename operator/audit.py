"""Keeps decisions off stale index entries: a periodic check against full lists from the API.

Kopf drops an index entry only on a DELETED event. When a watch is re-established after a
gap, objects deleted during the gap never send one, so their entries stay for good: a false
Conflict, or inflated totals. An audit takes a snapshot of the indexes first and lists the
API afterwards, so anything in the snapshot existed before the list began; what the list
lacks was deleted. Those entries (by name and UID, so a re-created object is not hidden) are
left out of every later view of the world.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from simdev.operator.world import World

Identity = tuple[str, str]  # (name, uid); namespaced objects are named "namespace/name"


@dataclass(frozen=True)
class Listed:
    """What one audit's lists returned, by kind."""

    devices: frozenset[Identity]
    nodes: frozenset[Identity]
    pods: frozenset[Identity]


@dataclass(frozen=True)
class Stale:
    devices: frozenset[Identity] = frozenset()
    nodes: frozenset[Identity] = frozenset()
    pods: frozenset[Identity] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.devices or self.nodes or self.pods)

    @classmethod
    def of(cls, snapshot: World, listed: Listed) -> Stale:
        def gone(indexed: Iterable[Identity], present: frozenset[Identity]) -> frozenset[Identity]:
            return frozenset(i for i in indexed if i not in present)

        return cls(
            devices=gone(((d.name, d.uid) for d in snapshot.devices.values()), listed.devices),
            nodes=gone(((n.name, n.uid) for n in snapshot.nodes), listed.nodes),
            pods=gone(((p.ref, p.uid) for p in snapshot.pods), listed.pods),
        )

    def prune(self, world: World) -> World:
        """The world without the stale entries."""
        if not self:
            return world
        return dataclasses.replace(
            world,
            devices={k: d for k, d in world.devices.items() if (d.name, d.uid) not in self.devices},
            nodes=tuple(n for n in world.nodes if (n.name, n.uid) not in self.nodes),
            pods=tuple(p for p in world.pods if (p.ref, p.uid) not in self.pods),
        )


@dataclass
class Audit:
    """The latest audit's verdict; replaced whole by each audit."""

    stale: Stale = field(default_factory=Stale)

    def record(self, snapshot: World, listed: Listed) -> Stale:
        self.stale = Stale.of(snapshot, listed)
        return self.stale

    def view(self, world: World) -> World:
        return self.stale.prune(world)
