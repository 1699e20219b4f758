"""The DRA driver against a fake kubelet over real unix sockets, and its CDI spec files."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fakedrakubelet import FakeDraKubelet

from simdev.plugin.apiwatch import InClusterAPI
from simdev.plugin.cdi import CdiStore
from simdev.plugin.config import Config
from simdev.plugin.devices import DeviceModel
from simdev.plugin.draconfig import DraConfig
from simdev.plugin.draids import device_uuid
from simdev.plugin.draplugin import DraPlugin
from simdev.plugin.draprepare import Allocated, APIClaims, ClaimRef, PrepareError, Preparer
from simdev.plugin.faults import parse_faults
from simdev.plugin.simulation import Simulation

pytestmark = pytest.mark.timeout(60)

DRIVER = "gpus.simdev.io"
NODE = "n1"
CLAIM = ("default", "train", "0f3c2a9e-1111-4222-8333-944455556666")


@dataclass
class Claims:
    """An in-memory claim source: the allocations by claim UID, and who asked."""

    allocations: dict[str, list[Allocated]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def allocated(self, claim: ClaimRef) -> list[Allocated]:
        self.asked.append(claim.uid)
        if claim.uid not in self.allocations:
            raise PrepareError(f"ResourceClaim {claim} is not allocated")
        return self.allocations[claim.uid]


def devices(*indices: int, request: str = "gpus", pool: str = NODE) -> list[Allocated]:
    return [Allocated(request, pool, f"device-{i}") for i in indices]


@dataclass
class Driver:
    cfg: DraConfig
    claims: Claims
    kubelet: FakeDraKubelet
    plugin: DraPlugin
    stop: threading.Event

    @property
    def store(self) -> CdiStore:
        return CdiStore(self.cfg.cdi_dir, DRIVER)

    def spec(self, uid: str = CLAIM[2]) -> dict[str, Any]:
        found = self.store.read(uid)
        assert found is not None, f"no CDI spec for {uid}"
        return found


@pytest.fixture
def root() -> Iterator[Path]:
    # Short: socket paths must fit in 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="dra-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def simulation(faults: list[dict[str, Any]] | None = None, **settings: Any) -> Simulation:
    cfg = Config(
        node_name=NODE,
        number_devices=settings.pop("number_devices", 4),
        env_prefix="GPU",
        device_file_prefix="gpu",
        annotation_prefix="example.com/gpu",
        faults=parse_faults(faults or []),
        **settings,
    )
    return Simulation(cfg, DeviceModel(()))


def start(root: Path, sim: Simulation, claims: Claims | None = None) -> Driver:
    cfg = DraConfig(
        DRIVER,
        plugins_dir=root / "plugins",
        registry_dir=root / "registry",
        cdi_dir=root / "cdi",
    )
    claims = claims or Claims()
    preparer = Preparer(DRIVER, NODE, CdiStore(cfg.cdi_dir, DRIVER), claims, sim)
    plugin = DraPlugin(cfg, preparer, hold=sim.plugin_down)
    plugin.start()
    kubelet = FakeDraKubelet(cfg.registry_dir)
    kubelet.register()
    return Driver(cfg, claims, kubelet, plugin, threading.Event())


@contextlib.contextmanager
def running(root: Path, sim: Simulation, claims: Claims | None = None) -> Iterator[Driver]:
    d = start(root, sim, claims)
    try:
        yield d
    finally:
        d.kubelet.close()
        d.plugin.stop()


@pytest.fixture
def driver(root: Path) -> Iterator[Driver]:
    with running(root, simulation()) as d:
        yield d


def test_registration_names_the_driver_its_socket_and_the_v1_service(driver: Driver) -> None:
    info = driver.kubelet.info
    assert info is not None
    assert info.type == "DRAPlugin"
    assert info.name == DRIVER
    assert info.endpoint == str(driver.cfg.plugins_dir / DRIVER / "dra.sock")
    assert list(info.supported_versions) == ["v1.DRAPlugin"]
    assert driver.plugin.registration.registered.wait(1)
    assert driver.cfg.registration_path.name == f"{DRIVER}-reg.sock"


def test_prepare_writes_a_cdi_spec_with_what_allocate_gives(driver: Driver) -> None:
    driver.claims.allocations[CLAIM[2]] = devices(0, 2)
    response = driver.kubelet.prepare(CLAIM)
    answer = response.claims[CLAIM[2]]
    assert answer.error == ""
    cdi = f"{DRIVER}/device={CLAIM[2]}"
    assert [(list(d.request_names), d.pool_name, d.device_name, list(d.cdi_device_ids))
            for d in answer.devices] == [
        (["gpus"], NODE, "device-0", [cdi]),
        (["gpus"], NODE, "device-2", []),
    ]  # fmt: skip
    spec = driver.spec()
    assert spec["cdiVersion"] == "0.6.0"
    assert spec["kind"] == f"{DRIVER}/device"
    assert spec["annotations"]["simdev.io/claim"] == "default/train"
    (device,) = spec["devices"]
    assert device["name"] == CLAIM[2]
    uuids = [device_uuid(DRIVER, NODE, i) for i in (0, 2)]
    # The env vars, device files and annotations of Allocate for devices 0 and 2.
    assert sorted(device["containerEdits"]["env"]) == sorted(
        [f"GPU_VISIBLE_DEVICES={','.join(uuids)}", "GPU_0=/dev/gpu-0", "GPU_2=/dev/gpu-2"]
    )
    assert device["containerEdits"]["deviceNodes"] == [
        {"path": "/dev/gpu-0", "hostPath": "/dev/null", "permissions": "rw"},
        {"path": "/dev/gpu-2", "hostPath": "/dev/null", "permissions": "rw"},
    ]
    assert device["annotations"] == {"example.com/gpu-0": uuids[0], "example.com/gpu-2": uuids[1]}
    assert driver.store.path(CLAIM[2]).name == f"{DRIVER}_{CLAIM[2]}.json"


def test_every_request_of_a_claim_gets_its_one_cdi_device(driver: Driver) -> None:
    driver.claims.allocations[CLAIM[2]] = devices(1, request="a") + devices(3, request="b")
    answer = driver.kubelet.prepare(CLAIM).claims[CLAIM[2]]
    first, second = answer.devices
    assert list(first.request_names) == ["a", "b"] and len(first.cdi_device_ids) == 1
    assert list(second.request_names) == ["b"] and list(second.cdi_device_ids) == []


def test_prepare_is_idempotent(driver: Driver) -> None:
    driver.claims.allocations[CLAIM[2]] = devices(1)
    first = driver.kubelet.prepare(CLAIM)
    written = driver.store.path(CLAIM[2]).read_bytes()
    second = driver.kubelet.prepare(CLAIM)
    assert second == first
    assert driver.store.path(CLAIM[2]).read_bytes() == written
    assert driver.claims.asked == [CLAIM[2]]  # the second answer came from the file


def test_unprepare_removes_the_spec_and_may_be_repeated(driver: Driver) -> None:
    driver.claims.allocations[CLAIM[2]] = devices(1)
    driver.kubelet.prepare(CLAIM)
    for _ in range(2):
        response = driver.kubelet.unprepare(CLAIM)
        assert response.claims[CLAIM[2]].error == ""
        assert CLAIM[2] in response.claims
    assert list(driver.store.claims()) == []


def test_a_restarted_plugin_answers_from_its_cdi_files(root: Path) -> None:
    with running(root, simulation(), Claims({CLAIM[2]: devices(0, 1)})) as first:
        before = first.kubelet.prepare(CLAIM)
    # A new process knows nothing but the files: no claim source answers any more.
    with running(root, simulation(), Claims()) as again:
        assert again.kubelet.prepare(CLAIM) == before
        assert again.claims.asked == []
        assert again.kubelet.unprepare(CLAIM).claims[CLAIM[2]].error == ""
        assert list(again.store.claims()) == []


def test_each_claim_fails_on_its_own(driver: Driver) -> None:
    other = ("default", "other", "uid-other")
    driver.claims.allocations[CLAIM[2]] = devices(0)
    response = driver.kubelet.prepare(CLAIM, other)
    assert response.claims[CLAIM[2]].error == ""
    assert "not allocated" in response.claims["uid-other"].error
    assert list(driver.store.claims()) == [CLAIM[2]]


@pytest.mark.parametrize(
    ("allocated", "reason"),
    [
        (devices(0, pool="n2"), "device n2/device-0 is not a device of node n1"),
        (devices(4), "device n1/device-4 is not a device of node n1"),
        ([Allocated("gpus", NODE, "gpu-0")], "is not a device of node n1"),
    ],
)
def test_devices_not_on_this_node_are_refused(
    driver: Driver, allocated: list[Allocated], reason: str
) -> None:
    driver.claims.allocations[CLAIM[2]] = allocated
    assert reason in driver.kubelet.prepare(CLAIM).claims[CLAIM[2]].error
    assert list(driver.store.claims()) == []


def test_an_unhealthy_device_is_refused(root: Path) -> None:
    broken = [{"name": "dead", "type": "Unhealthy", "devices": {"indices": [2]}}]
    with running(root, simulation(broken), Claims({CLAIM[2]: devices(1, 2)})) as d:
        error = d.kubelet.prepare(CLAIM).claims[CLAIM[2]].error
        assert "device-2 is not healthy" in error


def test_allocate_error_fails_prepare_and_leaves_no_spec(root: Path) -> None:
    fault = [{"name": "flaky", "type": "AllocateError", "code": "UNAVAILABLE"}]
    with running(root, simulation(fault), Claims({CLAIM[2]: devices(0)})) as d:
        error = d.kubelet.prepare(CLAIM).claims[CLAIM[2]].error
        assert "'flaky' (AllocateError)" in error and "UNAVAILABLE" in error
        assert list(d.store.claims()) == []
        assert d.claims.asked == []  # failed before any lookup, like Allocate


def test_allocate_delay_slows_prepare(root: Path) -> None:
    fault = [{"name": "slow", "type": "AllocateDelay", "delay": "300ms"}]
    with running(root, simulation(fault), Claims({CLAIM[2]: devices(0)})) as d:
        began = time.monotonic()
        assert d.kubelet.prepare(CLAIM).claims[CLAIM[2]].error == ""
        assert time.monotonic() - began >= 0.3


def test_numa_nodes_reach_the_container(root: Path) -> None:
    with running(root, simulation(numa_nodes=2), Claims({CLAIM[2]: devices(0, 3)})) as d:
        d.kubelet.prepare(CLAIM)
        env = d.spec()["devices"][0]["containerEdits"]["env"]
        assert "GPU_NUMA_NODES=0,1" in env


def test_a_removed_socket_is_served_anew(driver: Driver) -> None:
    runner = threading.Thread(target=driver.plugin.keep_serving, args=(driver.stop,))
    runner.start()
    try:
        driver.cfg.registration_path.unlink()
        driver.kubelet.register(timeout=5)
        assert driver.kubelet.info is not None and driver.kubelet.info.name == DRIVER
    finally:
        driver.stop.set()
        runner.join(5)


def test_the_fake_kubelet_refuses_a_driver_without_the_v1_service(
    driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simdev.plugin import draservice

    monkeypatch.setattr(draservice, "DRA_SERVICE", "v1alpha4.Node")
    with pytest.raises(RuntimeError, match="is served by this kubelet"):
        driver.kubelet.register()
    assert "v1alpha4.Node" in driver.plugin.registration.last_error


# ---- reading claims from the API --------------------------------------------------------


class ClaimServer:
    """A plain-http API server on loopback holding ResourceClaims by path."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                obj = server.objects.get(self.path)
                body = json.dumps(obj or {"kind": "Status", "message": "not found"}).encode()
                self.send_response(200 if obj else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def claim_server() -> Iterator[ClaimServer]:
    server = ClaimServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def resource_claim(uid: str, results: list[dict[str, str]] | None) -> dict[str, Any]:
    status = {} if results is None else {"allocation": {"devices": {"results": results}}}
    return {"metadata": {"name": "train", "namespace": "default", "uid": uid}, "status": status}


PATH = "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/train"


def test_claims_are_read_from_the_api(claim_server: ClaimServer) -> None:
    claim_server.objects[PATH] = resource_claim(
        CLAIM[2],
        [
            {"request": "gpus", "driver": DRIVER, "pool": NODE, "device": "device-1"},
            {"request": "nic", "driver": "nic.example.com", "pool": NODE, "device": "eth0"},
        ],
    )
    source = APIClaims(InClusterAPI.from_url(claim_server.url), DRIVER)
    assert source.allocated(ClaimRef(*CLAIM)) == [Allocated("gpus", NODE, "device-1")]


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        (None, "does not exist"),
        (resource_claim("another-uid", []), "replaced"),
        (resource_claim(CLAIM[2], None), "is not allocated"),
    ],
)
def test_claims_the_api_cannot_give_are_refused(
    claim_server: ClaimServer, stored: dict[str, Any] | None, reason: str
) -> None:
    if stored is not None:
        claim_server.objects[PATH] = stored
    source = APIClaims(InClusterAPI.from_url(claim_server.url), DRIVER)
    with pytest.raises(PrepareError, match=reason):
        source.allocated(ClaimRef(*CLAIM))


def test_plugin_down_takes_the_driver_away_until_it_ends(root: Path) -> None:
    down = [{"name": "crash", "type": "PluginDown"}]
    sim = simulation(down)
    with running(root, sim) as d:
        runner = threading.Thread(target=d.plugin.keep_serving, args=(d.stop,))
        runner.start()
        try:
            sockets = (d.cfg.registration_path, d.cfg.socket_path)
            wait = time.monotonic() + 5
            while any(p.exists() for p in sockets) and time.monotonic() < wait:
                time.sleep(0.05)
            assert not any(p.exists() for p in sockets)
            sim.update(simulation().state.config)  # the fault is removed
            d.kubelet.register(timeout=5)
            d.claims.allocations[CLAIM[2]] = devices(0)
            assert d.kubelet.prepare(CLAIM).claims[CLAIM[2]].error == ""
        finally:
            d.stop.set()
            runner.join(5)
