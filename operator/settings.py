"""Kopf settings for this operator, applied by the startup handler."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import kopf

from simdev.operator.model import API_VERSION, FINALIZER, MANAGED_BY_LABEL, MANAGER

ANNOTATION_PREFIX = "simdev.io"
# Objects per page of a first listing.
LIST_CHUNK = 100


class DeviceDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base, built only for SimulatedDevices.

    kopf deep-copies the whole body of every event of every watched kind to diff it, but
    only SimulatedDevices have change handlers. Nodes and pods come by the thousand at scale
    (a pass over 500 fake nodes brings 500 node events), and copying them took a quarter of
    the event loop; their diff is never read, so theirs is empty.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        if body.get("apiVersion") != API_VERSION:
            return kopf.BodyEssence()
        return super().build(body=body, extra_fields=extra_fields)


def configure(settings: kopf.OperatorSettings) -> None:
    # Own names, so that kopf's markers on our objects say whose they are and never collide
    # with another kopf-based operator's.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = DeviceDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )

    # Only the operator's explicit transition events become Kubernetes Events; routine log
    # lines stay in the log.
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = MANAGER
    settings.posting.event_name_prefix = "simdev-event-"

    # Ask the server to end each watch after a while, so a silently dead connection is noticed.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # The first listing of each kind comes in pages: a cluster's thousands of pods parsed
    # from one response set the operator's peak memory (a restart among 2,000 pods took it
    # past 170 MiB).
    settings.watching.chunk_size = LIST_CHUNK
    # Only our own DaemonSets are streamed, instead of every DaemonSet of the cluster.
    settings.watching.label_selectors["apps", "v1", "daemonsets"] = f"{MANAGED_BY_LABEL}={MANAGER}"
    settings.networking.request_timeout = 60

    # One replica with a Recreate strategy: no peering objects to coordinate several.
    settings.peering.standalone = True
