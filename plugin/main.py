"""Command line: ``simdev-plugin [--config FILE] [--log-format text|json] [run|check]``.

Exit codes: 0 after a requested stop (SIGTERM/SIGINT), 1 when the plugin cannot
work (socket, device files), 2 for bad configuration or usage.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from simdev.plugin import config as configuration
from simdev.plugin.logs import FORMATS

if TYPE_CHECKING:
    from simdev.plugin.apiwatch import InClusterAPI
    from simdev.plugin.draplugin import DraPlugin
    from simdev.plugin.metrics import PluginMetrics
    from simdev.plugin.simulation import Simulation

PROG = "simdev-plugin"
SERVICE_ACCOUNT_ENV = "SERVICE_ACCOUNT_DIR"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Kubelet device plugin serving simulated devices (API v1beta1). "
        "Settings come from environment variables; see the plugin documentation.",
    )
    p.add_argument(
        "command",
        nargs="?",
        choices=("run", "check"),
        default="run",
        help="run the plugin (default), or check that a running plugin answers on its "
        "socket (for liveness probes)",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML or JSON file with settings in camelCase (nodeName, numberDevices, ...); "
        "they override the environment",
    )
    p.add_argument(
        "--log-format",
        choices=FORMATS,
        help="log line format (default: $LOG_FORMAT or text)",
    )
    return p


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log_format = args.log_format or os.environ.get("LOG_FORMAT") or "text"
    if log_format not in FORMATS:
        return _fail(f'invalid LOG_FORMAT "{log_format}": must be text or json', 2)
    try:
        cfg = configuration.load(os.environ, args.config)
    except configuration.ConfigError as err:
        return _fail(str(err), 2)

    # gRPC's own C-core messages would break the one-line-per-event log; every
    # failure that matters is logged by us. An explicit GRPC_VERBOSITY still wins.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    if args.command == "check":
        from simdev.plugin.healthcheck import check

        return check(cfg.socket_path)
    return _run(cfg, log_format)


def _run(cfg: configuration.Config, log_format: str) -> int:
    # Imported here so that configuration errors are reported without loading gRPC.
    import logging

    from simdev.plugin.lean import import_grpc

    import_grpc()  # first, so that grpc comes without ssl

    from simdev.plugin import logs
    from simdev.plugin.api import deviceplugin_pb2 as pb
    from simdev.plugin.devices import DeviceModel
    from simdev.plugin.kubelet import register_request
    from simdev.plugin.server import PluginServer, ServerError
    from simdev.plugin.service import (
        MAX_WATCH_STREAMS,
        UNARY_WORKERS,
        DevicePluginService,
        plugin_options,
    )
    from simdev.plugin.simulation import Simulation
    from simdev.plugin.supervisor import Supervisor

    logs.setup(log_format)
    logs.lean_records()
    log = logging.getLogger("simdev.plugin")
    log.info(
        "starting",
        extra={
            "fields": {
                "node": cfg.node_name,
                "resource": cfg.resource_name,
                "devices": cfg.number_devices,
                "socket": str(cfg.socket_path),
            }
        },
    )

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            log.info("stopping", extra={"fields": {"signal": signal.Signals(signum).name}})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # Without an endpoint nobody reads metrics: prometheus_client (3 MiB) stays unloaded.
    metrics: PluginMetrics | None = None
    if cfg.metrics_port:
        from simdev.plugin.metrics import PluginMetrics

        metrics = PluginMetrics(cfg.resource_name)
        try:
            metrics.serve(cfg.metrics_address, cfg.metrics_port)
        except OSError as err:
            log.error("cannot serve metrics", extra={"fields": {"error": str(err)}})
            return 1
        log.info(
            "serving metrics",
            extra={"fields": {"address": cfg.metrics_address, "port": cfg.metrics_port}},
        )
    model = DeviceModel(())
    simulation = Simulation(cfg, model, metrics=metrics)
    threading.Thread(target=simulation.run, args=(stop,), name="fault-clock", daemon=True).start()
    if cfg.simulated_device:
        _follow(cfg, simulation, stop)

    dra = _dra_plugin(cfg, simulation)
    if dra is not None:
        try:
            dra.start()
        except (ServerError, OSError) as err:
            log.error("cannot serve the DRA driver", extra={"fields": {"error": str(err)}})
            return 1
        threading.Thread(target=dra.keep_serving, args=(stop,), name="dra", daemon=True).start()

    server = PluginServer(
        cfg.socket_path,
        lambda: DevicePluginService(model, simulation, metrics.allocated if metrics else None),
        workers=MAX_WATCH_STREAMS + UNARY_WORKERS,
    )

    def request() -> pb.RegisterRequest:
        # The options follow the live allocation policy (None: no preferred allocations).
        options = plugin_options(simulation.allocation_settings().policy)
        return register_request(cfg.socket_name, cfg.resource_name, options)

    try:
        cfg.device_plugin_dir.mkdir(parents=True, exist_ok=True)
        Supervisor(
            server,
            cfg.kubelet_socket,
            request,
            hold=simulation.plugin_down,
            on_registered=metrics.registered if metrics else lambda: None,
        ).run(stop)
    except (ServerError, OSError) as err:
        log.error("cannot serve", extra={"fields": {"error": str(err)}})
        return 1
    finally:
        stop.set()
        simulation.wake()
        if dra is not None:
            dra.stop()
    return 0


def _api() -> InClusterAPI | None:
    """The API server of this pod's environment; None (logged) when there is none."""
    import logging

    from simdev.plugin.apiwatch import SERVICE_ACCOUNT, InClusterAPI

    log = logging.getLogger("simdev.plugin")
    # Where the token and CA are; settable so the plugin can follow from outside a pod.
    account = Path(os.environ.get(SERVICE_ACCOUNT_ENV) or SERVICE_ACCOUNT)
    try:
        api = InClusterAPI.from_environment(os.environ, account)
    except ValueError as err:
        log.error("no usable Kubernetes API", extra={"fields": {"error": str(err)}})
        return None
    if api is None:
        log.warning("no Kubernetes API in this environment")
    return api


def _dra_plugin(cfg: configuration.Config, simulation: Simulation) -> DraPlugin | None:
    """The DRA driver beside the device plugin, when the configuration enables it."""
    if cfg.dra is None:
        return None
    from simdev.plugin.cdi import CdiStore
    from simdev.plugin.draplugin import DraPlugin
    from simdev.plugin.draprepare import APIClaims, NoClaims, Preparer

    driver = cfg.dra.driver_name
    api = _api()
    claims = APIClaims(api, driver) if api is not None else NoClaims()
    store = CdiStore(cfg.dra.cdi_dir, driver)
    preparer = Preparer(driver, cfg.node_name, store, claims, simulation)
    return DraPlugin(cfg.dra, preparer, hold=simulation.plugin_down)


def _follow(cfg: configuration.Config, simulation: Simulation, stop: threading.Event) -> None:
    """Starts following the SimulatedDevice and the Node through the API, when reachable."""
    import logging

    from simdev.plugin.follow import Follower

    log = logging.getLogger("simdev.plugin")
    api = _api()
    if api is None:
        log.warning(
            "live changes are off",
            extra={"fields": {"simulatedDevice": cfg.simulated_device}},
        )
        return
    Follower(cfg, simulation).start(api, stop)
    log.info("following live changes", extra={"fields": {"simulatedDevice": cfg.simulated_device}})
