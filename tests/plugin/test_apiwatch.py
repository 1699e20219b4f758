"""The stdlib API watch against a real loopback HTTP server that plays a scripted API server.

Each test queues list replies and watch replies; the server records every request (path,
query, Authorization) so the tests can assert what the client asked for.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from simdev.plugin.apiwatch import InClusterAPI

PATH = "/apis/simdev.io/v1alpha1/simulateddevices"
NAME = "dev-a"
Obj = dict[str, Any]


def device(version: str, count: int = 2) -> Obj:
    return {
        "apiVersion": "simdev.io/v1alpha1",
        "kind": "SimulatedDevice",
        "metadata": {"name": NAME, "resourceVersion": version},
        "spec": {"count": count},
    }


def listing(version: str, *items: Obj) -> Obj:
    return {
        "kind": "SimulatedDeviceList",
        "metadata": {"resourceVersion": version},
        "items": [*items],
    }


def event(kind: str, obj: Obj) -> Obj:
    return {"type": kind, "object": obj}


def bookmark(version: str) -> Obj:
    return event("BOOKMARK", {"kind": "SimulatedDevice", "metadata": {"resourceVersion": version}})


def gone_event() -> Obj:
    status = {"kind": "Status", "status": "Failure", "code": 410, "reason": "Expired"}
    return event("ERROR", {**status, "message": "too old resource version"})


@dataclass
class Reply:
    status: int = 200
    body: Obj | None = None  # a list reply
    events: list[Obj] = field(default_factory=list)  # a watch reply's stream
    hold: bool = False  # keep the stream open after the events, as an idle watch does
    gate: threading.Event | None = None  # send nothing until this is set


@dataclass(frozen=True)
class Seen:
    path: str
    raw_query: str
    authorization: str | None

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.raw_query))

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch") == "1"


class FakeAPIServer:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.lists: queue.Queue[Reply] = queue.Queue()
        self.watches: queue.Queue[Reply] = queue.Queue()
        self.seen: list[Seen] = []
        self.changed = threading.Condition()
        self.closing = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def record(self, seen: Seen) -> None:
        with self.changed:
            self.seen.append(seen)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 5) -> list[Seen]:
        """The first count requests, once the server has had them."""
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.seen) >= count, timeout):
                raise AssertionError(f"{len(self.seen)} requests, wanted {count}: {self.seen}")
            return self.seen[:count]

    def close(self) -> None:
        self.closing.set()  # releases held streams
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(server: FakeAPIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked streams need it

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            seen = Seen(url.path, url.query, self.headers.get("Authorization"))
            server.record(seen)
            replies = server.watches if seen.is_watch else server.lists
            try:
                reply = replies.get_nowait()
            except queue.Empty:  # unscripted: watches idle, lists fail
                reply = Reply(hold=True) if seen.is_watch else Reply(status=503)
            self.close_connection = True
            try:
                if reply.gate is not None:
                    reply.gate.wait(5)
                if reply.status != 200:
                    self._json(reply.status, {"kind": "Status", "message": "scripted failure"})
                elif seen.is_watch:
                    self._stream(reply)
                else:
                    self._json(200, reply.body or listing("1"))
            except OSError:
                pass  # the client went away

        def _json(self, status: int, body: Obj) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, reply: Reply) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            for e in reply.events:
                line = json.dumps(e).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            if reply.hold:
                server.closing.wait(10)
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@dataclass
class Watcher:
    thread: threading.Thread
    stop: threading.Event
    events: queue.Queue[Obj | None]

    def next(self, timeout: float = 5) -> Obj | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout}s") from None

    def assert_quiet(self, seconds: float = 0.2) -> None:
        with pytest.raises(queue.Empty):
            extra = self.events.get(timeout=seconds)
            pytest.fail(f"unexpected event {extra}")

    def halt(self, timeout: float = 1) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"watch did not stop within {timeout}s"


@pytest.fixture
def server() -> Iterator[FakeAPIServer]:
    s = FakeAPIServer()
    yield s
    s.close()


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("t1\n")
    return path


@pytest.fixture
def api(server: FakeAPIServer, token: Path) -> InClusterAPI:
    return replace(InClusterAPI.from_url(server.url(), token), retry_seconds=(0.05, 0.2))


@pytest.fixture
def watch() -> Iterator[Callable[[InClusterAPI], Watcher]]:
    started: list[Watcher] = []

    def start(api: InClusterAPI) -> Watcher:
        events: queue.Queue[Obj | None] = queue.Queue()
        stop = threading.Event()
        w = Watcher(api.start_watch(PATH, NAME, events.put, stop), stop, events)
        started.append(w)
        return w

    yield start
    for w in started:
        w.halt(timeout=5)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def fields(record: logging.LogRecord) -> dict[str, Any]:
    value: dict[str, Any] = getattr(record, "fields", {})
    return value


@pytest.fixture
def warnings() -> Iterator[list[logging.LogRecord]]:
    """What the watch logs (at INFO and up) during the test."""
    logger = logging.getLogger("simdev.plugin")
    handler, saved = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(saved)


def test_list_delivers_the_object_then_watches_from_its_version(
    server: FakeAPIServer, api: InClusterAPI, watch: Callable[[InClusterAPI], Watcher]
) -> None:
    server.lists.put(Reply(body=listing("5", device("5"))))
    w = watch(api)
    assert w.next() == device("5")
    first, second = server.wait_for(2)
    assert (first.path, first.raw_query) == (PATH, "fieldSelector=metadata.name%3Ddev-a")
    assert second.path == PATH
    assert second.query == {
        "fieldSelector": "metadata.name=dev-a",
        "resourceVersion": "5",
        "watch": "1",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "60",
    }
    w.assert_quiet()


def test_absent_object_is_none(
    server: FakeAPIServer, api: InClusterAPI, watch: Callable[[InClusterAPI], Watcher]
) -> None:
    server.lists.put(Reply(body=listing("3")))
    w = watch(api)
    assert w.next() is None
    assert server.wait_for(2)[1].query["resourceVersion"] == "3"


def test_watch_events_deliver_each_change_once(
    server: FakeAPIServer, api: InClusterAPI, watch: Callable[[InClusterAPI], Watcher]
) -> None:
    server.lists.put(Reply(body=listing("5", device("5"))))
    events = [event("MODIFIED", device("6", 4)), event("DELETED", device("7", 4))]
    events.append(event("ADDED", device("8", 1)))
    server.watches.put(Reply(events=events, hold=True))
    w = watch(api)
    assert [w.next() for _ in range(4)] == [device("5"), device("6", 4), None, device("8", 1)]
    w.assert_quiet()


def test_bookmark_advances_the_version_of_the_next_watch(
    server: FakeAPIServer, api: InClusterAPI, watch: Callable[[InClusterAPI], Watcher]
) -> None:
    server.lists.put(Reply(body=listing("5", device("5"))))
    server.watches.put(Reply(events=[bookmark("9")]))  # then the server ends the watch
    w = watch(api)
    assert w.next() == device("5")
    requests = server.wait_for(3)
    assert [r.is_watch for r in requests] == [False, True, True]  # no relist
    assert requests[2].query["resourceVersion"] == "9"
    w.assert_quiet()  # a bookmark is no change


def test_ended_watch_resumes_from_the_last_event(
    server: FakeAPIServer, api: InClusterAPI, watch: Callable[[InClusterAPI], Watcher]
) -> None:
    server.lists.put(Reply(body=listing("5", device("5"))))
    server.watches.put(Reply(events=[event("MODIFIED", device("6", 3))]))
    w = watch(api)
    assert [w.next(), w.next()] == [device("5"), device("6", 3)]
    requests = server.wait_for(3)
    assert [r.is_watch for r in requests] == [False, True, True]
    assert requests[2].query["resourceVersion"] == "6"


@pytest.mark.parametrize(
    "gone", [Reply(events=[gone_event()]), Reply(status=410)], ids=["error-event", "http-410"]
)
def test_gone_relists(
    server: FakeAPIServer,
    api: InClusterAPI,
    watch: Callable[[InClusterAPI], Watcher],
    gone: Reply,
    warnings: list[logging.LogRecord],
) -> None:
    server.lists.put(Reply(body=listing("5", device("5"))))
    server.watches.put(gone)
    server.lists.put(Reply(body=listing("20", device("20", 7))))
    w = watch(api)
    assert [w.next(), w.next()] == [device("5"), device("20", 7)]
    requests = server.wait_for(4)
    assert [r.is_watch for r in requests] == [False, True, False, True]
    assert requests[3].query["resourceVersion"] == "20"
    assert [r.levelno for r in warnings] == [logging.INFO]  # expected, so no warning


def test_server_error_is_logged_and_retried(
    server: FakeAPIServer,
    api: InClusterAPI,
    watch: Callable[[InClusterAPI], Watcher],
    warnings: list[logging.LogRecord],
) -> None:
    server.lists.put(Reply(status=500))
    server.lists.put(Reply(body=listing("5", device("5"))))
    server.watches.put(Reply(status=500))  # a failed watch resumes; it does not relist
    w = watch(api)
    assert w.next() == device("5")
    requests = server.wait_for(4)
    assert [r.is_watch for r in requests] == [False, False, True, True]
    assert requests[3].query["resourceVersion"] == "5"
    w.assert_quiet()
    assert len(warnings) == 2
    assert warnings[0].getMessage() == "API request failed, retrying"
    assert fields(warnings[0]) == {
        "path": PATH,
        "name": NAME,
        "error": "HTTP 500 Internal Server Error: scripted failure",
        "retry_seconds": 0.05,
    }


def test_unreachable_server_backs_off_until_stopped(
    token: Path, watch: Callable[[InClusterAPI], Watcher], warnings: list[logging.LogRecord]
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = InClusterAPI("127.0.0.1", port, token, tls=False, retry_seconds=(0.02, 0.08))
    w = watch(api)
    deadline = time.monotonic() + 5
    while len(warnings) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    delays = [fields(r)["retry_seconds"] for r in warnings[:4]]
    assert delays == [0.02, 0.04, 0.08, 0.08]
    assert "ConnectionRefusedError" in fields(warnings[0])["error"]
    w.halt()


def test_token_is_read_for_every_connection(
    server: FakeAPIServer, api: InClusterAPI, token: Path, watch: Callable[[InClusterAPI], Watcher]
) -> None:
    gate = threading.Event()
    server.lists.put(Reply(body=listing("5", device("5"))))
    server.watches.put(Reply(gate=gate))  # ends once the token has changed
    watch(api)
    server.wait_for(2)
    token.write_text("t2\n")  # as the kubelet rotates a projected token
    gate.set()
    auth = [r.authorization for r in server.wait_for(3)]
    assert auth == ["Bearer t1", "Bearer t1", "Bearer t2"]


def test_stop_ends_an_idle_watch_promptly(
    server: FakeAPIServer, api: InClusterAPI, watch: Callable[[InClusterAPI], Watcher]
) -> None:
    server.lists.put(Reply(body=listing("5", device("5"))))
    w = watch(api)
    assert w.next() == device("5")
    server.wait_for(2)  # the watch is open and silent
    start = time.monotonic()
    w.halt(timeout=1)
    assert time.monotonic() - start < 0.5


def test_from_environment(tmp_path: Path) -> None:
    assert InClusterAPI.from_environment({}) is None
    assert InClusterAPI.from_environment({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) is None
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    api = InClusterAPI.from_environment(env, service_account=tmp_path)
    assert api == InClusterAPI("127.0.0.1", 6443, tmp_path / "token", tmp_path / "ca.crt")
    default = InClusterAPI.from_environment(env)
    assert default is not None
    assert default.token_path == Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    assert default.tls
    with pytest.raises(ValueError, match="not a port number"):
        InClusterAPI.from_environment({**env, "KUBERNETES_SERVICE_PORT": "https"})


# TLS: a self-signed certificate for 127.0.0.1 stands in for the cluster CA.


def make_cert(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    command += f" -subj /CN={name} -addext subjectAltName=IP:127.0.0.1"
    args = [*command.split(), "-keyout", str(key), "-out", str(cert)]
    subprocess.run(args, check=True, capture_output=True)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_verifies_the_cluster_ca(
    tmp_path: Path,
    token: Path,
    watch: Callable[[InClusterAPI], Watcher],
    warnings: list[logging.LogRecord],
) -> None:
    cert, key = make_cert(tmp_path, "server")
    other, _ = make_cert(tmp_path, "other")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = FakeAPIServer(tls=context)
    try:
        server.lists.put(Reply(body=listing("5", device("5"))))
        trusted = InClusterAPI.from_url(server.url("https"), token, cert)
        assert trusted.tls
        w = watch(trusted)
        assert w.next() == device("5")
        assert server.wait_for(1)[0].authorization == "Bearer t1"
        w.halt()

        # Another CA: the handshake fails, so the token is never sent.
        count = len(server.seen)
        untrusted = InClusterAPI.from_url(server.url("https"), token, other)
        w = watch(replace(untrusted, retry_seconds=(0.05, 0.05)))
        deadline = time.monotonic() + 5
        while not warnings and time.monotonic() < deadline:
            time.sleep(0.01)
        w.halt()
        assert "CERTIFICATE_VERIFY_FAILED" in fields(warnings[0])["error"]
        assert len(server.seen) == count
    finally:
        server.close()
