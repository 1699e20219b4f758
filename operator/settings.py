"""Kopf settings for this operator, applied by the startup handler."""

from __future__ import annotations

import logging

import kopf

from simdev.operator.model import FINALIZER, MANAGED_BY_LABEL, MANAGER

ANNOTATION_PREFIX = "simdev.io"


def configure(settings: kopf.OperatorSettings) -> None:
    # Own names, so that kopf's markers on our objects say whose they are and never collide
    # with another kopf-based operator's.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
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
    # Only our own DaemonSets are streamed, instead of every DaemonSet of the cluster.
    settings.watching.label_selectors["apps", "v1", "daemonsets"] = f"{MANAGED_BY_LABEL}={MANAGER}"
    settings.networking.request_timeout = 60

    # One replica with a Recreate strategy: no peering objects to coordinate several.
    settings.peering.standalone = True
