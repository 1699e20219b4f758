"""The command line: options and the log filter for routine handlers."""

from __future__ import annotations

import logging

import pytest

from simdev.operator.main import DEFAULT_LIVENESS, QuietRoutineHandlers, parse_args


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", logging.INFO, __file__, 0, message, None, None)


def test_routine_successes_are_dropped_and_everything_else_kept() -> None:
    quiet = QuietRoutineHandlers()
    assert not quiet.filter(_record("Handler 'node_changed' succeeded."))
    assert not quiet.filter(_record("Timer 'safety-net' succeeded."))
    assert quiet.filter(_record("Handler 'converge-on-create' succeeded."))
    assert quiet.filter(_record("Handler 'node_changed' failed temporarily: boom"))


def test_liveness_endpoint_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIMDEV_LIVENESS_ENDPOINT", raising=False)
    assert parse_args([]).liveness == DEFAULT_LIVENESS
    monkeypatch.setenv("SIMDEV_LIVENESS_ENDPOINT", "http://127.0.0.1:8089/healthz")
    assert parse_args([]).liveness == "http://127.0.0.1:8089/healthz"
    assert parse_args(["--liveness", "http://0.0.0.0:1/x"]).liveness == "http://0.0.0.0:1/x"


def test_log_format_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMDEV_LOG_FORMAT", "json")
    assert parse_args([]).log_format == "json"
    with pytest.raises(SystemExit):
        parse_args(["--log-format", "xml"])
