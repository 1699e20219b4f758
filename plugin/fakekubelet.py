"""A stand-in for the kubelet's side of the device plugin API, for tests and demos.

It serves v1beta1.Registration on DIR/kubelet.sock. For every registration it does
what the kubelet does: dials the plugin's endpoint in DIR, asks for its options and
keeps a ListAndWatch stream open, recording each device list. Allocation calls are
made on request. ``restart(wipe=True)`` imitates a kubelet restart, which removes
every socket in the directory and creates a new kubelet.sock.

Command line (see ``--help``)::

    python -m simdev.plugin.fakekubelet --dir DIR [--allocate N|ID,ID]... [--once]
"""

from __future__ import annotations

import argparse
import json
import signal
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path
from types import FrameType
from typing import Any

import grpc

from simdev.plugin.api import deviceplugin_pb2 as pb
from simdev.plugin.api import deviceplugin_pb2_grpc as pb_grpc
from simdev.plugin.config import resource_name_problem

SUPPORTED_VERSIONS = ("v1beta1",)
CALL_TIMEOUT_SECONDS = 5.0

# Called with an event name and its payload, from gRPC threads.
EventSink = Callable[[str, Any], None]


def _ignore(event: str, payload: Any) -> None:
    pass


class PluginConnection:
    """The fake kubelet's client for one registered plugin."""

    def __init__(self, directory: Path, request: pb.RegisterRequest, on_event: EventSink) -> None:
        self.request = request
        self.socket_path = directory / request.endpoint
        self._on_event = on_event
        self._channel = grpc.insecure_channel(f"unix:{self.socket_path}")
        self.stub = pb_grpc.DevicePluginStub(channel=self._channel)  # type: ignore[no-untyped-call]
        self._cond = threading.Condition()
        self._stream: Any = None
        self._closed = False
        self.options: pb.DevicePluginOptions | None = None
        self.lists: list[pb.ListAndWatchResponse] = []
        # Status the ListAndWatch stream ended with; OK means the plugin ended it.
        self.end: grpc.StatusCode | None = None
        self._thread = threading.Thread(target=self._watch, name="fake-kubelet-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        end = grpc.StatusCode.OK
        try:
            options = self.stub.GetDevicePluginOptions(
                pb.Empty(), timeout=CALL_TIMEOUT_SECONDS, wait_for_ready=True
            )
            with self._cond:
                self.options = options
                if self._closed:
                    return
                self._stream = self.stub.ListAndWatch(pb.Empty(), wait_for_ready=True)
                self._cond.notify_all()
            for response in self._stream:
                with self._cond:
                    self.lists.append(response)
                    self._cond.notify_all()
                self._on_event("devices", response)
        except grpc.RpcError as err:
            end = err.code()
        finally:
            with self._cond:
                self.end = end
                self._cond.notify_all()
            self._on_event("stream-end", end)

    def wait_for_list(
        self,
        predicate: Callable[[pb.ListAndWatchResponse], bool] = lambda _: True,
        timeout: float = CALL_TIMEOUT_SECONDS,
    ) -> pb.ListAndWatchResponse:
        """Waits until the latest device list satisfies predicate and returns it."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: bool(self.lists) and predicate(self.lists[-1]), timeout
            )
            if not ok:
                got = self.lists[-1] if self.lists else "nothing"
                raise TimeoutError(f"no matching ListAndWatch update within {timeout}s (got {got})")
            return self.lists[-1]

    def wait_for_end(self, timeout: float = CALL_TIMEOUT_SECONDS) -> grpc.StatusCode:
        with self._cond:
            if not self._cond.wait_for(lambda: self.end is not None, timeout):
                raise TimeoutError(f"ListAndWatch stream still open after {timeout}s")
            assert self.end is not None
            return self.end

    def health(self) -> dict[str, str]:
        """Device ID -> health from the latest list."""
        with self._cond:
            latest = self.lists[-1] if self.lists else pb.ListAndWatchResponse()
        return {d.ID: d.health for d in latest.devices}

    def allocate(self, containers: Sequence[Sequence[str]]) -> pb.AllocateResponse:
        request = pb.AllocateRequest(
            container_requests=[pb.ContainerAllocateRequest(devices_ids=ids) for ids in containers]
        )
        response: pb.AllocateResponse = self.stub.Allocate(request, timeout=CALL_TIMEOUT_SECONDS)
        return response

    def preferred(
        self, available: Sequence[str], must_include: Sequence[str], size: int
    ) -> list[str]:
        request = pb.PreferredAllocationRequest(
            container_requests=[
                pb.ContainerPreferredAllocationRequest(
                    available_deviceIDs=available,
                    must_include_deviceIDs=must_include,
                    allocation_size=size,
                )
            ]
        )
        response = self.stub.GetPreferredAllocation(request, timeout=CALL_TIMEOUT_SECONDS)
        return list(response.container_responses[0].deviceIDs)

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            stream = self._stream
        if stream is not None:
            stream.cancel()
        self._channel.close()
        self._thread.join(timeout=2)


class FakeKubelet:
    def __init__(self, directory: Path, on_event: EventSink = _ignore) -> None:
        self.directory = directory
        self.socket_path = directory / "kubelet.sock"
        self._on_event = on_event
        self._cond = threading.Condition()
        self._server: grpc.Server | None = None
        self.registrations: list[pb.RegisterRequest] = []
        self.connections: list[PluginConnection] = []

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            "v1beta1.Registration",
            {
                "Register": grpc.unary_unary_rpc_method_handler(
                    self._register,
                    request_deserializer=pb.RegisterRequest.FromString,
                    response_serializer=pb.Empty.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"unix:{self.socket_path}")
        server.start()
        self._server = server

    def stop(self) -> None:
        """Stops serving and drops the plugin connections, like a dying kubelet."""
        with self._cond:
            connections = list(self.connections)
            server, self._server = self._server, None
        for c in connections:
            c.close()  # closed connections stay listed, for assertions
        if server is not None:
            server.stop(0).wait()
        self.socket_path.unlink(missing_ok=True)

    def restart(self, wipe: bool = True) -> None:
        """A kubelet restart: stop, remove every socket in the directory, start again."""
        self.stop()
        if wipe:
            for entry in self.directory.iterdir():
                if stat.S_ISSOCK(entry.lstat().st_mode):
                    entry.unlink()
        self.start()

    def _register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> pb.Empty:
        if request.version not in SUPPORTED_VERSIONS:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"unsupported version {request.version!r}"
            )
        problem = resource_name_problem(request.resource_name)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"resource name: {problem}")
        if not request.endpoint or "/" in request.endpoint:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "endpoint must be a file name")
        connection = PluginConnection(self.directory, request, self._on_event)
        with self._cond:
            # A new registration for a resource replaces the old plugin connection.
            previous = [
                c
                for c in self.connections
                if c.request.resource_name == request.resource_name and not c.closed
            ]
            self.registrations.append(request)
            self.connections.append(connection)
            self._cond.notify_all()
        for c in previous:
            c.close()
        self._on_event("registered", request)
        connection.start()
        return pb.Empty()

    def wait_for_registration(
        self, count: int = 1, timeout: float = CALL_TIMEOUT_SECONDS
    ) -> PluginConnection:
        """Waits for the count-th registration overall; returns its plugin connection."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.registrations) >= count, timeout):
                raise TimeoutError(
                    f"{len(self.registrations)} registration(s) after {timeout}s, wanted {count}"
                )
            return self.connections[count - 1]


# Command line


def _device_list(response: pb.ListAndWatchResponse) -> str:
    if not response.devices:
        return "devices: (none)"
    return "devices: " + " ".join(f"{d.ID}={d.health}" for d in response.devices)


def _health_changes(before: dict[str, str], response: pb.ListAndWatchResponse) -> list[str]:
    """One line per device whose health differs from the previous list (added or removed too)."""
    after = {d.ID: d.health for d in response.devices}
    lines = [
        f"health: {i} {before.get(i, 'absent')} -> {after.get(i, 'absent')}"
        for i in sorted(before.keys() | after.keys(), key=lambda i: (len(i), i))
        if before.get(i) != after.get(i)
    ]
    before.clear()
    before.update(after)
    return lines


def _options(options: pb.DevicePluginOptions) -> str:
    return (
        f"pre_start_required={options.pre_start_required} "
        f"get_preferred_allocation_available={options.get_preferred_allocation_available}"
    )


def _container(response: pb.ContainerAllocateResponse) -> str:
    described = {
        "envs": dict(sorted(response.envs.items())),
        "devices": [
            {
                "container_path": d.container_path,
                "host_path": d.host_path,
                "permissions": d.permissions,
            }
            for d in response.devices
        ],
        "annotations": dict(sorted(response.annotations.items())),
    }
    return json.dumps(described)


def _parse_allocate(spec: str) -> int | list[str]:
    if spec.isdigit():
        return int(spec)
    ids = [s for s in spec.split(",") if s]
    if not ids:
        raise argparse.ArgumentTypeError("give a device count or comma-separated device IDs")
    return ids


def _allocate(conn: PluginConnection, specs: Sequence[int | list[str]]) -> bool:
    """Does what the kubelet does for a pod: pick devices (asking the plugin), allocate."""
    healthy = [d.ID for d in conn.wait_for_list().devices if d.health == "Healthy"]
    containers: list[list[str]] = []
    for spec in specs:
        if isinstance(spec, int):
            free = [i for i in healthy if all(i not in c for c in containers)]
            if len(free) < spec:
                print(f"allocate: only {len(free)} healthy free device(s), wanted {spec}")
                return False
            ids = free[:spec]
            if conn.options and conn.options.get_preferred_allocation_available:
                ids = conn.preferred(free, [], spec)
                print(f"preferred allocation of {spec}: {','.join(ids)}")
            containers.append(ids)
        else:
            containers.append(spec)
    try:
        response = conn.allocate(containers)
    except grpc.RpcError as err:
        wanted = ";".join(",".join(ids) for ids in containers)
        print(f"allocate {wanted}: failed: {err.code().name}: {err.details()}")
        return False
    for ids, container in zip(containers, response.container_responses, strict=True):
        print(f"allocate {','.join(ids)}: {_container(container)}")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simdev.plugin.fakekubelet",
        description="Pretend to be a kubelet for device plugins: serve kubelet.sock in DIR, "
        "connect back to plugins that register, print their device lists.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        required=True,
        help="device plugin directory (the plugin's DEVICE_PLUGIN_DIR)",
    )
    parser.add_argument(
        "--allocate",
        type=_parse_allocate,
        action="append",
        default=[],
        metavar="N|ID,ID",
        help="after the first device list, allocate for one container: N devices chosen with "
        "the plugin's preferred allocation, or the listed IDs; repeat for more containers "
        "(all go into one Allocate call)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="exit after the first device list and the allocation, if any "
        "(exit code 1 if the allocation failed)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=0,
        help="with --once: give up after this many seconds without a plugin (default: wait)",
    )
    args = parser.parse_args(argv)

    first_list = threading.Event()
    stop = threading.Event()
    health: dict[str, str] = {}

    def on_event(event: str, payload: Any) -> None:
        if event == "registered":
            print(
                f"registered: resource={payload.resource_name} endpoint={payload.endpoint} "
                f"version={payload.version} {_options(payload.options)}",
                flush=True,
            )
        elif event == "devices":
            print(_device_list(payload), flush=True)
            # The first list is the inventory; later ones are changes worth calling out.
            changes = _health_changes(health, payload)
            if first_list.is_set() and changes:
                print("\n".join(changes), flush=True)
            first_list.set()
        elif event == "stream-end":
            print(f"ListAndWatch ended: {payload.name}", flush=True)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    kubelet = FakeKubelet(args.dir.absolute(), on_event)
    try:
        kubelet.start()
    except (OSError, RuntimeError) as err:
        print(f"fake kubelet: cannot serve {kubelet.socket_path}: {err}", file=sys.stderr)
        return 1
    print(f"fake kubelet: serving {kubelet.socket_path} (Ctrl-C to stop)", flush=True)
    code = 0
    try:
        waited = 0.0
        while not first_list.wait(0.2):
            waited += 0.2
            if stop.is_set() or (args.once and args.timeout and waited >= args.timeout):
                if not stop.is_set():
                    print(f"no plugin registered within {args.timeout}s", file=sys.stderr)
                    code = 1
                return code
        conn = kubelet.connections[-1]
        if conn.options is not None:
            match = conn.options == conn.request.options
            print(f"GetDevicePluginOptions {'matches' if match else 'DIFFERS FROM'} Register")
        if args.allocate and not _allocate(conn, args.allocate):
            code = 1
        sys.stdout.flush()
        if not args.once:
            stop.wait()
    finally:
        kubelet.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
