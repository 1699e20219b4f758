"""Preferred allocations: every allocation policy, sharing, and their invariants (pure)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_reference import reference_preferred_allocation

from simdev.plugin.devices import Device, DeviceModel, Snapshot, make_devices
from simdev.plugin.policies import AllocationPolicy, SharingPolicy, preferred_allocation

PACKED = AllocationPolicy.PACKED
SPREAD = AllocationPolicy.SPREAD
ALIGNED = AllocationPolicy.NUMA_ALIGNED
NONE = AllocationPolicy.NONE


def snapshot(
    count: int = 4,
    unhealthy: Sequence[int] = (),
    numa_nodes: int | None = None,
    replicas: int = 1,
) -> Snapshot:
    broken = {i: "fault x" for i in unhealthy}
    devices = make_devices("sd", "n", count, broken, numa_nodes=numa_nodes, replicas=replicas)
    return DeviceModel(devices).snapshot()


def ids(*indexes: int) -> list[str]:
    return [f"sd-n-{i}" for i in indexes]


def reps(*pairs: tuple[int, int]) -> list[str]:
    return [f"sd-n-{i}::{r}" for i, r in pairs]


def every(snap: Snapshot) -> list[str]:
    return list(snap.devices)


def prefer(
    snap: Snapshot,
    size: int,
    must: Sequence[str] = (),
    policy: AllocationPolicy = PACKED,
    sharing: SharingPolicy = SharingPolicy.SPREAD,
    available: Sequence[str] | None = None,
) -> list[str]:
    listed = every(snap) if available is None else list(available)
    return preferred_allocation(snap, listed, list(must), size, policy, sharing)


# Packed, the default: today's behaviour without topology or sharing.


def test_packed_takes_lowest_indexes() -> None:
    assert preferred_allocation(snapshot(), ids(3, 1, 2, 0), [], 2) == ids(0, 1)


def test_must_include_comes_first() -> None:
    assert preferred_allocation(snapshot(), ids(0, 1, 2, 3), ids(3), 2) == ids(3, 0)
    # More must-include devices than asked for: they are all kept.
    assert preferred_allocation(snapshot(), ids(0, 1, 2), ids(2, 1), 1) == ids(2, 1)


def test_unhealthy_come_last() -> None:
    snap = snapshot(unhealthy=(0, 1))
    assert preferred_allocation(snap, ids(0, 1, 2, 3), [], 3) == ids(2, 3, 0)


def test_unknown_ids_come_last_in_kubelet_order() -> None:
    got = preferred_allocation(snapshot(2), ["x-9", "sd-n-1", "x-1"], [], 3)
    assert got == ["sd-n-1", "x-9", "x-1"]


def test_returns_what_exists_when_short() -> None:
    assert preferred_allocation(snapshot(), ids(2), [], 3) == ids(2)


def test_packed_keeps_to_the_numa_node_of_must_include() -> None:
    devices = [Device(i, f"sd-n-{i}", numa_node=i % 2) for i in range(6)]
    snap = DeviceModel(devices).snapshot()
    # must-include device 3 is on NUMA node 1, so 1 and 5 beat the lower 0, 2, 4.
    assert preferred_allocation(snap, ids(0, 1, 2, 3, 4, 5), ids(3), 3) == ids(3, 1, 5)


def test_packed_fills_numa_nodes_one_after_another() -> None:
    snap = snapshot(8, numa_nodes=2)  # 0-3 on node 0, 4-7 on node 1
    assert prefer(snap, 3) == ids(0, 1, 2)
    assert prefer(snap, 6) == ids(0, 1, 2, 3, 4, 5)
    # Only device 3 free on node 0: Packed uses it up before breaking into node 1.
    assert prefer(snap, 3, available=ids(3, 4, 5, 6, 7)) == ids(3, 4, 5)


def test_none_answers_like_packed_if_asked() -> None:
    snap = snapshot(8, numa_nodes=2)
    for size in (1, 3, 5):
        assert prefer(snap, size, policy=NONE) == prefer(snap, size, policy=PACKED)


# Spread: round-robin over NUMA nodes.


def test_spread_alternates_numa_nodes() -> None:
    snap = snapshot(8, numa_nodes=2)
    assert prefer(snap, 4, policy=SPREAD) == ids(0, 4, 1, 5)


def test_spread_counts_what_must_include_holds() -> None:
    snap = snapshot(9, numa_nodes=3)  # 0-2, 3-5, 6-8
    # Node 0 already has one (device 1): nodes 1 and 2 get the next turns.
    assert prefer(snap, 4, must=ids(1), policy=SPREAD) == ids(1, 3, 6, 0)


def test_spread_skips_full_nodes() -> None:
    snap = snapshot(8, numa_nodes=2)
    assert prefer(snap, 3, policy=SPREAD, available=ids(0, 1, 2, 3)) == ids(0, 1, 2)


def test_spread_without_topology_is_index_order() -> None:
    assert prefer(snapshot(4), 2, policy=SPREAD) == ids(0, 1)


# NUMAAligned: one NUMA node when the request fits, else as few as possible.


def test_aligned_takes_one_whole_node() -> None:
    snap = snapshot(8, numa_nodes=2)
    assert prefer(snap, 4, policy=ALIGNED) == ids(0, 1, 2, 3)
    # Node 0 has only device 3 left: the request moves to node 1 as a whole.
    assert prefer(snap, 4, policy=ALIGNED, available=ids(3, 4, 5, 6, 7)) == ids(4, 5, 6, 7)


def test_aligned_prefers_the_tightest_node_that_fits() -> None:
    snap = snapshot(12, numa_nodes=3)  # 0-3, 4-7, 8-11
    available = ids(0, 1, 2, 3, 6, 7, 9, 10, 11)  # free: 4, 2, 3
    assert prefer(snap, 2, policy=ALIGNED, available=available) == ids(6, 7)
    assert prefer(snap, 3, policy=ALIGNED, available=available) == ids(9, 10, 11)


def test_aligned_larger_than_a_node_uses_the_fewest_nodes() -> None:
    snap = snapshot(12, numa_nodes=3)
    available = ids(0, 4, 5, 6, 7, 8, 9, 10)  # free: 1, 4, 3
    # 6 needs two nodes: the largest (node 1), then the one that holds the rest (node 2).
    assert prefer(snap, 6, policy=ALIGNED, available=available) == ids(4, 5, 6, 7, 8, 9)
    # Everything: all three nodes.
    assert sorted(prefer(snap, 8, policy=ALIGNED, available=available)) == sorted(available)


def test_aligned_starts_on_the_node_of_must_include() -> None:
    snap = snapshot(8, numa_nodes=2)
    assert prefer(snap, 3, must=ids(5), policy=ALIGNED) == ids(5, 4, 6)
    # Must-include on both nodes: both are used already, lowest node first.
    assert prefer(snap, 4, must=ids(7, 0), policy=ALIGNED) == ids(7, 0, 1, 2)


def test_aligned_without_topology_is_index_order() -> None:
    assert prefer(snapshot(4), 2, policy=ALIGNED) == ids(0, 1)


# Sharing: replicas of physical devices.


def test_sharing_spread_uses_different_devices_first() -> None:
    snap = snapshot(2, replicas=3)
    assert prefer(snap, 2) == reps((0, 0), (1, 0))
    assert prefer(snap, 3) == reps((0, 0), (1, 0), (0, 1))


def test_sharing_spread_prefers_devices_less_used_by_others() -> None:
    snap = snapshot(3, replicas=2)
    # Device 0's replica 0 went to another container already.
    available = [i for i in every(snap) if i != "sd-n-0::0"]
    assert prefer(snap, 1, available=available) == reps((1, 0))
    assert prefer(snap, 3, available=available) == reps((1, 0), (2, 0), (0, 1))


def test_sharing_spread_counts_must_include_replicas() -> None:
    snap = snapshot(3, replicas=2)
    assert prefer(snap, 3, must=reps((1, 1))) == reps((1, 1), (0, 0), (2, 0))


def test_sharing_packed_fills_one_device_first() -> None:
    snap = snapshot(2, replicas=3)
    assert prefer(snap, 2, sharing=SharingPolicy.PACKED) == reps((0, 0), (0, 1))
    assert prefer(snap, 4, sharing=SharingPolicy.PACKED) == reps((0, 0), (0, 1), (0, 2), (1, 0))
    # Must-include on device 1: its other replicas first.
    got = prefer(snap, 3, must=reps((1, 2)), sharing=SharingPolicy.PACKED)
    assert got == reps((1, 2), (1, 0), (1, 1))


def test_an_unhealthy_device_puts_all_its_replicas_last() -> None:
    snap = snapshot(2, unhealthy=(0,), replicas=2)
    assert prefer(snap, 3) == reps((1, 0), (1, 1), (0, 0))


def test_aligned_counts_replicas_as_room_on_a_node() -> None:
    snap = snapshot(4, numa_nodes=2, replicas=3)  # 6 replicas per node
    got = prefer(snap, 4, policy=ALIGNED)
    assert got == reps((0, 0), (1, 0), (0, 1), (1, 1))  # node 0, spread over its 2 devices
    got = prefer(snap, 8, policy=ALIGNED)
    assert {i.split("::")[0] for i in got} == set(ids(0, 1, 2, 3))


def test_spread_over_nodes_and_devices() -> None:
    snap = snapshot(4, numa_nodes=2, replicas=2)
    assert prefer(snap, 4, policy=SPREAD) == reps((0, 0), (2, 0), (1, 0), (3, 0))


@pytest.mark.parametrize("policy", list(AllocationPolicy))
def test_unknown_ids_come_last_for_every_policy(policy: AllocationPolicy) -> None:
    snap = snapshot(4, numa_nodes=2, replicas=2)
    available = ["zz-1", *every(snap), "aa-2"]
    got = prefer(snap, 10, policy=policy, available=available)
    assert got[-2:] == ["zz-1", "aa-2"]


# Invariants, for any snapshot, request and policy.


@st.composite
def requests(draw: st.DrawFn) -> tuple[Snapshot, list[str], list[str], int]:
    count = draw(st.integers(0, 12))
    numa = draw(st.one_of(st.none(), st.integers(1, 5)))
    replicas = draw(st.integers(1, 4))
    broken = draw(st.lists(st.integers(0, max(count - 1, 0)), max_size=count, unique=True))
    snap = snapshot(count, broken if count else (), numa, replicas)
    known = every(snap)
    unknown = draw(st.lists(st.sampled_from(["x-0", "x-1", "y-0::1"]), unique=True))
    available = draw(st.permutations(known + unknown))
    available = available[: draw(st.integers(0, len(available)))]
    size = draw(st.integers(0, len(available)))
    must = draw(st.lists(st.sampled_from(available), unique=True, max_size=size)) if size else []
    return snap, available, must, size


@settings(max_examples=400, deadline=None)
@given(
    request=requests(),
    policy=st.sampled_from(list(AllocationPolicy)),
    sharing=st.sampled_from(list(SharingPolicy)),
)
def test_a_preference_is_a_valid_choice(
    request: tuple[Snapshot, list[str], list[str], int],
    policy: AllocationPolicy,
    sharing: SharingPolicy,
) -> None:
    snap, available, must, size = request
    got = preferred_allocation(snap, available, must, size, policy, sharing)
    assert len(got) == size
    assert len(set(got)) == len(got)
    assert set(got) <= set(available)
    assert got[: len(must)] == must
    # Healthy devices we know are never passed over for unhealthy or unknown ones.
    healthy = {i for i in available if (d := snap.get(i)) is not None and d.healthy}
    if any(i not in healthy for i in got[len(must) :]):
        assert healthy <= set(got)


@settings(max_examples=200, deadline=None)
@given(request=requests(), sharing=st.sampled_from(list(SharingPolicy)))
def test_aligned_never_uses_more_nodes_than_needed(
    request: tuple[Snapshot, list[str], list[str], int], sharing: SharingPolicy
) -> None:
    snap, available, _, size = request
    free: dict[int | None, int] = {}
    for i in available:
        d = snap.get(i)
        if d is not None and d.healthy:
            free[d.numa_node] = free.get(d.numa_node, 0) + 1
    if size > sum(free.values()):
        return  # unhealthy or unknown IDs make up the rest; nothing to align
    got = preferred_allocation(snap, available, [], size, ALIGNED, sharing)
    used = {d.numa_node for i in got if (d := snap.get(i)) is not None}
    largest = sorted(free.values(), reverse=True)
    fewest = next(k for k in range(len(largest) + 1) if sum(largest[:k]) >= size)
    assert len(used) <= max(fewest, 0 if size == 0 else 1)


# The prepared, need-bounded ranking answers exactly like the whole sorts it replaced.


@st.composite
def odd_snapshots(draw: st.DrawFn) -> Snapshot:
    """Device sets make_devices never builds: shared indexes, replicas on several nodes.

    Still one device per (index, replica), the order both rankings go by.
    """
    devices = draw(
        st.lists(
            st.builds(
                Device,
                index=st.integers(0, 5),
                id=st.just(""),
                healthy=st.booleans(),
                numa_node=st.one_of(st.none(), st.integers(0, 2)),
                replica=st.one_of(st.none(), st.integers(0, 3)),
            ),
            max_size=14,
        )
    )
    unique = {(d.index, d.replica or 0): d for d in devices}
    return DeviceModel(
        replace(d, id=f"d{d.index}-{d.replica}-{d.numa_node}") for d in unique.values()
    ).snapshot()


@st.composite
def any_requests(draw: st.DrawFn) -> tuple[Snapshot, list[str], list[str], int]:
    snap = draw(st.one_of(odd_snapshots(), requests().map(lambda r: r[0])))
    known = every(snap)
    unknown = draw(st.lists(st.sampled_from(["x-0", "x-1", "y-0::1"]), unique=True))
    # Duplicates too: the kubelet's lists are not checked.
    pool = known + unknown
    available = draw(st.lists(st.sampled_from(pool), max_size=20)) if pool else []
    size = draw(st.integers(0, len(available) + 2))
    must = draw(st.lists(st.sampled_from(pool), max_size=4)) if pool else []
    return snap, available, must, size


@settings(max_examples=1500, deadline=None)
@given(
    request=st.one_of(requests(), any_requests()),
    policy=st.sampled_from(list(AllocationPolicy)),
    sharing=st.sampled_from(list(SharingPolicy)),
)
def test_same_answer_as_the_reference_ranking(
    request: tuple[Snapshot, list[str], list[str], int],
    policy: AllocationPolicy,
    sharing: SharingPolicy,
) -> None:
    snap, available, must, size = request
    expected = reference_preferred_allocation(snap, available, must, size, policy, sharing)
    assert preferred_allocation(snap, available, must, size, policy, sharing) == expected


@pytest.mark.parametrize("policy", list(AllocationPolicy))
@pytest.mark.parametrize("sharing", list(SharingPolicy))
@pytest.mark.parametrize(("count", "numa", "replicas"), [(600, None, 1), (150, 7, 4)])
def test_same_answer_as_the_reference_on_large_sets(
    policy: AllocationPolicy, sharing: SharingPolicy, count: int, numa: int | None, replicas: int
) -> None:
    rng = random.Random(f"{policy}/{sharing}/{count}")
    snap = snapshot(count, rng.sample(range(count), count // 10), numa, replicas)
    known = every(snap)
    for _ in range(20):
        available = rng.sample(known, rng.randrange(len(known)))
        must = rng.sample(available, min(len(available), rng.randrange(4)))
        size = rng.choice([1, 2, 8, 64, len(available)])
        expected = reference_preferred_allocation(snap, available, must, size, policy, sharing)
        assert preferred_allocation(snap, available, must, size, policy, sharing) == expected
    # Everything offered (the kept ranking answers), then one device fewer (it must not).
    for size in (1, 8, 64, 8, len(known)):
        offered = rng.sample(known, len(known))
        expected = reference_preferred_allocation(snap, offered, [], size, policy, sharing)
        assert preferred_allocation(snap, offered, [], size, policy, sharing) == expected
        # A device taken since: the kept ranking no longer applies.
        offered.remove(expected[0])
        expected = reference_preferred_allocation(snap, offered, [], size, policy, sharing)
        assert preferred_allocation(snap, offered, [], size, policy, sharing) == expected


# Every healthy device offered and none held: the kept ranking answers, the same as the
# reference, on the first request and on the repeats that reuse it.


@st.composite
def everything_offered(draw: st.DrawFn) -> tuple[Snapshot, list[str], int]:
    snap = draw(st.one_of(odd_snapshots(), requests().map(lambda r: r[0])))
    # Unhealthy and unknown IDs may come along, in any order, some twice.
    extra = draw(st.lists(st.sampled_from(["x-0", "x-1", *every(snap)]), max_size=6))
    available = draw(st.permutations(every(snap) + extra))
    size = draw(st.integers(0, len(available) + 2))
    return snap, available, size


@settings(max_examples=600, deadline=None)
@given(
    request=everything_offered(),
    policy=st.sampled_from(list(AllocationPolicy)),
    sharing=st.sampled_from(list(SharingPolicy)),
)
def test_everything_offered_answers_like_the_reference_every_time(
    request: tuple[Snapshot, list[str], int], policy: AllocationPolicy, sharing: SharingPolicy
) -> None:
    snap, available, size = request
    expected = reference_preferred_allocation(snap, available, [], size, policy, sharing)
    for _ in range(2):
        got = preferred_allocation(snap, available, [], size, policy, sharing)
        assert got == expected
        got.append("changed by the caller")  # must not reach the kept ranking
