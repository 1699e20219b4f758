"""Allocation decisions for the simulated devices, as pure functions of a snapshot.

``plan_allocation`` checks the whole request before anything is built, so a refused
request leaves nothing behind; the caller creates device files only from a plan.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from simdev.plugin.devices import Device, Snapshot


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
    """What an allocation exposes; an empty prefix turns that part off."""

    env_prefix: str = ""
    device_file_prefix: str = ""
    annotation_prefix: str = ""


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

    Every ID of every container is checked first: unknown IDs win over unhealthy ones
    and the error lists all offending IDs.
    """
    plans: list[ContainerAllocation] = []
    for devices in _check(snapshot, requests):
        devices = sorted(devices, key=lambda d: d.index)
        envs: dict[str, str] = {}
        nodes: list[DeviceNode] = []
        annotations: dict[str, str] = {}
        for d in devices:
            if settings.device_file_prefix:
                container_path = f"/dev/{settings.device_file_prefix}-{d.index}"
                nodes.append(DeviceNode(path=container_path))
            else:
                container_path = f"/dev/{d.index}"
            if settings.env_prefix:
                envs[f"{settings.env_prefix}_{d.index}"] = container_path
            if settings.annotation_prefix:
                annotations[f"{settings.annotation_prefix}-{d.index}"] = d.id
        if settings.env_prefix:
            envs[f"{settings.env_prefix}_VISIBLE_DEVICES"] = ",".join(d.id for d in devices)
        plans.append(
            ContainerAllocation(
                device_ids=tuple(d.id for d in devices),
                envs=envs,
                device_nodes=tuple(nodes),
                annotations=annotations,
            )
        )
    return plans
