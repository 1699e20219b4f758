"""The documented walkthrough: the fake kubelet's command line against the real plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)

FAKE_KUBELET = [sys.executable, "-m", "simdev.plugin.fakekubelet"]
# Two containers: two devices picked by the plugin's preference, and device 2 by ID.
ALLOCATE = ["--allocate", "2", "--allocate", "simple-device-node-a-2"]


def test_fake_kubelet_command_allocates_from_the_plugin(
    plugin_dir: Path, run_plugin: Callable[..., Any]
) -> None:
    run_plugin(
        DEVICE_FILE_PREFIX="simple-device",
        ENV_PREFIX="SIMPLE_DEVICE",
        ANNOTATION_PREFIX="simdev.io/simple-device",
        NUMBER_DEVICES="3",
    )
    out = subprocess.run(
        [*FAKE_KUBELET, "--dir", str(plugin_dir), "--once", "--timeout", "20", *ALLOCATE],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=plugin_dir,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("registered: resource=example.com/simple-device ") for line in lines)
    assert "GetDevicePluginOptions matches Register" in lines
    assert "preferred allocation of 2: simple-device-node-a-0,simple-device-node-a-1" in lines
    allocations = {
        ids: json.loads(rest)
        for ids, _, rest in (
            line.removeprefix("allocate ").partition(": ")
            for line in lines
            if line.startswith("allocate ")
        )
    }
    second = allocations["simple-device-node-a-2"]
    assert second["envs"] == {
        "SIMPLE_DEVICE_2": "/dev/simple-device-2",
        "SIMPLE_DEVICE_VISIBLE_DEVICES": "simple-device-node-a-2",
    }
    assert allocations["simple-device-node-a-0,simple-device-node-a-1"]["devices"][1] == {
        "container_path": "/dev/simple-device-1",
        "host_path": "/dev/null",
        "permissions": "rw",
    }


def test_fake_kubelet_command_reports_a_refused_allocation(
    plugin_dir: Path, run_plugin: Callable[..., Any]
) -> None:
    run_plugin()
    out = subprocess.run(
        [*FAKE_KUBELET, "--dir", str(plugin_dir), "--allocate", "no-such-device", "--once"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=plugin_dir,
    )
    assert out.returncode == 1
    assert 'failed: NOT_FOUND: unknown device ID(s): "no-such-device"' in out.stdout


def test_fake_kubelet_command_shows_health_changes(
    plugin_dir: Path, run_plugin: Callable[..., Any]
) -> None:
    flap = "[{name: flap, type: Unhealthy, devices: {indices: [1]}, "
    flap += "schedule: {duration: 1s, every: 2s}}]"
    plugin = run_plugin(NUMBER_DEVICES="2", FAULTS=flap)
    cli = subprocess.Popen(
        [*FAKE_KUBELET, "--dir", str(plugin_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=plugin_dir,
    )
    wanted = {
        "health: simple-device-node-a-1 Healthy -> Unhealthy",
        "health: simple-device-node-a-1 Unhealthy -> Healthy",
    }
    seen: list[str] = []
    try:
        assert cli.stdout is not None
        for line in cli.stdout:  # bounded by the module timeout
            seen.append(line.rstrip())
            if wanted <= set(seen):
                break
    finally:
        cli.terminate()
        cli.wait(timeout=10)
    assert wanted <= set(seen), seen
    # The device that never flaps never shows up in a health line.
    assert not any("node-a-0 " in line for line in seen if line.startswith("health:"))
    plugin.wait_for_log("fault active")
