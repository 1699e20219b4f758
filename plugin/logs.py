"""One log line per event, as text (key=value) or JSON.

Callers pass structured fields through ``extra={"fields": {...}}``. Values are
quoted or JSON-encoded so a line never spans two lines, even for error messages.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

FORMATS = ("text", "json")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = dict(getattr(record, "fields", {}) or {})
    if record.exc_info and record.exc_info[1] is not None:
        fields["exception"] = repr(record.exc_info[1])
    return fields


# The formatted second of the last record: busy plugins log many lines per second.
_last_second: tuple[int, str] = (-1, "")


def _timestamp(record: logging.LogRecord) -> str:
    global _last_second
    second, base = _last_second
    if second != int(record.created):
        second = int(record.created)
        base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = (second, base)
    return f"{base}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # The message is plain prose; only its line breaks are escaped.
        message = record.getMessage().replace("\n", "\\n")
        parts = [_timestamp(record), record.levelname, message]
        parts += [f"{k}={_text(v)}" for k, v in _fields(record).items()]
        return " ".join(parts)


_QUOTE = re.compile(r'[ "=\\]')


def _text(value: Any) -> str:
    s = value if isinstance(value, str) else str(value)
    if not s or _QUOTE.search(s) or not s.isprintable():
        return json.dumps(s)
    return s


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        for k, v in _fields(record).items():
            entry.setdefault(k, v)
        return json.dumps(entry, default=str)


def lean_records() -> None:
    """Stops logging from gathering, for every record, what no line of ours shows.

    Thread and process names and the caller's file and line cost a third of a record
    (the logging HOWTO's "Optimization" section lists these switches); Allocate logs one
    record per call. Process-wide, so only the plugin's entry point calls it.
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None


def setup(fmt: str, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Routes the plugin's logger to stream (stderr by default) in the given format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger = logging.getLogger("simdev.plugin")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
