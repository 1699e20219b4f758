"""Names and IDs of the DRA devices, shared by the operator (slices) and the plugin (CDI).

The operator publishes a device as ``device-<index>`` with a ``uuid`` attribute; the plugin
sees only the device's name in a claim's allocation and derives the same UUID from it. The
operator imports this module too, so it imports nothing beyond the standard library.
"""

from __future__ import annotations

import hashlib
import re

DEVICE_NAME_PREFIX = "device"
_DEVICE_NAME = re.compile(rf"{DEVICE_NAME_PREFIX}-(0|[1-9][0-9]*)")


def device_name(index: int) -> str:
    return f"{DEVICE_NAME_PREFIX}-{index}"


def index_of(name: str) -> int | None:
    """The index of a device named by device_name; None for any other name."""
    found = _DEVICE_NAME.fullmatch(name)
    return int(found.group(1)) if found else None


def device_uuid(driver: str, node: str, index: int) -> str:
    """A stable ID in the form GPUs report (GPU-8-4-4-4-12 hex digits), derived, not random.

    The same driver, node and index always give the same ID, so a device keeps its ID
    across operator and plugin restarts and slice rewrites.
    """
    digest = hashlib.sha256(f"{driver}/{node}/{index}".encode()).hexdigest()
    parts = (digest[:8], digest[8:12], digest[12:16], digest[16:20], digest[20:32])
    return "GPU-" + "-".join(parts)
