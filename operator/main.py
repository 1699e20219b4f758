"""The simdev-operator command: runs the kopf operator cluster-wide."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

import kopf

# Importing the module also registers the handlers with kopf.
from simdev.operator import handlers

LIVENESS_ENV = "SIMDEV_LIVENESS_ENDPOINT"
# Loopback unless told otherwise: a kubelet probing a pod IP needs the Deployment to say so.
DEFAULT_LIVENESS = "http://127.0.0.1:8080/healthz"
LOG_FORMATS = {
    "full": kopf.LogFormat.FULL,
    "plain": kopf.LogFormat.PLAIN,
    "json": kopf.LogFormat.JSON,
}


class QuietRoutineHandlers(logging.Filter):
    """Drops kopf's success line for handlers that run on every watch event or tick.

    Node heartbeats and the safety-net timer would otherwise log a line every few seconds;
    their failures and everything they change are still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.endswith("' succeeded.")
            and any(f"'{name}'" in message for name in handlers.ROUTINE_HANDLERS)
        )


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
    # log_prefix=None: text lines start with the object's name; JSON carries it as a field.
    kopf.configure(
        verbose=args.verbose,
        log_format=LOG_FORMATS[args.log_format],
        log_prefix=None,
        log_refkey="object",
    )
    if not args.verbose:
        logging.getLogger("kopf.objects").addFilter(QuietRoutineHandlers())
        # One access line per liveness probe says nothing; failures show as probe errors.
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # SimulatedDevices, Nodes and their DaemonSets are watched in every namespace.
    kopf.run(clusterwide=True, standalone=True, liveness_endpoint=args.liveness)


if __name__ == "__main__":
    main()
