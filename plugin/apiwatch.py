"""Watches one Kubernetes object with the standard library only.

The plugin image must stay small, so instead of the ``kubernetes`` package this speaks the
API's list-then-watch protocol over http.client: one list (by name) for the object and a
resourceVersion, then watches from that version. Only a 410 (version too old) relists;
other failures are logged and retried with capped exponential backoff.

The object is handed to the callback as a dict (None when absent): once after every list
and once per watch event, so callers see each change once but must dedupe relists.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("simdev.plugin")

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
WATCH_SECONDS = 60  # the server ends each watch after this; we then watch again
READ_MARGIN_SECONDS = 15  # no byte for WATCH_SECONDS + this: the connection is dead
CONNECT_SECONDS = 5.0  # connect and TLS handshake; also bounds how late stop can act
RETRY_SECONDS = (0.5, 10.0)  # first retry delay, doubled up to the second
GET_SECONDS = 10.0  # one plain read (a DRA claim), well within the kubelet's call timeout

Object = dict[str, Any]
OnEvent = Callable[[Object | None], None]


class APIError(Exception):
    """A refused request or a broken stream: logged, then retried after a pause."""


class Gone(APIError):
    """The resourceVersion we watch from is too old (410): list again."""


@dataclass(frozen=True)
class InClusterAPI:
    """Where the API server is and how to authenticate; talks to host:port only."""

    host: str
    port: int
    token_path: Path | None = SERVICE_ACCOUNT / "token"  # None: no Authorization header
    ca_path: Path = SERVICE_ACCOUNT / "ca.crt"
    tls: bool = True  # False only for plain-http test servers
    watch_seconds: int = WATCH_SECONDS
    retry_seconds: tuple[float, float] = RETRY_SECONDS

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, service_account: Path = SERVICE_ACCOUNT
    ) -> InClusterAPI | None:
        """The in-cluster API from the service variables; None outside a cluster."""
        env = os.environ if environ is None else environ
        host = env.get("KUBERNETES_SERVICE_HOST", "")
        port = env.get("KUBERNETES_SERVICE_PORT", "")
        if not host or not port:
            return None
        if not port.isdigit():
            raise ValueError(f"KUBERNETES_SERVICE_PORT is not a port number: {port!r}")
        return cls(host, int(port), service_account / "token", service_account / "ca.crt")

    @classmethod
    def from_url(
        cls,
        base_url: str,
        token_path: Path | None = None,
        ca_path: Path = SERVICE_ACCOUNT / "ca.crt",
    ) -> InClusterAPI:
        """From "http://host:port" (tests' plain-http servers) or "https://host:port"."""
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname or url.path.strip("/"):
            raise ValueError(f"not an API server base URL: {base_url!r}")
        tls = url.scheme == "https"
        return cls(url.hostname, url.port or (443 if tls else 80), token_path, ca_path, tls)

    def connect(self) -> http.client.HTTPConnection:
        """A fresh connection; its reads time out a little after a watch should end."""
        if self.tls:
            # Built per connection so a rotated CA file is picked up; only that CA is trusted.
            context = ssl.create_default_context(cafile=str(self.ca_path))
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=CONNECT_SECONDS, context=context
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=CONNECT_SECONDS)
        conn.connect()
        conn.sock.settimeout(self.watch_seconds + READ_MARGIN_SECONDS)
        return conn

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "simdev-plugin"}
        if self.token_path is not None:
            # Read every time: projected service account tokens are rotated on disk.
            token = self.token_path.read_text(encoding="utf-8").strip()
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def get(self, path: str) -> Object | None:
        """One object by its path; None when the API server has none (404)."""
        conn = self.connect()
        try:
            # A single read: no watch to outlast, so a short deadline.
            conn.sock.settimeout(GET_SECONDS)
            conn.request("GET", path, None, self.headers())
            response = conn.getresponse()
            if response.status == 404:
                return None
            if response.status != 200:
                raise APIError(f"HTTP {response.status} {_status_message(response)}")
            found: Object = json.loads(response.read())
            return found
        finally:
            conn.close()

    def watch_object(self, path: str, name: str, on_event: OnEvent, stop: threading.Event) -> None:
        """Calls on_event with the named object under list path (None when absent) as it
        changes, until stop is set. path is a list path such as /api/v1/nodes."""
        _ObjectWatch(self, path, name, on_event, stop).run()

    def start_watch(
        self, path: str, name: str, on_event: OnEvent, stop: threading.Event
    ) -> threading.Thread:
        """Runs watch_object in a daemon thread; join it after setting stop."""
        thread = threading.Thread(
            target=self.watch_object,
            args=(path, name, on_event, stop),
            name=f"watch {path}/{name}",
            daemon=True,
        )
        thread.start()
        return thread


