"""Structured logs: one JSON line per record, through the standard ``logging`` module.

CloudWatch Logs Insights can filter JSON lines by field, so every decision and
connection event is one object (``event``, ``reason``, ``connectionId``...).
Tokens are never passed here. The ``ws`` logger writes its own lines and does
not propagate, so Lambda's root handler does not print each line a second
time in its own format. The level comes from ``LOG_LEVEL`` (default INFO:
Lambda's Python runtime would otherwise leave loggers at WARNING and drop them).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from typing import TextIO

ROOT_LOGGER = "ws"
Field = str | int | float | bool | None | list[str] | dict[str, int]


class JsonFormatter(logging.Formatter):
    """``{"level", "logger", **fields}``, or ``message`` for plain records."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {"level": record.levelname, "logger": record.name}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stdout`` as it is at each record (test capture replaces it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure(level: str | None) -> None:
    """Give the ``ws`` logger its JSON handler (once) and the level named by ``level``."""
    logger = logging.getLogger(ROOT_LOGGER)
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    name = (level or "INFO").upper()
    logger.setLevel(name if name in logging.getLevelNamesMapping() else logging.INFO)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Field) -> None:
    """One JSON line ``{"event": event, **fields}`` (skipped cheaply below the level)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": {"event": event, **fields}})


def log_failure(logger: logging.Logger, route: str, connection_id: str | None, error: BaseException) -> None:
    """One ERROR line for an unexpected failure: the exception's type and where it was raised.

    Not its message nor a traceback's locals: either may quote the frame, a payload or a token.
    ``missing`` names the setting a misconfigured stage lacks (``faults.missing_configuration``).
    """
    from .faults import missing_configuration

    frames = traceback.extract_tb(error.__traceback__)
    where = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
    log_event(logger, "handler_error", logging.ERROR, route=route,
              connectionId=connection_id[:128] if connection_id else None, error=type(error).__name__, where=where,
              missing=missing_configuration(error))
