"""Structured logs: every line is an event with fields, as `key=value` text or JSON lines.

An operator's logs are read by people (`kubectl logs`) and by log pipelines. Both want the same
thing: one line per event, the message fixed and the variable parts as named fields
(`key=default/phi-3 result=success duration=0.012`), never interpolated into the message where a
query cannot find them. The text format is logfmt, the JSON format one object per line.

Fields travel on the standard `logging` record (`extra={"fields": {...}}`, or the `log` helper),
so libraries that log through `logging` end up in the same stream, just without fields.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

_FIELDS = "fields"


def log(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log `message` with structured `fields`."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={_FIELDS: fields})


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, _FIELDS, None)
    return fields if isinstance(fields, Mapping) else {}


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.fromtimestamp(record.created, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            entry.setdefault(key, _plain(value))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)


def _logfmt_value(value: Any) -> str:
    text = "" if value is None else str(_plain(value))
    if text == "" or any(c in text for c in ' ="\\\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


class TextFormatter(logging.Formatter):
    """logfmt: `ts=... level=info logger=kaito.operator msg="..." key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={_timestamp(record)}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_logfmt_value(record.getMessage())}",
        ]
        parts.extend(f"{key}={_logfmt_value(value)}" for key, value in _fields(record).items())
        if record.exc_info:
            parts.append(f"error={_logfmt_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure_logging(
    log_format: LogFormat = "text", level: int | str = logging.INFO, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the root logger's records to `stream` (standard error) in `log_format`.

    Replaces handlers a previous call installed, so calling it twice does not double lines.
    Returns the handler.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; use one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.set_name("kaito")
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "kaito":
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    return handler
