"""Which devices to prefer for an allocation: the allocation and sharing policies, pure.

The kubelet asks (GetPreferredAllocation) for ``size`` devices out of ``available``, with
``must_include`` among them. The answer starts with the must-include IDs; the rest is a
ranking of the other available IDs:

1. healthy devices we know, grouped by NUMA node (a single group without topology). Within
   a group the sharing policy orders the replicas; the allocation policy orders the groups
   (Packed, NUMAAligned) or interleaves them (Spread);
2. unhealthy devices we know, lowest index first;
3. IDs we do not know, in the kubelet's order, because the kubelet may know better than a
   restarted plugin.

What depends only on the device set (grouping by node and device, index order) is prepared
once per snapshot; a request then filters those lists and ranks only as many candidates as
it needs, so it costs O(n) in the devices with small constants. The usual request offers
every healthy device and holds none: its answer depends on the snapshot alone and is kept
with it, so a repeat costs one set of the offered IDs.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress

from simdev.plugin.devices import Device, Snapshot


class AllocationPolicy(enum.StrEnum):
    PACKED = "Packed"
    SPREAD = "Spread"
    NUMA_ALIGNED = "NUMAAligned"
    # The plugin does not offer preferred allocations; the kubelet chooses alone.
    NONE = "None"


class SharingPolicy(enum.StrEnum):
    SPREAD = "Spread"
    PACKED = "Packed"


# NUMA node key of a group; None (no topology) sorts first, though it never meets a number.
NodeKey = int | None


def _node_order(node: NodeKey) -> int:
    return -1 if node is None else node


def _device_order(d: Device) -> tuple[int, int]:
    return (d.index, d.replica or 0)


def preferred_allocation(
    snapshot: Snapshot,
    available: Sequence[str],
    must_include: Sequence[str],
    size: int,
    policy: AllocationPolicy = AllocationPolicy.PACKED,
    sharing: SharingPolicy = SharingPolicy.SPREAD,
) -> list[str]:
    """The IDs we would pick: must_include first, then the best of the rest, size in all.

    Fewer when fewer are available; all of must_include even when it holds more than size.
    """
    chosen = list(dict.fromkeys(must_include))
    if len(chosen) >= size:
        return chosen
    # One set of the offered IDs, built in C: reading 10,000 IDs out of the request is
    # most of the cost, so they are read once.
    offered = set(available)
    offered.difference_update(chosen)
    need = size - len(chosen)
    inventory = _inventory(snapshot)
    if not chosen and inventory.healthy <= offered:
        # The usual question, every healthy device offered and none held: its answer
        # depends on the snapshot alone, and is kept with it.
        best = inventory.ranking(policy, sharing, need)
    else:
        held = [d for i in chosen if (d := snapshot.get(i)) is not None]
        best = rank_healthy(inventory, offered, held, need, policy, sharing)
    if len(best) < need:
        unhealthy = [d for i in offered if (d := snapshot.get(i)) is not None and not d.healthy]
        best += [d.id for d in sorted(unhealthy, key=_device_order)]
    if len(best) < need:
        unknown = dict.fromkeys(i for i in available if i in offered and snapshot.get(i) is None)
        best += unknown
    return chosen + best[:need]


# Rankings kept per snapshot (one per policy, sharing policy and size asked); the kubelet
# asks few sizes, and this bounds them anyway.
MAX_RANKINGS = 64


@dataclass(frozen=True)
class Inventory:
    """A snapshot's devices arranged for ranking; built once per snapshot.

    A preferred allocation wants the first few of a ranking of up to 10,000 devices. The
    parts of that ranking that depend only on the snapshot are done here, so a request
    filters prepared lists instead of sorting every device again. Devices are told apart
    by (index, replica), as make_devices builds them.
    """

    # NUMA node -> its healthy IDs in index, then replica order.
    ids: Mapping[NodeKey, list[str]]
    # NUMA node -> where each physical device's entries are in ids, and its index.
    devices: Mapping[NodeKey, list[tuple[slice, int]]]
    # Whether an index has several entries (replicas); if not, a node ranks in index order.
    shared: bool
    # Every healthy ID, to tell at once whether a request offers them all.
    healthy: frozenset[str]
    # (policy, sharing, need) -> the ranking of all healthy devices, none held.
    rankings: dict[tuple[AllocationPolicy, SharingPolicy, int], list[str]] = field(
        default_factory=dict, compare=False
    )

    def ranking(self, policy: AllocationPolicy, sharing: SharingPolicy, need: int) -> list[str]:
        """The best need of all healthy devices with none held, kept for the next request."""
        key = (policy, sharing, need)
        found = self.rankings.get(key)
        if found is None:
            found = rank_healthy(self, self.healthy, (), need, policy, sharing)
            if len(self.rankings) >= MAX_RANKINGS:
                self.rankings.clear()
            # Concurrent requests may both compute it; either result is the same.
            self.rankings[key] = found
        return list(found)


def inventory_of(snapshot: Snapshot) -> Inventory:
    ids: dict[NodeKey, list[str]] = {}
    indexes: dict[NodeKey, list[int]] = {}
    for d in sorted(snapshot.devices.values(), key=_device_order):
        if d.healthy:
            ids.setdefault(d.numa_node, []).append(d.id)
            indexes.setdefault(d.numa_node, []).append(d.index)
    devices: dict[NodeKey, list[tuple[slice, int]]] = {}
    for node, node_indexes in indexes.items():
        runs = devices[node] = []
        start = 0
        for end in range(1, len(node_indexes) + 1):
            if end == len(node_indexes) or node_indexes[end] != node_indexes[start]:
                runs.append((slice(start, end), node_indexes[start]))
                start = end
    shared = len({d.index for d in snapshot.devices.values()}) != len(snapshot.devices)
    healthy = frozenset(i for node_ids in ids.values() for i in node_ids)
    return Inventory(ids=ids, devices=devices, shared=shared, healthy=healthy)


# The latest snapshot's inventory; snapshots change rarely and only the latest is asked.
_latest: tuple[Snapshot, Inventory] | None = None


def _inventory(snapshot: Snapshot) -> Inventory:
    global _latest
    latest = _latest
    if latest is not None and latest[0] is snapshot:
        return latest[1]
    inventory = inventory_of(snapshot)
    _latest = (snapshot, inventory)
    return inventory


def rank_healthy(
    inventory: Inventory,
    offered: Container[str],
    held: Iterable[Device],
    need: int,
    policy: AllocationPolicy,
    sharing: SharingPolicy,
) -> list[str]:
    """The best need healthy candidates among offered, best first (fewer if short).

    held are what the container already gets. Each NUMA node's candidates are ordered by the
    sharing policy; the allocation policy orders the nodes (Packed, NUMAAligned) or
    interleaves them (Spread). Only a node's first need candidates can make the answer, so
    no more are ranked; NUMAAligned also counts every candidate per node.
    """
    if need <= 0:
        return []
    held = list(held)
    held_per_device = Counter(d.index for d in held)
    held_per_node: Counter[NodeKey] = Counter(d.numa_node for d in held)
    ordered: dict[NodeKey, list[str]] = {}
    free: dict[NodeKey, int] = {}
    # Membership through the bound method, so that filter and map loop in C.
    is_offered = offered.__contains__
    for node, node_ids in inventory.ids.items():
        if not inventory.shared:
            # One entry per index, none held by the container: index order is the order.
            ids = list(filter(is_offered, node_ids))
            if ids:
                ordered[node], free[node] = ids[:need], len(ids)
            continue
        offers = list(map(is_offered, node_ids))
        count = offers.count(True)
        if count:
            free[node] = count
            replicas = Replicas(node_ids, offers, inventory.devices[node])
            ordered[node] = by_sharing(replicas, held_per_device, sharing, need)
    if policy == AllocationPolicy.SPREAD:
        return _interleave(ordered, held_per_node)[:need]
    if policy == AllocationPolicy.NUMA_ALIGNED:
        nodes = _fewest_nodes(free, held_per_node, need)
    else:  # Packed, and None should the kubelet ask anyway
        nodes = sorted(ordered, key=lambda n: (held_per_node[n] == 0, _node_order(n)))
    return [i for n in nodes for i in ordered[n]][:need]


@dataclass(frozen=True)
class Replicas:
    """One NUMA node's healthy entries, which of them are offered, and their devices."""

    ids: list[str]
    offered: list[bool]
    devices: list[tuple[slice, int]]  # (entries in ids, index), in index order

    def free(self, device: int) -> list[str]:
        """The offered replicas of the device-th physical device, in replica order."""
        where = self.devices[device][0]
        return list(compress(self.ids[where], self.offered[where]))


