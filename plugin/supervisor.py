"""Keeps the plugin served and registered for as long as it runs.

Polls twice a second for two things: our socket still being there (a restarting
kubelet wipes the device plugin directory) and the identity of kubelet.sock (a
restarted kubelet recreates it). Either change means: serve on a fresh socket and
register again. A missing kubelet is waited for; failed registrations are retried.
While ``hold`` says so, it stops serving and removes the socket, exactly as a crashed plugin
looks to the kubelet, and comes back with a fresh socket and registration afterwards.

The registration request comes from a callable and may change while the plugin runs (its
options, say). The kubelet reads a plugin's options only when it connects, so a changed
request is sent the way a restarted plugin would: on a fresh socket, registered again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from simdev.plugin.api import deviceplugin_pb2 as pb
from simdev.plugin.kubelet import (
    Cancelled,
    RegistrationError,
    SocketIdentity,
    register,
    socket_identity,
)
from simdev.plugin.server import PluginServer, SocketBusy

log = logging.getLogger("simdev.plugin")

POLL_SECONDS = 0.5
# Retry delays double up to this; small enough to re-register well within 5 seconds
# of a kubelet restart even when its first attempts are refused.
MAX_RETRY_SECONDS = 2.0


class Supervisor:
    def __init__(
        self,
        server: PluginServer,
        kubelet_socket: Path,
        request: Callable[[], pb.RegisterRequest],
        poll_seconds: float = POLL_SECONDS,
        hold: Callable[[], bool] = lambda: False,
        on_registered: Callable[[], None] = lambda: None,
    ) -> None:
        self._server = server
        self._hold = hold
        self._on_registered = on_registered
        self._held = False
        self._kubelet_socket = kubelet_socket
        self._request = request
        self._sent: pb.RegisterRequest | None = None  # what the kubelet last accepted
        self._poll = poll_seconds
        self._registered_for: SocketIdentity | None = None  # kubelet we registered with
        self._served_for: SocketIdentity | None = None  # kubelet the socket was made for
        self._registrations = 0
        self._kubelet_seen = True  # so a missing kubelet at start is logged once
        self._retry_at = 0.0
        self._retry_delay = POLL_SECONDS
        self._serving = False
        self._busy_logged = False

    def run(self, stop: threading.Event) -> None:
        """Serves until stop is set, then stops the server and removes the socket."""
        self._held = self._hold()
        self._serving = False
        try:
            while not stop.is_set():
                if self._holding():
                    stop.wait(self._poll)
                    continue
                if not self._serving:
                    self._serving = self._start()
                if self._serving:
                    self._tick(stop)
                stop.wait(self._poll)
        except Cancelled:
            pass
        finally:
            self._server.stop()
            log.info("stopped", extra={"fields": {"socket": str(self._server.socket_path)}})

    def _start(self) -> bool:
        """Serves on a fresh socket; False while another live plugin holds the path."""
        try:
            self._server.restart()
        except SocketBusy as err:
            if not self._busy_logged:
                log.error(
                    "socket taken by a live plugin; waiting for it to go",
                    extra={"fields": {"error": str(err)}},
                )
                self._busy_logged = True
            return False
        self._busy_logged = False
        self._served_for = socket_identity(self._kubelet_socket)
        self._registered_for = None
        self._retry_at = 0.0
        self._retry_delay = POLL_SECONDS
        return True

    def _holding(self) -> bool:
        """Goes down or comes back when hold changes; True while down."""
        held = self._hold()
        if held and not self._held:
            log.warning(
                "going down on request: socket removed",
                extra={"fields": {"socket": str(self._server.socket_path)}},
            )
            self._server.stop()
            self._serving = False
        elif self._held and not held:
            log.info("coming back up", extra={"fields": {"socket": str(self._server.socket_path)}})
        self._held = held
        return held

    def _tick(self, stop: threading.Event) -> None:
        kubelet = socket_identity(self._kubelet_socket)
        if not self._server.socket_intact():
            log.warning(
                "plugin socket gone, serving on a fresh socket",
                extra={"fields": {"socket": str(self._server.socket_path)}},
            )
            if not self._fresh_socket():
                return
        if kubelet is None:
            if self._kubelet_seen:
                log.info(
                    "waiting for the kubelet",
                    extra={"fields": {"socket": str(self._kubelet_socket)}},
                )
                self._kubelet_seen = False
            return
        self._kubelet_seen = True
        if kubelet == self._registered_for:
            if self._request() != self._sent:
                log.info(
                    "registration changed, serving on a fresh socket to register again",
                    extra={"fields": {"socket": str(self._server.socket_path)}},
                )
                # Registering again happens on the next tick: the kubelet drops the old
                # connection when its stream ends, and must not take the new one with it.
                self._fresh_socket()
            return
        if self._registered_for is not None and self._served_for != kubelet:
            log.warning(
                "kubelet restarted, serving on a fresh socket",
                extra={"fields": {"socket": str(self._server.socket_path)}},
            )
            if not self._fresh_socket():
                return
        if time.monotonic() < self._retry_at:
            return
        self._register(kubelet, stop)

    def _fresh_socket(self) -> bool:
        # A new kubelet (or socket) deserves an immediate attempt, from _start.
        self._serving = self._start()
        return self._serving

    def _register(self, kubelet: SocketIdentity, stop: threading.Event) -> None:
        request = self._request()
        fields = {
            "resource": request.resource_name,
            "endpoint": request.endpoint,
            "kubelet": str(self._kubelet_socket),
        }
        try:
            register(self._kubelet_socket, request, stop)
        except RegistrationError as err:
            log.error(
                "registration failed",
                extra={"fields": {**fields, "error": str(err), "retry_in": self._retry_delay}},
            )
            self._retry_at = time.monotonic() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, MAX_RETRY_SECONDS)
            return
        self._registered_for = kubelet
        self._sent = request
        self._retry_delay = POLL_SECONDS
        self._registrations += 1
        self._on_registered()
        event = "registered with the kubelet" if self._registrations == 1 else "re-registered"
        log.info(event, extra={"fields": fields})
