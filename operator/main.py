"""The simdev-operator command: runs the kopf operator cluster-wide."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import kopf

# Importing the module registers the handlers with kopf.
from simdev.operator import handlers  # noqa: F401

LIVENESS_ENV = "SIMDEV_LIVENESS_ENDPOINT"
# Loopback unless told otherwise: a kubelet probing a pod IP needs the Deployment to say so.
DEFAULT_LIVENESS = "http://127.0.0.1:8080/healthz"
LOG_FORMATS = {
    "full": kopf.LogFormat.FULL,
    "plain": kopf.LogFormat.PLAIN,
    "json": kopf.LogFormat.JSON,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="simdev-operator",
        description="Reconciles SimulatedDevices into simulated device plugin DaemonSets.",
    )
    parser.add_argument(
        "--liveness",
        default=os.environ.get(LIVENESS_ENV) or DEFAULT_LIVENESS,
        help=f"liveness endpoint to serve (env {LIVENESS_ENV}; default {DEFAULT_LIVENESS})",
    )
    parser.add_argument(
        "--log-format",
        choices=sorted(LOG_FORMATS),
        default=os.environ.get("SIMDEV_LOG_FORMAT") or "full",
        help="log line format (env SIMDEV_LOG_FORMAT)",
    )
    parser.add_argument("--verbose", action="store_true", help="log debug messages")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    kopf.configure(verbose=args.verbose, log_format=LOG_FORMATS[args.log_format])
    # SimulatedDevices, Nodes and their DaemonSets are watched in every namespace.
    kopf.run(clusterwide=True, standalone=True, liveness_endpoint=args.liveness)


if __name__ == "__main__":
    main()
