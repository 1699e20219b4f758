"""Scale: 10 SimulatedDevices over every node (hundreds of them fake), then a burst of pods.

Needs a cluster whose nodes include KWOK's fake ones (`make bench-scale` brings up 500 on
the local cluster) and a running operator. Measures:

- the time from creating 10 SimulatedDevices, each selecting every node, until every node
  offers all 10 resources (fake nodes get theirs from the operator, real ones from plugins);
- the operator's CPU seconds and peak RSS over the run, read from /proc (the operator runs on
  this machine: in a local-cluster pod, or out of cluster with --operator-pid);
- a burst of pods, each asking for 1 device (pod i for resource i % 10), bound to fake nodes:
  the time until all are bound, and that no node got more of a resource than it offers;
- the bytes the operator's Node index keeps per node, measured in this process.

Everything goes to the API server named by KUBECONFIG (loopback); every wait is bounded.
Run from the repo root: python bench/scale.py [--pods 2000] [--out bench-results]
Writes <out>/scale.json and prints it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from watched import Watched, wait_for

from simdev.operator.observed import NodeResources

NAMESPACE = "simdev-bench-scale"
PREFIX = "bench-scale-"
DEVICES = 10
# Per node and resource: a pod burst spread over 10 resources then fills under half of it.
NUMBER_DEVICES = 1
GROUP, VERSION, PLURAL = "simdev.io", "v1alpha1", "simulateddevices"
TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}


def resource(i: int) -> str:
    return f"bench.simdev.io/dev-{i}"


def find_operator() -> int:
    """The pid of the one simdev-operator process on this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"simdev-operator") for part in cmdline[:3]):
            found.append(int(entry.name))
    if len(found) != 1:
        raise SystemExit(f"expected one simdev-operator process, found {found}; use --operator-pid")
    return found[0]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat; fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise SystemExit(f"no {key} in /proc/{pid}/status")


def device_body(i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SimulatedDevice",
        "metadata": {"name": f"{PREFIX}{i}"},
        "spec": {
            "resourceName": resource(i),
            "numberDevices": NUMBER_DEVICES,
            # Apart from the pods' namespace, which the run deletes: the operator owns this one.
            "namespace": f"{NAMESPACE}-plugins",
        },
    }


def pod_body(i: int) -> dict[str, Any]:
    want = {resource(i % DEVICES): "1"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"burst-{i}", "labels": {"app": "bench-scale"}},
        "spec": {
            "nodeSelector": {"type": "kwok"},
            "tolerations": [TOLERATION],
            "containers": [
                {"name": "c", "image": "none", "resources": {"requests": want, "limits": want}}
            ],
        },
    }


@dataclass(frozen=True)
class NodeView:
    """What the bench reads of a node: its kind and the bench's resources on it."""

    fake: bool
    allocatable: Mapping[str, str]
    capacity: frozenset[str]


def node_view(obj: Mapping[str, Any]) -> NodeView:
    status = obj.get("status") or {}
    ours = {resource(i) for i in range(DEVICES)}
    return NodeView(
        fake=(obj["metadata"].get("labels") or {}).get("type") == "kwok",
        allocatable={k: v for k, v in (status.get("allocatable") or {}).items() if k in ours},
        capacity=frozenset(k for k in status.get("capacity") or {} if k in ours),
    )


def pod_node(obj: Mapping[str, Any]) -> str:
    return str((obj.get("spec") or {}).get("nodeName") or "")


def offers_everything(
    nodes: Watched[NodeView], ready: dict[str, float], start: float
) -> Callable[[], bool]:
    """A check that every node offers every resource; ready records, per kind of node
    ("fake", "real"), the seconds from start until all nodes of that kind did."""

    def check() -> bool:
        waiting = {"fake": False, "real": False}
        for node in nodes.objects().values():
            if any(
                node.allocatable.get(resource(i)) != str(NUMBER_DEVICES) for i in range(DEVICES)
            ):
                waiting["fake" if node.fake else "real"] = True
        for kind, left in waiting.items():
            if not left and kind not in ready:
                ready[kind] = round(time.monotonic() - start, 2)
        return not any(waiting.values())

    return check


def _exists(core: Any, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def index_bytes_per_node(nodes: list[Any], api: Any) -> float:
    """What the operator's Node index keeps per node: its snapshots, built as kopf does."""
    bodies = [api.sanitize_for_serialization(n) for n in nodes]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = [NodeResources.from_body(b) for b in bodies]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    return grown / max(1, len(kept))


def create_all(fn: Callable[[int], Any], count: int, workers: int = 8) -> None:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(fn, i) for i in range(count)]:
            future.result()


