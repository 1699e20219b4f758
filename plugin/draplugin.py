"""Serving a DRA driver to the kubelet: the node service socket and the registration socket.

The kubelet's plugin watcher finds the registration socket in plugins_registry, asks it
for the driver's name and endpoint, and from then on calls the node service. Unlike the
device plugin's registration, nothing needs repeating after a kubelet restart: the new
kubelet finds the same socket again. A socket someone removed is served anew (which makes
the watcher register the driver again).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from simdev.plugin.draconfig import DraConfig
from simdev.plugin.draprepare import Preparer
from simdev.plugin.draservice import (
    DRA_WORKERS,
    REGISTRATION_WORKERS,
    DraNodeService,
    RegistrationService,
)
from simdev.plugin.server import PluginServer

log = logging.getLogger("simdev.plugin")

CHECK_SECONDS = 1.0


class DraPlugin:
    def __init__(
        self, cfg: DraConfig, preparer: Preparer, hold: Callable[[], bool] = lambda: False
    ) -> None:
        self.registration = RegistrationService(cfg.driver_name, cfg.socket_path)
        self._cfg = cfg
        # True while a PluginDown fault is active: the driver is gone from the kubelet.
        self._hold = hold
        # The node service first: the kubelet dials it as soon as it sees the registration.
        self._servers = (
            PluginServer(cfg.socket_path, lambda: DraNodeService(preparer), DRA_WORKERS),
            PluginServer(cfg.registration_path, lambda: self.registration, REGISTRATION_WORKERS),
        )

    def start(self) -> None:
        self._cfg.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self._cfg.registry_dir.mkdir(parents=True, exist_ok=True)
        self._cfg.cdi_dir.mkdir(parents=True, exist_ok=True)
        for server in self._servers:
            server.start()
        log.info(
            "serving DRA driver",
            extra={
                "fields": {
                    "driver": self._cfg.driver_name,
                    "socket": str(self._cfg.socket_path),
                    "registration": str(self._cfg.registration_path),
                }
            },
        )

    def stop(self) -> None:
        # The registration first: the kubelet then stops calling the node service.
        for server in reversed(self._servers):
            server.stop()

    def keep_serving(self, stop: threading.Event) -> None:
        """Until stop: serves a socket anew when its file was removed, none while held."""
        held = False
        while not stop.wait(CHECK_SECONDS):
            if self._hold() != held:
                held = not held
                self._set_down(held)
            if held:
                continue
            for server in self._servers:
                if not server.socket_intact():
                    log.warning(
                        "socket lost, serving anew",
                        extra={"fields": {"socket": str(server.socket_path)}},
                    )
                    server.restart()

    def _set_down(self, down: bool) -> None:
        """Both sockets go, as when a driver crashes, and come back together.

        The kubelet notices the registration socket's removal and forgets the driver until
        the socket is back.
        """
        if down:
            self.stop()
        else:
            self.start()
        log.info("DRA driver " + ("down (PluginDown)" if down else "back"))

    def run(self, stop: threading.Event) -> None:
        self.start()
        try:
            self.keep_serving(stop)
        finally:
            self.stop()