def by_sharing(
    replicas: Replicas, held_per_device: Mapping[int, int], sharing: SharingPolicy, need: int
) -> list[str]:
    """The first need of one NUMA node's offered replicas, in the sharing policy's order.

    Per device only numbers are kept (ints, which the garbage collector does not track):
    a list of replicas is made only for the devices that make the answer.
    """
    indexes = [index for _, index in replicas.devices]
    if sharing == SharingPolicy.PACKED:
        # Fill one device before the next, starting with those the container already holds.
        order = [n for n, i in enumerate(indexes) if held_per_device.get(i, 0)]
        order += [n for n, i in enumerate(indexes) if not held_per_device.get(i, 0)]
        packed: list[str] = []
        for n in order:
            packed += replicas.free(n)
            if len(packed) >= need:
                break
        return packed[:need]
    # Spread: one replica of each device per round. Replicas the container already holds
    # count as taken rounds; in a round, devices with more free replicas (less used by
    # other containers) come first, then lower indexes.
    counts = list(map(sum, map(replicas.offered.__getitem__, (w for w, _ in replicas.devices))))
    taken = [held_per_device.get(i, 0) for i in indexes]
    # Stable even reversed: equal counts keep index order. Devices with none come last and
    # are skipped in every round.
    turns = sorted(range(len(counts)), key=counts.__getitem__, reverse=True)
    last_round = max(t + c for t, c in zip(taken, counts, strict=True))
    first_round = min(t for t, c in zip(taken, counts, strict=True) if c)
    free: dict[int, list[str]] = {}
    picked: list[str] = []
    for round_ in range(first_round, last_round):
        for n in turns:
            k = round_ - taken[n]
            if 0 <= k < counts[n]:
                if n not in free:
                    free[n] = replicas.free(n)
                picked.append(free[n][k])
                if len(picked) == need:
                    return picked
    return picked


