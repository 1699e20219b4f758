"""The preferred-allocation ranking as first written: whole sorts, easy to check by eye.

simdev.plugin.policies ranks the same way but prepares per snapshot and stops at the
devices it needs; tests compare the two on many requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from simdev.plugin.devices import Device, Snapshot
from simdev.plugin.policies import AllocationPolicy, SharingPolicy

NodeKey = int | None


def _node_order(node: NodeKey) -> int:
    return -1 if node is None else node


def _device_order(d: Device) -> tuple[int, int]:
    return (d.index, d.replica or 0)


def reference_preferred_allocation(
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
    picked = set(chosen)
    healthy: list[Device] = []
    unhealthy: list[Device] = []
    unknown: list[str] = []
    for device_id in dict.fromkeys(available):
        if device_id in picked:
            continue
        d = snapshot.get(device_id)
        if d is None:
            unknown.append(device_id)
        else:
            (healthy if d.healthy else unhealthy).append(d)
    held = [d for i in chosen if (d := snapshot.get(i)) is not None]
    need = size - len(chosen)
    ranked = rank_healthy(healthy, held, need, policy, sharing)
    rest = ranked + [d.id for d in sorted(unhealthy, key=_device_order)] + unknown
    return chosen + rest[:need]


def rank_healthy(
    devices: Iterable[Device],
    held: Iterable[Device],
    need: int,
    policy: AllocationPolicy,
    sharing: SharingPolicy,
) -> list[str]:
    """Every healthy candidate, best first; held are what the container already gets."""
    held = list(held)
    held_per_device = Counter(d.index for d in held)
    held_per_node: Counter[NodeKey] = Counter(d.numa_node for d in held)
    groups: dict[NodeKey, list[Device]] = {}
    for d in devices:
        groups.setdefault(d.numa_node, []).append(d)
    ordered = {node: by_sharing(group, held_per_device, sharing) for node, group in groups.items()}
    if policy == AllocationPolicy.SPREAD:
        return _interleave(ordered, held_per_node)
    if policy == AllocationPolicy.NUMA_ALIGNED:
        nodes = _fewest_nodes(ordered, held_per_node, need)
    else:  # Packed, and None should the kubelet ask anyway
        nodes = sorted(ordered, key=lambda n: (held_per_node[n] == 0, _node_order(n)))
    return [i for n in nodes for i in ordered[n]]


def by_sharing(
    devices: Iterable[Device], held_per_device: Mapping[int, int], sharing: SharingPolicy
) -> list[str]:
    """One NUMA node's candidates in the order the sharing policy wants them.

    Without sharing every device has one entry, and both policies give index order.
    """
    replicas: dict[int, list[Device]] = {}
    for d in sorted(devices, key=_device_order):
        replicas.setdefault(d.index, []).append(d)
    if sharing == SharingPolicy.PACKED:
        # Fill one device before the next, starting with those the container already holds.
        order = sorted(replicas, key=lambda i: (held_per_device.get(i, 0) == 0, i))
        return [d.id for i in order for d in replicas[i]]
    # Spread: one replica of each device per round. Replicas the container already holds
    # count as taken rounds; in a round, devices with more free replicas (less used by
    # other containers) come first.
    keyed = [
        ((held_per_device.get(i, 0) + k, -len(free), i), d.id)
        for i, free in replicas.items()
        for k, d in enumerate(free)
    ]
    return [device_id for _, device_id in sorted(keyed)]


def _interleave(ordered: Mapping[NodeKey, list[str]], held: Mapping[NodeKey, int]) -> list[str]:
    """Round-robin over the NUMA nodes, counting what the container holds on each."""
    keyed = [
        ((held.get(n, 0) + k, _node_order(n)), device_id)
        for n, ids in ordered.items()
        for k, device_id in enumerate(ids)
    ]
    return [device_id for _, device_id in sorted(keyed)]


def _fewest_nodes(
    ordered: Mapping[NodeKey, list[str]], held: Mapping[NodeKey, int], need: int
) -> list[NodeKey]:
    """NUMA nodes in the order that covers need from as few of them as possible.

    The nodes the container already uses come first. Then, while no single node can hold
    what is left, the node with the most free devices; finally the node that holds the rest
    with the fewest to spare (best fit, which keeps larger nodes whole for later requests).
    Picking the largest until one fits uses the minimal number of nodes.
    """
    free = {n: len(ids) for n, ids in ordered.items()}
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
