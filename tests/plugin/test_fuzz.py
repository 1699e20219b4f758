"""Fuzzing: no input makes the plugin crash, hang, or answer with anything but a clear code.

Settings and fault lists of any shape either load or fail with one ConfigError line.
Allocate and GetPreferredAllocation get unknown, duplicate, empty and very long ID lists
and up to 10,000 container requests over the real socket; a bounded flood of them must not
grow the plugin's memory without limit.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simdev.plugin.api import deviceplugin_pb2 as pb
from simdev.plugin.config import LIVE_KEYS, SETTINGS, ConfigError, load, with_spec
from simdev.plugin.fakekubelet import FakeKubelet
from simdev.plugin.faults import FaultError, parse_faults

pytestmark = pytest.mark.timeout(300)

NODE = "node-a"
# Codes a refused request may get; UNKNOWN or INTERNAL would mean an unhandled exception.
CLEAR_CODES = {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}

text = st.text(max_size=300)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([s.env for s in SETTINGS] + ["FAULTS"]), text))
def test_any_environment_loads_or_fails_with_one_line(env: dict[str, str]) -> None:
    try:
        load(env)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_fault_list_parses_or_fails_clearly(raw: Any) -> None:
    try:
        parse_faults(raw)
    except FaultError as err:
        assert "\n" not in str(err) and str(err)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(text, json_values, max_size=8))
def test_any_live_spec_applies_or_fails_with_one_line(spec: dict[str, Any]) -> None:
    base = load({"NODE_NAME": NODE})
    try:
        with_spec(base, spec, "SimulatedDevice fuzz")
    except ConfigError as err:
        assert "\n" not in str(err)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(LIVE_KEYS),
        json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "numaNodes": json_values,
                "replicas": json_values,
                "policy": json_values,
                "failRequestsGreaterThanOne": json_values,
            },
        ),
    )
)
def test_any_live_setting_applies_or_fails_with_one_line(spec: dict[str, Any]) -> None:
    base = load({"NODE_NAME": NODE})
    try:
        with_spec(base, spec, "SimulatedDevice fuzz")
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)


@pytest.fixture(scope="module")
def plugin() -> Any:
    """One real plugin process and fake kubelet, shared by the protocol fuzzers."""
    directory = Path(tempfile.mkdtemp(prefix="sdf-"))
    kubelet = FakeKubelet(directory)
    kubelet.start()
    env = {
        **os.environ,
        "NODE_NAME": NODE,
        "DEVICE_PLUGIN_DIR": str(directory),
        "NUMBER_DEVICES": "8",
        "ENV_PREFIX": "FUZZ",
        "DEVICE_FILE_PREFIX": "fuzz",
        "ANNOTATION_PREFIX": "fuzz.simdev.io/dev",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "simdev.plugin"], env=env, stderr=subprocess.DEVNULL
    )
    conn = kubelet.wait_for_registration(timeout=30)
    conn.wait_for_list(lambda r: len(r.devices) == 8)
    yield proc, conn
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    kubelet.stop()
    shutil.rmtree(directory, ignore_errors=True)


def known(i: int) -> str:
    return f"simple-device-{NODE}-{i % 8}"


ids = st.one_of(
    st.integers(0, 7).map(known),
    st.text(max_size=40),
    st.just(""),
    st.text(min_size=1000, max_size=5000),
)


def answered(call: Callable[[], object]) -> None:
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() in CLEAR_CODES, (err.code(), err.details())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(ids, max_size=12), max_size=20))
def test_allocate_answers_every_request_clearly(plugin: Any, containers: list[list[str]]) -> None:
    proc, conn = plugin
    answered(lambda: conn.allocate(containers))
    assert proc.poll() is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(ids, max_size=40),
    st.lists(ids, max_size=10),
    st.integers(min_value=-5, max_value=100),
)
def test_preferred_allocation_answers_clearly(
    plugin: Any, available: list[str], must: list[str], size: int
) -> None:
    proc, conn = plugin
    request = pb.PreferredAllocationRequest(
        container_requests=[
            pb.ContainerPreferredAllocationRequest(
                available_deviceIDs=available,
                must_include_deviceIDs=must,
                allocation_size=max(size, -(2**31)),
            )
        ]
    )
    answered(lambda: conn.stub.GetPreferredAllocation(request, timeout=10))
    assert proc.poll() is None


def test_ten_thousand_container_requests(plugin: Any) -> None:
    proc, conn = plugin
    answered(lambda: conn.allocate([[known(i)] for i in range(10_000)]))
    answered(lambda: conn.allocate([[] for _ in range(10_000)]))
    answered(lambda: conn.allocate([["no-such-device"] for _ in range(10_000)]))
    assert proc.poll() is None


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_bounded_flood_does_not_grow_memory_without_limit(plugin: Any) -> None:
    proc, conn = plugin
    junk = [["x" * 2000, known(1), known(1)], [], ["no-such-device"] * 50]

    def flood(calls: int) -> None:
        for i in range(calls):
            request = junk if i % 2 else [[known(i)]]
            answered(functools.partial(conn.allocate, request))

    flood(500)  # warm-up: caches, thread pools and arenas reach their working size
    before = rss_kib(proc.pid)
    started = time.monotonic()
    flood(3000)
    grown = rss_kib(proc.pid) - before
    # A leak of even 1 KiB per call would show as 3 MiB; allow noise well below that.
    assert grown < 2048, f"RSS grew {grown} KiB over 3,000 calls"
    assert time.monotonic() - started < 120