def watch_object(
    api: InClusterAPI, path: str, name: str, on_event: OnEvent, stop: threading.Event
) -> None:
    """Module-level form of InClusterAPI.watch_object."""
    api.watch_object(path, name, on_event, stop)


def start_watch(
    api: InClusterAPI, path: str, name: str, on_event: OnEvent, stop: threading.Event
) -> threading.Thread:
    """Module-level form of InClusterAPI.start_watch."""
    return api.start_watch(path, name, on_event, stop)


class _ObjectWatch:
    def __init__(
        self, api: InClusterAPI, path: str, name: str, on_event: OnEvent, stop: threading.Event
    ) -> None:
        self._api = api
        self._path = path
        self._selector = f"metadata.name={name}"
        self._name = name
        self._on_event = on_event
        self._stop = stop
        self._version: str | None = None  # None: list before watching
        self._delay = api.retry_seconds[0]
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        # Kept apart: http.client drops conn.sock once a "Connection: close" reply is read.
        self._sock: socket.socket | None = None
        self._response: http.client.HTTPResponse | None = None

    def run(self) -> None:
        # A blocked read only wakes when data comes, so stop is made to end the connection.
        threading.Thread(target=self._close_on_stop, name="watch stopper", daemon=True).start()
        while not self._stop.is_set():
            try:
                if self._version is None:
                    self._list()
                else:
                    self._watch()
            except Gone as e:
                log.info("resource version gone, listing again", extra={"fields": self._fields(e)})
                self._version = None
            except Exception as e:  # anything else: the thread must live on and retry
                if self._stop.is_set():
                    break
                log.warning(
                    "API request failed, retrying",
                    extra={"fields": {**self._fields(e), "retry_seconds": self._delay}},
                )
                self._stop.wait(self._delay)
                self._delay = min(self._delay * 2, self._api.retry_seconds[1])
            finally:
                self._close()

    def _list(self) -> None:
        body = json.loads(self._open({"fieldSelector": self._selector}).read())
        items = body.get("items") or []
        self._on_event(items[0] if items else None)
        # Only after the callback: if it failed, the next attempt lists again.
        self._version = str(body["metadata"]["resourceVersion"])

    def _watch(self) -> None:
        query = {
            "fieldSelector": self._selector,
            "resourceVersion": str(self._version),
            "watch": "1",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self._api.watch_seconds),
        }
        response = self._open(query)
        while not self._stop.is_set():
            line = response.readline()  # one JSON event per line; http.client unchunks
            if not line:
                return  # ended by the server (timeoutSeconds): watch again from _version
            if line.strip():
                self._handle(json.loads(line))

    def _handle(self, event: Any) -> None:
        kind, obj = event["type"], event["object"]
        if kind == "ERROR":
            message = f"watch error {obj.get('code')}: {obj.get('message', '')}"
            raise Gone(message) if obj.get("code") == 410 else APIError(message)
        version = str(obj["metadata"]["resourceVersion"])
        if kind in ("ADDED", "MODIFIED"):
            self._on_event(obj)
        elif kind == "DELETED":
            self._on_event(None)
        elif kind != "BOOKMARK":
            raise APIError(f"unknown watch event type {kind!r}")
        self._version = version

    def _open(self, query: dict[str, str]) -> http.client.HTTPResponse:
        conn = self._api.connect()
        with self._lock:
            self._conn, self._sock = conn, conn.sock
        if self._stop.is_set():  # set before the stopper could see this connection
            raise APIError("stopped")
        conn.request(
            "GET", f"{self._path}?{urllib.parse.urlencode(query)}", None, self._api.headers()
        )
        response = self._response = conn.getresponse()
        if response.status == 410 and "watch" in query:
            raise Gone(f"HTTP 410 {_status_message(response)}")
        if response.status != 200:
            raise APIError(f"HTTP {response.status} {_status_message(response)}")
        self._delay = self._api.retry_seconds[0]  # the server answers again
        return response

    def _close(self) -> None:
        with self._lock:
            conn, response = self._conn, self._response
            self._conn = self._sock = self._response = None
        if response is not None:
            response.close()
        if conn is not None:
            conn.close()

    def _close_on_stop(self) -> None:
        self._stop.wait()
        with self._lock:
            if self._sock is not None:
                # shutdown rather than close: wakes the blocked reader without freeing its
                # descriptor under it; the base method so an SSL socket is not touched.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def _fields(self, error: Exception) -> dict[str, Any]:
        text = str(error) if isinstance(error, APIError) else f"{type(error).__name__}: {error}"
        return {"path": self._path, "name": self._name, "error": text}


def _status_message(response: http.client.HTTPResponse) -> str:
    """The reason, plus the message of a Kubernetes Status body when there is one."""
    body = response.read(4096)
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    return f"{response.reason}: {message}" if message else response.reason