def clean_up(core: Any, custom: Any, nodes: Watched[NodeView], timeout: float) -> float:
    """Deletes the run's pods and objects (a killed run's too); seconds until the resources
    left the fake nodes again."""
    calls: list[tuple[Callable[..., Any], tuple[str, ...]]] = [
        (core.delete_namespace, (NAMESPACE,)),
        *(
            (custom.delete_cluster_custom_object, (GROUP, VERSION, PLURAL, f"{PREFIX}{i}"))
            for i in range(DEVICES)
        ),
    ]
    for call, call_args in calls:
        try:
            call(*call_args)
        except ApiException as err:
            if err.status != 404:
                raise

    def withdrawn() -> bool:
        return not any(n.capacity for n in nodes.objects().values() if n.fake)

    return wait_for("the resources to leave the fake nodes", timeout, withdrawn)


def run(args: argparse.Namespace) -> dict[str, Any]:
    # The kubernetes package's models are typed loosely; the bench reads them as Any.
    config.load_kube_config()  # type: ignore[no-untyped-call]
    api: Any = client.ApiClient()
    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    pid = args.operator_pid or find_operator()
    with Watched(core.list_node, node_view) as nodes:
        wait_for("the node list", args.timeout, lambda: bool(nodes.objects()))
        return measure(args, core, custom, api, pid, nodes)


def measure(
    args: argparse.Namespace, core: Any, custom: Any, api: Any, pid: int, nodes: Watched[NodeView]
) -> dict[str, Any]:
    fake = [n for n in nodes.objects().values() if n.fake]
    if not fake:
        raise SystemExit("no fake nodes (label type=kwok): run `make bench-scale`")
    real = len(nodes.objects()) - len(fake)
    clean_up(core, custom, nodes, args.timeout)
    wait_for(
        "the last run's namespace to go",
        args.timeout,
        lambda: not _exists(core, NAMESPACE),
        every=0.5,
    )
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except ApiException as err:
        if err.status != 409:
            raise

    cpu0, rss0 = cpu_seconds(pid), status_kib(pid, "VmRSS")
    start = time.monotonic()
    create_all(
        lambda i: custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, device_body(i)),
        DEVICES,
    )
    created = time.monotonic() - start
    # Fake nodes wait only for the operator; real ones for plugin pods to start and register,
    # and then for their kubelet's next node-status update (every 10 s).
    by_kind: dict[str, float] = {}
    advertised = wait_for(
        "every node to offer every resource", args.timeout, offers_everything(nodes, by_kind, start)
    )
    advertised += created
    cpu1 = cpu_seconds(pid)
    # Measured on nodes that carry all ten resources, as the index holds them now.
    index_bytes = index_bytes_per_node(core.list_node().items, api)

    with Watched(
        core.list_namespaced_pod, pod_node, namespace=NAMESPACE, label_selector="app=bench-scale"
    ) as pods:
        start = time.monotonic()
        create_all(lambda i: core.create_namespaced_pod(NAMESPACE, pod_body(i)), args.pods)
        pods_created = time.monotonic() - start

        def all_bound() -> bool:
            return sum(1 for node in pods.objects().values() if node) >= int(args.pods)

        bound = pods_created + wait_for("every pod to be bound", args.timeout, all_bound)
        placed = pods.objects()
    held = Counter(
        (node, resource(int(key.rpartition("-")[2]) % DEVICES)) for key, node in placed.items()
    )
    offered = {
        (name, res): int(count)
        for name, n in nodes.objects().items()
        for res, count in n.allocatable.items()
    }
    overbooked = {f"{k[0]} {k[1]}": v for k, v in held.items() if v > offered.get(k, 0)}
    cpu2 = cpu_seconds(pid)
    hwm = status_kib(pid, "VmHWM")

    removed = clean_up(core, custom, nodes, args.timeout)

    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "nodes": {"fake": len(fake), "real": real},
        "simulated_devices": DEVICES,
        "advertise_seconds": round(advertised, 2),
        "advertise_seconds_by_node_kind": by_kind,
        "advertise_goal_seconds": 30,
        "operator_cpu_seconds": {
            "advertise": round(cpu1 - cpu0, 2),
            "burst": round(cpu2 - cpu1, 2),
        },
        "operator_rss_mib": {"start": round(rss0 / 1024, 1), "peak": round(hwm / 1024, 1)},
        "operator_rss_goal_mib": 150,
        "pods": args.pods,
        "pods_created_seconds": round(pods_created, 2),
        "pods_bound_seconds": round(bound, 2),
        "pods_bound_per_second": round(args.pods / bound, 1),
        "overbooked": overbooked,
        "withdraw_seconds": round(removed, 2),
        "node_index_bytes_per_node": round(index_bytes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--operator-pid", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    if not 0 < args.pods <= 10_000:
        sys.exit("--pods: between 1 and 10000")
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if result["overbooked"]:
        sys.exit("a node got more devices than it offers")


if __name__ == "__main__":
    main()
