"""The plugin as a process: start-up, kubelet restarts, signals and bad configuration."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from simdev.plugin.fakekubelet import FakeKubelet

# Real processes and sockets: a hang must fail fast, not stall the suite.
pytestmark = pytest.mark.timeout(45)

RunPlugin = Callable[..., Any]
DEVICES = ["simple-device-node-a-0", "simple-device-node-a-1"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_within_5s(
    kubelet: FakeKubelet, run_plugin: RunPlugin, signum: int
) -> None:
    plugin = run_plugin()
    conn = kubelet.wait_for_registration(timeout=15)
    assert DEVICES[0] == conn.wait_for_list().devices[0].ID
    plugin.signal(signum)
    started = time.monotonic()
    assert plugin.wait(timeout=5) == 0
    assert time.monotonic() - started < 5
    assert not plugin.socket_path.exists()
    # The kubelet sees the stream end normally, not a broken connection.
    assert conn.wait_for_end() == grpc.StatusCode.OK
    assert "stopping signal=" in plugin.log()


def test_started_before_the_kubelet(plugin_dir: Path, run_plugin: RunPlugin) -> None:
    plugin = run_plugin()
    plugin.wait_for_log("waiting for the kubelet")
    assert stat.S_ISSOCK(os.lstat(plugin.socket_path).st_mode)  # serving already
    kubelet = FakeKubelet(plugin_dir)
    kubelet.start()
    try:
        conn = kubelet.wait_for_registration(timeout=5)
        assert [d.ID for d in conn.wait_for_list().devices] == DEVICES
    finally:
        kubelet.stop()


def test_kubelet_restart_that_wipes_sockets(kubelet: FakeKubelet, run_plugin: RunPlugin) -> None:
    plugin = run_plugin()
    first = kubelet.wait_for_registration(timeout=15)
    first.wait_for_list()
    plugin.wait_for_log("registered with the kubelet")

    kubelet.restart(wipe=True)
    second = kubelet.wait_for_registration(count=2, timeout=5)
    assert [d.ID for d in second.wait_for_list().devices] == DEVICES
    (container,) = second.allocate([[DEVICES[1]]]).container_responses
    assert container.envs == {} and len(container.devices) == 0
    plugin.wait_for_log("re-registered")
    # Served on a fresh socket: a second "serving" after the wipe was noticed.
    assert plugin.log().count(" serving socket=") == 2
    assert "plugin socket gone, serving on a fresh socket" in plugin.log()


def test_kubelet_restart_that_keeps_our_socket(kubelet: FakeKubelet, run_plugin: RunPlugin) -> None:
    plugin = run_plugin()
    kubelet.wait_for_registration(timeout=15).wait_for_list()
    kubelet.restart(wipe=False)
    second = kubelet.wait_for_registration(count=2, timeout=5)
    assert [d.ID for d in second.wait_for_list().devices] == DEVICES
    plugin.wait_for_log("kubelet restarted, serving on a fresh socket")


def test_lost_socket_is_served_again(kubelet: FakeKubelet, run_plugin: RunPlugin) -> None:
    plugin = run_plugin()
    kubelet.wait_for_registration(timeout=15).wait_for_list()
    plugin.socket_path.unlink()
    second = kubelet.wait_for_registration(count=2, timeout=5)
    assert second.wait_for_list().devices
    plugin.wait_for_log("plugin socket gone")


def test_stale_socket_is_replaced(
    plugin_dir: Path, kubelet: FakeKubelet, run_plugin: RunPlugin
) -> None:
    stale = plugin_dir / "simple-device-plugin.sock"
    # A socket file nobody listens on, as a killed plugin leaves behind.
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    plugin = run_plugin()
    conn = kubelet.wait_for_registration(timeout=15)
    assert conn.wait_for_list().devices
    plugin.wait_for_log("registered with the kubelet")
    log = plugin.log()
    assert log.index("removed stale socket") < log.index(" serving socket=")


def test_a_live_socket_is_never_taken(
    plugin_dir: Path, kubelet: FakeKubelet, run_plugin: RunPlugin
) -> None:
    first = run_plugin()
    kubelet.wait_for_registration(timeout=15).wait_for_list()
    inode = first.socket_path.stat().st_ino
    # A second plugin with the same name: it must wait, not unlink the first one's socket.
    second = run_plugin(NUMBER_DEVICES="5")
    second.wait_for_log("socket taken by a live plugin")
    time.sleep(1.5)  # three of its polls
    assert first.socket_path.stat().st_ino == inode
    assert len(kubelet.connections) == 1
    assert second.log().count("socket taken by a live plugin") == 1  # logged once, not per poll
    # Once the first is gone, the second takes over.
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 0
    conn = kubelet.wait_for_registration(count=2, timeout=10)
    assert len(conn.wait_for_list(lambda r: len(r.devices) == 5).devices) == 5


def test_json_logs_one_object_per_line(kubelet: FakeKubelet, run_plugin: RunPlugin) -> None:
    plugin = run_plugin("--log-format", "json")
    conn = kubelet.wait_for_registration(timeout=15)
    plugin.wait_for_log("registered with the kubelet")
    conn.allocate([[DEVICES[0]]])
    with pytest.raises(grpc.RpcError):
        conn.allocate([["nope"]])
    plugin.wait_for_log("allocation refused")
    plugin.signal(signal.SIGTERM)
    assert plugin.wait(timeout=5) == 0
    entries = [json.loads(line) for line in plugin.log().splitlines()]
    messages = [e["msg"] for e in entries]
    assert "registered with the kubelet" in messages
    allocated = next(e for e in entries if e["msg"] == "allocated")
    assert allocated["containers"] == DEVICES[0]
    refused = next(e for e in entries if e["msg"] == "allocation refused")
    assert refused["level"] == "error" and refused["code"] == "NOT_FOUND"
    assert all({"time", "level", "msg"} <= e.keys() for e in entries)


def test_log_format_from_environment(kubelet: FakeKubelet, run_plugin: RunPlugin) -> None:
    plugin = run_plugin(LOG_FORMAT="json")
    plugin.wait_for_log("registered with the kubelet")
    assert all(json.loads(line)["msg"] for line in plugin.log().splitlines())


def test_check_command(kubelet: FakeKubelet, run_plugin: RunPlugin, plugin_env: Any) -> None:
    def check() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "simdev.plugin", "check"]
        return subprocess.run(command, env=plugin_env, capture_output=True, text=True, timeout=15)

    missing = check()
    assert missing.returncode == 1 and "no socket" in missing.stderr
    plugin = run_plugin()
    kubelet.wait_for_registration(timeout=15)
    ok = check()
    assert ok.returncode == 0, ok.stderr
    plugin.signal(signal.SIGTERM)
    plugin.wait(timeout=5)
    assert check().returncode == 1


BAD = [
    ({"NUMBER_DEVICES": "abc"}, 'invalid NUMBER_DEVICES "abc": must be a non-negative integer'),
    ({"NUMBER_DEVICES": "-2"}, 'invalid NUMBER_DEVICES "-2": must be a non-negative integer'),
    ({"RESOURCE_NAME": "simple-device"}, 'invalid RESOURCE_NAME "simple-device": must be'),
    ({"RESOURCE_NAME": "kubernetes.io/x"}, "kubernetes.io domain is reserved"),
    ({"RESOURCE_NAME": "gpu.kubernetes.io/x"}, "kubernetes.io domain is reserved"),
    ({"RESOURCE_NAME": "k8s.io/x"}, "k8s.io domain is reserved"),
    ({"PLUGIN_NAME": "a/b"}, 'invalid PLUGIN_NAME "a/b": must be a socket file name'),
    ({"PLUGIN_NAME": "kubelet"}, 'invalid PLUGIN_NAME "kubelet"'),
    ({"NODE_NAME": ""}, "NODE_NAME is required"),
    ({"ENV_PREFIX": "9X"}, 'invalid ENV_PREFIX "9X"'),
    ({"DEVICE_FILE_PREFIX": "../x"}, 'invalid DEVICE_FILE_PREFIX "../x"'),
    ({"LOG_FORMAT": "xml"}, 'invalid LOG_FORMAT "xml"'),
]


@pytest.mark.parametrize(("env", "message"), BAD, ids=[next(iter(e)) for e, _ in BAD])
def test_bad_configuration_exits_2_with_one_line(
    run_plugin: RunPlugin, env: dict[str, str], message: str
) -> None:
    plugin = run_plugin(**env)
    assert plugin.wait(timeout=15) == 2
    lines = plugin.log().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("simdev-plugin: ") and message in lines[0]
    assert not plugin.socket_path.exists()


def test_bad_config_file_key_exits_2(plugin_dir: Path, run_plugin: RunPlugin) -> None:
    cfg = plugin_dir / "plugin.yaml"
    cfg.write_text("numberDevices: 3\ndeviceCount: 4\n")
    plugin = run_plugin("--config", str(cfg))
    assert plugin.wait(timeout=15) == 2
    (line,) = plugin.log().splitlines()
    assert line.startswith(f"simdev-plugin: unknown key(s) in --config {cfg}: deviceCount")


def test_config_file_overrides_environment(
    plugin_dir: Path, kubelet: FakeKubelet, run_plugin: RunPlugin
) -> None:
    cfg = plugin_dir / "plugin.json"
    cfg.write_text(json.dumps({"numberDevices": 1, "deviceIdPrefix": "from-file"}))
    run_plugin("--config", str(cfg), NUMBER_DEVICES="5")
    conn = kubelet.wait_for_registration(timeout=15)
    assert [d.ID for d in conn.wait_for_list().devices] == ["from-file-node-a-0"]
