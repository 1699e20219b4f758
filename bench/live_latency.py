"""Live change latency: from a SimulatedDevice patch to the plugin's next ListAndWatch message.

Needs the local cluster with the operator deployed (`make deploy`). Creates a SimulatedDevice,
then runs the real plugin process on this machine, following that object through the API
server with its own service account's token (exactly the access a plugin pod has), and
serving a fake kubelet over a unix socket in a temporary directory. Each round patches
numberDevices and times the interval until the fake kubelet receives the list of the new
size. The API server is on loopback; every loop is bounded.

Run from the repo root: python bench/live_latency.py [--changes 20] [--out bench-results]
Writes <out>/live_latency.json and prints a summary.
"""

from __future__ import annotations

import argparse
import base64
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config

from clusterlib import local_cluster, wait_for
from simdev.plugin.fakekubelet import FakeKubelet

REPO = Path(__file__).resolve().parent.parent
NAME = "bench-live"
NAMESPACE = "simdev-bench"
RESOURCE = "bench.simdev.io/live"


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def service_account(cluster: Any, directory: Path) -> Path:
    """The plugin's token and the cluster CA, laid out like a pod's service account mount."""
    account = directory / "account"
    account.mkdir()
    token = cluster.kubectl("create", "token", f"simdev-{NAME}", "-n", NAMESPACE).stdout.strip()
    (account / "token").write_text(token)
    ca = cluster.kubectl(
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ).stdout
    (account / "ca.crt").write_bytes(base64.b64decode(ca))
    return account


def sized(size: int) -> Callable[[Any], bool]:
    return lambda response: len(response.devices) == size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()

    cluster = local_cluster(REPO)
    body = {
        "apiVersion": "simdev.io/v1alpha1",
        "kind": "SimulatedDevice",
        "metadata": {"name": NAME},
        "spec": {"namespace": NAMESPACE, "resourceName": RESOURCE, "numberDevices": 2},
    }
    cluster.apply(json.dumps(body))
    wait_for(
        "the plugin's service account",
        lambda: (
            cluster.kubectl("get", "sa", "-n", NAMESPACE, f"simdev-{NAME}", check=False).returncode
            == 0
        ),
        timeout=120,
    )
    node = cluster.nodes()[0]["metadata"]["name"]
    config.load_kube_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    api = client.CustomObjectsApi()

    directory = Path(tempfile.mkdtemp(prefix="sdl-"))
    kubelet = FakeKubelet(directory)
    kubelet.start()
    env = {
        **os.environ,
        "NODE_NAME": node,
        "DEVICE_PLUGIN_DIR": str(directory),
        "PLUGIN_NAME": "bench-live",
        "RESOURCE_NAME": RESOURCE,
        "SIMULATED_DEVICE": NAME,
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": "6443",
        "SERVICE_ACCOUNT_DIR": str(service_account(cluster, directory)),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "simdev.plugin"], env=env, stderr=subprocess.DEVNULL
    )
    latencies: list[float] = []
    try:
        conn = kubelet.wait_for_registration(timeout=30)
        conn.wait_for_list(lambda r: len(r.devices) == 2, timeout=30)
        for i in range(args.changes):
            size = 3 + i % 2  # 3, 4, 3, 4, ...: every patch changes the list
            began = time.perf_counter()
            api.patch_cluster_custom_object(
                "simdev.io", "v1alpha1", "simulateddevices", NAME, {"spec": {"numberDevices": size}}
            )
            conn.wait_for_list(sized(size), timeout=30)
            latencies.append((time.perf_counter() - began) * 1000)
            time.sleep(0.2)  # let the operator's own reconcile of this change settle
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        kubelet.stop()
        shutil.rmtree(directory, ignore_errors=True)
        cluster.kubectl("delete", "simdev", NAME, "--ignore-not-found", "--timeout=120s")

    lat = {
        "p50": round(statistics.median(latencies), 1),
        "p99": round(percentile(latencies, 99), 1),
        "max": round(max(latencies), 1),
    }
    report = {
        "benchmark": "live_latency",
        "what": "kubectl-equivalent patch of numberDevices -> next ListAndWatch message",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "changes": len(latencies),
        "latency_ms": lat,
        "goal_p50_ms": 1000,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "live_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    changes = len(latencies)
    print(f"patch -> ListAndWatch, {changes} changes: p50 {lat['p50']} ms, p99 {lat['p99']} ms")


if __name__ == "__main__":
    main()