def _interleave(ordered: Mapping[NodeKey, list[str]], held: Mapping[NodeKey, int]) -> list[str]:
    """Round-robin over the NUMA nodes, counting what the container holds on each."""
    keyed = [
        ((held.get(n, 0) + k, _node_order(n)), device_id)
        for n, ids in ordered.items()
        for k, device_id in enumerate(ids)
    ]
    return [device_id for _, device_id in sorted(keyed)]


def _fewest_nodes(
    free: Mapping[NodeKey, int], held: Mapping[NodeKey, int], need: int
) -> list[NodeKey]:
    """NUMA nodes in the order that covers need from as few of them as possible.

    free is the number of candidates per node. The nodes the container already uses come
    first. Then, while no single node can hold what is left, the node with the most free
    devices; finally the node that holds the rest with the fewest to spare (best fit, which
    keeps larger nodes whole for later requests). Picking the largest until one fits uses
    the minimal number of nodes.
    """
    first = sorted((n for n in free if held.get(n, 0)), key=_node_order)
    rest = sorted((n for n in free if not held.get(n, 0)), key=_node_order)
    need -= sum(free[n] for n in first)
    picked: list[NodeKey] = []
    while need > 0 and rest:
        fitting = [n for n in rest if free[n] >= need]
        if fitting:
            node = min(fitting, key=lambda n: (free[n], _node_order(n)))
        else:
            node = max(rest, key=lambda n: (free[n], -_node_order(n)))
        picked.append(node)
        rest.remove(node)
        need -= free[node]
    return first + picked + rest
