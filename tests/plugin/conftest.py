"""Fixtures for the device plugin tests: a fake kubelet and the plugin, in or out of process.

Everything talks over real unix sockets in a short temporary directory (socket paths
are limited to 107 bytes, which pytest's own tmp_path can exceed).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from simdev.plugin.allocation import AllocationSettings
from simdev.plugin.api import deviceplugin_pb2 as pb
from simdev.plugin.devices import DeviceModel, make_devices
from simdev.plugin.fakekubelet import FakeKubelet, PluginConnection
from simdev.plugin.kubelet import register_request
from simdev.plugin.server import PluginServer
from simdev.plugin.service import (
    MAX_WATCH_STREAMS,
    UNARY_WORKERS,
    Behaviour,
    DevicePluginService,
    Fixed,
    plugin_options,
)
from simdev.plugin.supervisor import Supervisor

NODE = "node-a"
PLUGIN_VARS = (
    "NODE_NAME",
    "RESOURCE_NAME",
    "PLUGIN_NAME",
    "NUMBER_DEVICES",
    "DEVICE_ID_PREFIX",
    "ANNOTATION_PREFIX",
    "ENV_PREFIX",
    "DEVICE_FILE_PREFIX",
    "DEVICE_PLUGIN_DIR",
    "SIMULATED_DEVICE",
    "FAULTS",
    "LOG_FORMAT",
)


@pytest.fixture
def plugin_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sdp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def kubelet(plugin_dir: Path) -> Iterator[FakeKubelet]:
    k = FakeKubelet(plugin_dir)
    k.start()
    yield k
    k.stop()


# In-process plugin: the real framework and service, driven from a thread.


@dataclass
class InProcessPlugin:
    model: DeviceModel
    kubelet: FakeKubelet
    socket_path: Path
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def connection(self, count: int = 1) -> PluginConnection:
        """The fake kubelet's connection after the count-th registration."""
        return self.kubelet.wait_for_registration(count)

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
            assert not self.thread.is_alive(), "supervisor did not stop within 5s"


@pytest.fixture
def start_plugin(
    plugin_dir: Path, kubelet: FakeKubelet
) -> Iterator[Callable[..., InProcessPlugin]]:
    """Starts the plugin in this process: start_plugin(count=2, settings=...)."""
    started: list[InProcessPlugin] = []

    def start(
        count: int = 3,
        settings: AllocationSettings | None = None,
        resource: str = "example.com/simple-device",
        behaviour: Behaviour | None = None,
        hold: Callable[[], bool] = lambda: False,
        model: DeviceModel | None = None,
    ) -> InProcessPlugin:
        settings = settings or AllocationSettings(
            env_prefix="SIMPLE_DEVICE",
            device_file_prefix="simple-device",
            annotation_prefix="simdev.io/simple-device",
        )
        model = model or DeviceModel(make_devices("simple-device", NODE, count))
        socket_path = plugin_dir / "simple-device-plugin.sock"
        behaves = behaviour or Fixed(settings)
        server = PluginServer(
            socket_path,
            lambda: DevicePluginService(model, behaves),
            workers=MAX_WATCH_STREAMS + UNARY_WORKERS,
        )
        plugin = InProcessPlugin(model, kubelet, socket_path)

        def request() -> pb.RegisterRequest:
            options = plugin_options(behaves.allocation_settings().policy)
            return register_request(socket_path.name, resource, options)

        supervisor = Supervisor(server, kubelet.socket_path, request, poll_seconds=0.1, hold=hold)
        plugin.thread = threading.Thread(
            target=supervisor.run, args=(plugin.stop_event,), name="supervisor", daemon=True
        )
        plugin.thread.start()
        started.append(plugin)
        return plugin

    yield start
    for p in started:
        p.stop()


# Plugin as a subprocess: the installed entry point, as the kubelet would see it.


@dataclass
class PluginProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    socket_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(f"plugin exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {text!r} in the plugin log after {timeout}s:\n{self.log()}"
                )
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)


def plugin_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "simdev.plugin", *args]


def clean_env(**settings: str) -> dict[str, str]:
    """The test process's environment without plugin settings, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if k not in PLUGIN_VARS}
    env.update(settings)
    return env


@pytest.fixture
def plugin_env(plugin_dir: Path) -> dict[str, str]:
    return clean_env(
        NODE_NAME=NODE,
        DEVICE_PLUGIN_DIR=str(plugin_dir),
        NUMBER_DEVICES="2",
    )


@pytest.fixture
def run_plugin(
    plugin_dir: Path, plugin_env: dict[str, str]
) -> Iterator[Callable[..., PluginProcess]]:
    """Starts `python -m simdev.plugin`: run_plugin("--log-format", "json", FOO="bar")."""
    running: list[PluginProcess] = []

    def run(*args: str, **env: str) -> PluginProcess:
        log_path = plugin_dir / f"plugin-{len(running)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                plugin_command(*args),
                env={**plugin_env, **env},
                cwd=plugin_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        socket_name = f"{env.get('PLUGIN_NAME', 'simple-device-plugin')}.sock"
        p = PluginProcess(proc, log_path, plugin_dir / socket_name)
        running.append(p)
        return p

    yield run
    for p in running:
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGKILL)
            p.proc.wait(timeout=5)
