"""Which devices each pod on a node holds, asked of the kubelet's pod-resources API (v1).

The kubelet serves ``v1.PodResourcesLister`` on ``pod-resources/kubelet.sock`` under its
root directory. Reading it needs access to that socket, so run this on the node (or in a
pod that mounts the directory).

Command line::

    python -m simdev.plugin.podresources [--socket PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc

from simdev.plugin.api import podresources_pb2 as pb
from simdev.plugin.api import podresources_pb2_grpc as pb_grpc

DEFAULT_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
TIMEOUT_SECONDS = 5.0
# A node full of pods can exceed gRPC's default 4 MiB receive limit.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# (namespace, pod name) -> {resource name: [device IDs]}
PodDevices = dict[tuple[str, str], dict[str, list[str]]]


def pod_devices(response: pb.ListPodResourcesResponse) -> PodDevices:
    """Every listed pod, with its containers' devices merged per resource.

    Pods without devices map to an empty dict. The kubelet's order is arbitrary (it sends
    one entry per device and NUMA node), so the IDs are sorted, each listed once even when
    several containers (an init container and its successor) hold it.
    """
    merged: dict[tuple[str, str], dict[str, set[str]]] = {}
    for pod in response.pod_resources:
        resources = merged.setdefault((pod.namespace, pod.name), {})
        for container in pod.containers:
            for devices in container.devices:
                resources.setdefault(devices.resource_name, set()).update(devices.device_ids)
    return {
        pod: {resource: sorted(ids) for resource, ids in resources.items()}
        for pod, resources in merged.items()
    }


def list_pod_devices(socket: Path, timeout: float = TIMEOUT_SECONDS) -> PodDevices:
    """Calls List on the kubelet's pod-resources socket; raises grpc.RpcError on failure."""
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(f"unix:{socket}", options=options) as channel:
        # Generated gRPC code is untyped.
        stub = pb_grpc.PodResourcesListerStub(channel)  # type: ignore[no-untyped-call]
        response: pb.ListPodResourcesResponse = stub.List(
            pb.ListPodResourcesRequest(), timeout=timeout
        )
    return pod_devices(response)


def to_json(pods: PodDevices) -> str:
    """A list of {"namespace", "name", "devices"} objects, sorted by namespace and name."""
    return json.dumps(
        [
            {"namespace": namespace, "name": name, "devices": pods[namespace, name]}
            for namespace, name in sorted(pods)
        ],
        indent=2,
    )


def to_text(pods: PodDevices) -> str:
    """One line per pod: ``namespace/name resource=id,id ...`` (``-`` for no devices)."""
    lines = []
    for namespace, name in sorted(pods):
        resources = pods[namespace, name]
        held = " ".join(f"{r}={','.join(ids)}" for r, ids in sorted(resources.items())) or "-"
        lines.append(f"{namespace}/{name} {held}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simdev.plugin.podresources",
        description="Ask the kubelet's pod-resources API which devices each pod holds.",
    )
    parser.add_argument(
        "--socket",
        type=Path,
        default=DEFAULT_SOCKET,
        help=f"the kubelet's pod-resources socket (default: {DEFAULT_SOCKET})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--timeout",
        type=float,
        default=TIMEOUT_SECONDS,
        help=f"seconds to wait for the kubelet (default: {TIMEOUT_SECONDS:g})",
    )
    args = parser.parse_args(argv)
    if not args.socket.exists():
        print(f"podresources: no socket at {args.socket}", file=sys.stderr)
        return 1
    try:
        pods = list_pod_devices(args.socket, args.timeout)
    except grpc.RpcError as err:
        print(f"podresources: {args.socket}: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    output = to_json(pods) if args.json else to_text(pods)
    if output:
        print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
