"""Factories shared by the operator's tests: SimulatedDevice bodies and snapshots.

Exposed as fixtures because test modules are imported by path, not as a package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from simdev.operator.model import API_VERSION, KIND, Device


def make_body(
    name: str = "sample",
    *,
    created: str = "2030-01-01T00:00:00Z",
    uid: str | None = None,
    generation: int = 1,
    deleting: bool = False,
    status: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": uid or f"uid-{name}",
        "generation": generation,
        "creationTimestamp": created,
    }
    if deleting:
        meta["deletionTimestamp"] = "2030-01-02T00:00:00Z"
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": meta,
        "spec": spec,
        "status": status or {},
    }


def make_device(name: str = "sample", **kwargs: Any) -> Device:
    return Device.from_body(make_body(name, **kwargs))


BodyFactory = Callable[..., dict[str, Any]]
DeviceFactory = Callable[..., Device]


@pytest.fixture
def body() -> BodyFactory:
    """body(name, created=..., uid=..., generation=..., deleting=..., status=..., **spec)."""
    return make_body


@pytest.fixture
def device() -> DeviceFactory:
    """Like body, but returns the operator's snapshot of it."""
    return make_device
