"""Bytes per device in a ListAndWatch message, to bound the number of devices.

The kubelet receives every device list in one gRPC message and refuses messages over
4 MiB (the gRPC default it keeps). This measures the serialized size of the plugin's
real ListAndWatchResponse for a few name lengths and device counts, and finds the
largest count that still fits, so the operator can cap numberDevices.

Run from the repo root: python bench/listandwatch_size.py [--out bench-results]
Writes <out>/listandwatch_size.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from simdev.plugin.config import MAX_DEVICES
from simdev.plugin.devices import Device, DeviceModel, device_id
from simdev.plugin.service import list_response

KUBELET_LIMIT = 4 * 1024 * 1024
COUNTS = (1, 10, 100, 1000, MAX_DEVICES)

# Longest DNS subdomain: four labels, 253 characters in all.
NODE_253 = ".".join(["n" * 63] * 3 + ["n" * 61])
SCENARIOS = {
    # Defaults with a typical cloud node name.
    "typical": ("simple-device", "ip-10-0-12-34.eu-west-1.compute.internal"),
    # A node name as long as one DNS label (common upper bound in practice).
    "node-63": ("simple-device", "n" * 63),
    # Worst case the settings allow: 63-character ID prefix, 253-character node name.
    "worst": ("p" * 63, NODE_253),
}


def message_size(prefix: str, node: str, count: int, worst_fields: bool) -> int:
    """Serialized size of the plugin's device list for count devices."""
    devices = [
        Device(
            index=i,
            id=device_id(prefix, node, i),
            # "Unhealthy" is the longer health string; a NUMA node adds the topology.
            healthy=not worst_fields,
            numa_node=1 if worst_fields else None,
        )
        for i in range(count)
    ]
    size: int = list_response(DeviceModel(devices).snapshot()).ByteSize()
    return size


def max_fitting(prefix: str, node: str, worst_fields: bool) -> int:
    """Largest device count whose list fits in one kubelet message (binary search)."""
    low, high = 0, 1
    while message_size(prefix, node, high, worst_fields) <= KUBELET_LIMIT:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        if message_size(prefix, node, mid, worst_fields) <= KUBELET_LIMIT:
            low = mid
        else:
            high = mid
    return low


def measure() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, (prefix, node) in SCENARIOS.items():
        for worst_fields in (False, True):
            key = f"{name}/{'unhealthy+numa' if worst_fields else 'healthy'}"
            sizes = {n: message_size(prefix, node, n, worst_fields) for n in COUNTS}
            results[key] = {
                "id_prefix_chars": len(prefix),
                "node_name_chars": len(node),
                "example_id_chars": len(device_id(prefix, node, MAX_DEVICES - 1)),
                "message_bytes": sizes,
                "bytes_per_device_at_max": round(sizes[MAX_DEVICES] / MAX_DEVICES, 1),
                "max_devices_in_4MiB": max_fitting(prefix, node, worst_fields),
                "share_of_limit_at_max": round(sizes[MAX_DEVICES] / KUBELET_LIMIT, 3),
            }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    started = time.monotonic()
    results = measure()
    report = {
        "benchmark": "listandwatch_size",
        "kubelet_limit_bytes": KUBELET_LIMIT,
        "plugin_max_devices": MAX_DEVICES,
        "python": platform.python_version(),
        "seconds": round(time.monotonic() - started, 2),
        "scenarios": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "listandwatch_size.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'scenario':32} {'B/device':>9} {'bytes@' + str(MAX_DEVICES):>13} {'max in 4MiB':>12}")
    for key, r in results.items():
        print(
            f"{key:32} {r['bytes_per_device_at_max']:>9} "
            f"{r['message_bytes'][MAX_DEVICES]:>13} {r['max_devices_in_4MiB']:>12}"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
