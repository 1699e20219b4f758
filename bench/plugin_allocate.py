"""Allocate latency, registration time and memory of the real plugin process.

Starts `python -m simdev.plugin` against the fake kubelet over unix sockets in a temporary
directory, for a few device counts, and measures:
  - the time from process start to the first full device list,
  - Allocate round trips (one container, one device) over a bounded number of calls,
  - the plugin's resident memory (VmRSS, VmHWM) afterwards.

Everything stays on local unix sockets; every loop is bounded.
Run from the repo root: python bench/plugin_allocate.py [--calls 2000] [--out bench-results]
Writes <out>/plugin_allocate.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from simdev.plugin.fakekubelet import FakeKubelet

COUNTS = (2, 100, 1000, 10000)


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def run(count: int, calls: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="sdb-"))
    kubelet = FakeKubelet(directory)
    kubelet.start()
    env = {
        **os.environ,
        "NODE_NAME": "bench-node",
        "DEVICE_PLUGIN_DIR": str(directory),
        "NUMBER_DEVICES": str(count),
        "ENV_PREFIX": "BENCH",
        "ANNOTATION_PREFIX": "bench.simdev.io/dev",
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "simdev.plugin"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        conn = kubelet.wait_for_registration(timeout=30)
        devices = conn.wait_for_list(lambda r: len(r.devices) == count, timeout=30).devices
        ready_s = time.perf_counter() - started
        ids = [d.ID for d in devices]
        latencies = []
        for i in range(calls):
            t0 = time.perf_counter()
            conn.allocate([[ids[i % len(ids)]]])
            latencies.append((time.perf_counter() - t0) * 1000)
        memory = memory_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        kubelet.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "devices": count,
        "ready_seconds": round(ready_s, 3),
        "allocate_calls": calls,
        "allocate_ms": {
            "p50": round(statistics.median(latencies), 3),
            "p99": round(percentile(latencies, 99), 3),
            "max": round(max(latencies), 3),
        },
        "allocate_per_second": round(calls / (sum(latencies) / 1000), 1),
        "rss_kib": memory.get("VmRSS"),
        "peak_rss_kib": memory.get("VmHWM"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    results = [run(count, args.calls) for count in COUNTS]
    report = {
        "benchmark": "plugin_allocate",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "plugin_allocate.json").write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        print(
            f"{r['devices']:>6} devices: ready {r['ready_seconds']:.2f}s, "
            f"Allocate p50 {r['allocate_ms']['p50']:.2f} ms p99 {r['allocate_ms']['p99']:.2f} ms, "
            f"RSS {r['rss_kib'] / 1024:.1f} MiB (peak {r['peak_rss_kib'] / 1024:.1f})"
        )


if __name__ == "__main__":
    main()
