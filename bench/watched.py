"""A list of objects kept current by one watch stream, each reduced to what the bench reads.

Waiting for a state by polling whole lists costs the API server far more than one stream:
a list of 500 nodes is 1.8 MB and about 0.1 s of its CPU, and at two lists a second that
slowed the very thing being measured. Events are read as raw JSON, not as the client's
models, which for thousands of objects cost the bench itself a fifth of a core.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

T = TypeVar("T")

# The server ends each watch after this long, and the stream is opened again from where it
# was: a stream that went quiet without an error is never waited on for longer.
WATCH_SECONDS = 60
RETRY_SECONDS = 1.0


class Watched(Generic[T]):
    def __init__(
        self,
        list_call: Callable[..., Any],
        digest: Callable[[Mapping[str, Any]], T],
        **list_args: Any,
    ) -> None:
        """list_call is a list method of the client (core.list_node, ...); digest keeps what
        the bench needs of an object; list_args narrow the list (label_selector, ...)."""
        self._call = list_call
        self._digest = digest
        self._args = list_args
        self._lock = threading.Lock()
        self._objects: dict[str, T] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)

    def __enter__(self) -> Watched[T]:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        # The thread ends at its stream's next event or timeout; it is a daemon, so an
        # exiting bench does not wait for it.
        self._stop.set()

    def objects(self) -> dict[str, T]:
        """The latest digest of every object, by namespace/name (or name)."""
        with self._lock:
            return dict(self._objects)

    def _relist(self) -> str:
        listed = json.loads(self._call(_preload_content=False, **self._args).data)
        with self._lock:
            self._objects = {_key(o): self._digest(o) for o in listed["items"]}
        version: str = listed["metadata"]["resourceVersion"]
        return version

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._relist()
                version = self._follow(version)
            except (ApiException, urllib3.exceptions.HTTPError, OSError):
                version = ""
                self._stop.wait(RETRY_SECONDS)

    def _follow(self, version: str) -> str:
        """One watch stream from version; returns where to go on ("" to list again)."""
        response = self._call(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=WATCH_SECONDS + 10,
            _preload_content=False,
            **self._args,
        )
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                event = json.loads(line)
                if event["type"] == "ERROR":  # mostly 410 Gone: the version is too old
                    return ""
                obj = event["object"]
                version = obj["metadata"]["resourceVersion"]
                if event["type"] == "BOOKMARK":
                    continue
                with self._lock:
                    if event["type"] == "DELETED":
                        self._objects.pop(_key(obj), None)
                    else:
                        self._objects[_key(obj)] = self._digest(obj)
                if self._stop.is_set():
                    break
        finally:
            response.release_conn()
        return version


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


def wait_for(what: str, timeout: float, check: Callable[[], bool], every: float = 0.1) -> float:
    """Seconds until check() holds (it reads memory, so it is asked often); fails after
    timeout."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start
