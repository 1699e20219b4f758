"""Log lines: one line per event, text or JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from simdev.plugin import logs


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    logger = logging.getLogger("simdev.plugin")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    stream = io.StringIO()
    yield stream, logger
    logger.handlers[:], logger.level, logger.propagate = saved


def test_text_lines_carry_fields_as_key_values(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, logger = capture
    logs.setup("text", stream)
    logger.info("registered", extra={"fields": {"resource": "example.com/x", "devices": 2}})
    logger.error("failed", extra={"fields": {"error": 'bad "thing"\nsecond line'}})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" INFO registered resource=example.com/x devices=2")
    # Values with spaces, quotes or line breaks are quoted so the event stays on one line.
    assert lines[1].endswith(' ERROR failed error="bad \\"thing\\"\\nsecond line"')


def test_json_lines_are_objects(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, logger = capture
    logs.setup("json", stream)
    logger.warning("kubelet restarted", extra={"fields": {"socket": "/x/p.sock", "msg": "no"}})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("crashed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "warning" and first["msg"] == "kubelet restarted"
    assert first["socket"] == "/x/p.sock"
    assert first["time"].endswith("Z")
    assert second["msg"] == "crashed" and second["exception"] == "ValueError('boom')"
