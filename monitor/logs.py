"""Log set-up: one line per event on stderr, as text or JSON Lines, credentials masked.

Modules log through the standard :mod:`logging` API. Structured fields go in ``extra``::

    log.info("stream up", extra={"stream": "cam1", "event": "stream_up"})

Text:  ``2026-11-22T15:30:00.123Z INFO  stream up stream=cam1 event=stream_up``
JSON:  ``{"ts": "2026-11-22T15:30:00.123Z", "level": "info", "logger": "monitor.ingest",
"msg": "stream up", "stream": "cam1", "event": "stream_up"}``

Every rendered line passes through :func:`monitor.redact.redact_text`, so a URL with credentials
that slips into a message (an FFmpeg error, an exception text) is masked anyway.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from monitor.redact import redact_text

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")

# Attributes every LogRecord has; anything else came from ``extra=`` and is rendered as a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


def _one_line(text: str) -> str:
    """``text`` with control characters escaped, so that no value can start a forged log line."""
    return text if text.isprintable() else json.dumps(text)[1:-1]


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"{record.levelname:<7}", _one_line(record.getMessage())]
        for key, value in _fields(record).items():
            text = str(value)
            if not text or not text.isprintable() or any(c in text for c in ' "='):  # JSON-quoted: no forged lines
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        if record.exc_info:
            # One line per event: the exception's type and message, not a multi-line traceback.
            exc = record.exc_info[1]
            parts.append(f"error={json.dumps(f'{type(exc).__name__}: {exc}')}")
        return redact_text(" ".join(parts))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            data[key] = value if isinstance(value, (int, float, bool, type(None))) else str(value)
        if record.exc_info:
            exc = record.exc_info[1]
            data["error"] = f"{type(exc).__name__}: {exc}"
        return redact_text(json.dumps(data, ensure_ascii=False))


def setup_logging(fmt: str = "text", level: str = "info", stream: TextIO | None = None) -> None:
    """Route the root logger to ``stream`` (stderr) with the chosen format; idempotent."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    logging.captureWarnings(True)
