"""Allocation decisions for the simulated devices, as pure functions of a snapshot.

``plan_allocation`` checks the whole request before anything is built, so a refused
request leaves nothing behind. With sharing the kubelet hands out replicas; a container
gets each physical device once (its file, env var and annotation) and is told in
``<ENV_PREFIX>_REPLICAS`` how many replicas of it it holds.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from simdev.plugin.devices import Device, Snapshot
from simdev.plugin.policies import AllocationPolicy, SharingPolicy


class Failure(enum.Enum):
    """Why a request was refused; the service maps these to gRPC status codes."""

    NOT_FOUND = "not found"
    FAILED_PRECONDITION = "failed precondition"
    INVALID_ARGUMENT = "invalid argument"


class AllocationError(Exception):
    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


@dataclass(frozen=True)
class AllocationSettings:
    """What an allocation exposes (an empty prefix turns that part off) and how it chooses."""

    env_prefix: str = ""
    device_file_prefix: str = ""
    annotation_prefix: str = ""
    policy: AllocationPolicy = AllocationPolicy.PACKED
    sharing_policy: SharingPolicy = SharingPolicy.SPREAD
    # Refuse a container more than one replica of shared devices (not without sharing).
    fail_requests_greater_than_one: bool = False


# Every simulated device file is the host's /dev/null under the device's own name in the
# container: always present, harmless, and in every runtime's default device allow-list, so
# the plugin needs neither the host's /dev nor CAP_MKNOD.
HOST_DEVICE = "/dev/null"


@dataclass(frozen=True)
class DeviceNode:
    """A device file to expose: the host's device and where the container sees it."""

    path: str  # /dev/<prefix>-<index> in the container
    host_path: str = HOST_DEVICE
    permissions: str = "rw"


@dataclass(frozen=True)
class ContainerAllocation:
    device_ids: tuple[str, ...]
    envs: dict[str, str] = field(default_factory=dict)
    device_nodes: tuple[DeviceNode, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)


def _quoted(ids: Iterable[str]) -> str:
    return ", ".join(f'"{i}"' for i in ids)


def _check_sizes(
    snapshot: Snapshot, requests: Sequence[Sequence[str]], settings: AllocationSettings
) -> None:
    if not settings.fail_requests_greater_than_one:
        return
    for n, ids in enumerate(requests):
        shared = any((d := snapshot.get(i)) is not None and d.replica is not None for i in ids)
        if shared and len(ids) > 1:
            raise AllocationError(
                Failure.INVALID_ARGUMENT,
                f"container request {n} asks for {len(ids)} replicas of shared devices; "
                "failRequestsGreaterThanOne allows 1 per container",
            )


def _check(snapshot: Snapshot, requests: Sequence[Sequence[str]]) -> list[list[Device]]:
    unknown: list[str] = []
    unhealthy: list[str] = []
    resolved: list[list[Device]] = []
    for n, ids in enumerate(requests):
        seen: set[str] = set()
        devices: list[Device] = []
        for device_id in ids:
            if device_id in seen:
                raise AllocationError(
                    Failure.INVALID_ARGUMENT,
                    f'device "{device_id}" is requested twice for container request {n}',
                )
            seen.add(device_id)
            device = snapshot.get(device_id)
            if device is None:
                unknown.append(device_id)
            elif not device.healthy:
                unhealthy.append(
                    f'"{device_id}"' + (f" ({device.reason})" if device.reason else "")
                )
            else:
                devices.append(device)
        resolved.append(devices)
    if unknown:
        raise AllocationError(Failure.NOT_FOUND, f"unknown device ID(s): {_quoted(unknown)}")
    if unhealthy:
        raise AllocationError(
            Failure.FAILED_PRECONDITION, f"device(s) not healthy: {', '.join(unhealthy)}"
        )
    return resolved


def plan_allocation(
    snapshot: Snapshot, requests: Sequence[Sequence[str]], settings: AllocationSettings
) -> list[ContainerAllocation]:
    """One allocation per container request, in order; raises AllocationError.

    Every ID of every container is checked first: a container over the one-replica limit
    (failRequestsGreaterThanOne) wins over unknown IDs, unknown over unhealthy ones, and
    the error lists all offending IDs.
    """
    _check_sizes(snapshot, requests, settings)
    return [_plan(devices, settings) for devices in _check(snapshot, requests)]


def _plan(granted: Sequence[Device], settings: AllocationSettings) -> ContainerAllocation:
    granted = sorted(granted, key=lambda d: (d.index, d.replica or 0))
    # Replicas map back to their physical device, which the container gets once.
    physical: dict[int, Device] = {}
    held: dict[int, int] = {}
    for d in granted:
        physical.setdefault(d.index, d)
        held[d.index] = held.get(d.index, 0) + 1
    envs: dict[str, str] = {}
    nodes: list[DeviceNode] = []
    annotations: dict[str, str] = {}
    for index, d in physical.items():
        if settings.device_file_prefix:
            container_path = f"/dev/{settings.device_file_prefix}-{index}"
            nodes.append(DeviceNode(path=container_path))
        else:
            container_path = f"/dev/{index}"
        if settings.env_prefix:
            envs[f"{settings.env_prefix}_{index}"] = container_path
        if settings.annotation_prefix:
            annotations[f"{settings.annotation_prefix}-{index}"] = d.physical_id
    if settings.env_prefix:
        prefix = settings.env_prefix
        envs[f"{prefix}_VISIBLE_DEVICES"] = ",".join(d.physical_id for d in physical.values())
        numa = sorted({d.numa_node for d in physical.values() if d.numa_node is not None})
        if numa:
            envs[f"{prefix}_NUMA_NODES"] = ",".join(str(n) for n in numa)
        if any(d.replica is not None for d in granted):
            envs[f"{prefix}_REPLICAS"] = ",".join(
                f"{d.physical_id}={held[i]}" for i, d in physical.items()
            )
    return ContainerAllocation(
        device_ids=tuple(d.id for d in granted),
        envs=envs,
        device_nodes=tuple(nodes),
        annotations=annotations,
    )
