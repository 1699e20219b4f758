"""Bytes per device in a ListAndWatch message, to bound numberDevices * replicas.

The kubelet receives every device list in one gRPC message and refuses messages over
4 MiB (the gRPC default it keeps). This measures the serialized size of the plugin's
real ListAndWatchResponse for a few name lengths, with and without NUMA topology and
Unhealthy devices, and for several ways of splitting the advertised devices into
physical devices * replicas (replica IDs carry a ``::<replica>`` suffix). For each it
finds the largest count that still fits, so the plugin and the CRD can cap the product.

Run from the repo root: python bench/listandwatch_size.py [--out bench-results]
Writes <out>/listandwatch_size.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from simdev.plugin.devices import DeviceModel, make_devices
from simdev.plugin.limits import KUBELET_MESSAGE_LIMIT, MAX_DEVICES, MAX_NUMA_NODES
from simdev.plugin.service import list_response

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
# Replicas per physical device; MAX_DEVICES // replicas physical devices each.
REPLICAS = (1, 2, 10, 100, 1000, MAX_DEVICES)
# The highest NUMA node ID: node 0 is proto3's default and costs two bytes less.
WORST_NUMA_NODE = MAX_NUMA_NODES - 1


def message_size(prefix: str, node: str, total: int, replicas: int, worst_fields: bool) -> int:
    """Serialized size of the plugin's device list for total devices in replicas."""
    count = -(-total // replicas)
    devices = make_devices(
        prefix,
        node,
        count,
        # "Unhealthy" is the longer health string; a NUMA node adds the topology.
        unhealthy={i: "bench" for i in range(count)} if worst_fields else None,
        replicas=replicas,
    )[:total]
    if worst_fields:
        devices = [replace(d, numa_node=WORST_NUMA_NODE) for d in devices]
    size: int = list_response(DeviceModel(devices).snapshot()).ByteSize()
    return size


def max_fitting(prefix: str, node: str, replicas: int, worst_fields: bool) -> int:
    """Largest device count whose list fits in one kubelet message (binary search)."""

    def fits(total: int) -> bool:
        return message_size(prefix, node, total, replicas, worst_fields) <= KUBELET_MESSAGE_LIMIT

    low, high = 0, 1
    while fits(high):
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def measure() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, (prefix, node) in SCENARIOS.items():
        for worst_fields in (False, True):
            for replicas in REPLICAS if name == "worst" else (1,):
                fields = "unhealthy+numa" if worst_fields else "healthy"
                key = f"{name}/{fields}/replicas={replicas}"
                size = message_size(prefix, node, MAX_DEVICES, replicas, worst_fields)
                results[key] = {
                    "id_prefix_chars": len(prefix),
                    "node_name_chars": len(node),
                    "replicas": replicas,
                    "message_bytes_at_max": size,
                    "bytes_per_device_at_max": round(size / MAX_DEVICES, 1),
                    "max_devices_in_4MiB": max_fitting(prefix, node, replicas, worst_fields),
                    "share_of_limit_at_max": round(size / KUBELET_MESSAGE_LIMIT, 3),
                }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    started = time.monotonic()
    results = measure()
    worst = min(results.values(), key=lambda r: r["max_devices_in_4MiB"])
    report = {
        "benchmark": "listandwatch_size",
        "kubelet_limit_bytes": KUBELET_MESSAGE_LIMIT,
        "plugin_max_devices": MAX_DEVICES,
        "worst_bytes_per_device": worst["bytes_per_device_at_max"],
        "worst_max_devices_in_4MiB": worst["max_devices_in_4MiB"],
        "python": platform.python_version(),
        "seconds": round(time.monotonic() - started, 2),
        "scenarios": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "listandwatch_size.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    at_max = f"bytes@{MAX_DEVICES}"
    print(f"{'scenario':42} {'B/device':>9} {at_max:>13} {'share':>6} {'max in 4MiB':>12}")
    for key, r in results.items():
        print(
            f"{key:42} {r['bytes_per_device_at_max']:>9} {r['message_bytes_at_max']:>13} "
            f"{r['share_of_limit_at_max']:>6} {r['max_devices_in_4MiB']:>12}"
        )
    print(
        f"worst case: {worst['bytes_per_device_at_max']} B/device, "
        f"{worst['max_devices_in_4MiB']} devices fit; the limit is {MAX_DEVICES}"
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
