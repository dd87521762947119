"""Logging set-up with a scrubber: secrets the process knows, and password-shaped fields, never reach a log line.

Two formats (ECSBOT_LOG_FORMAT): `text`, one readable line per event, and `json`, one JSON object per line. Both carry
the context fields `request_id`, `server` and `job_id` when a caller attached them, either for a block of work
(`with log_context(request_id=…, server=…):`, inherited by the tasks it starts) or for one line
(`log.info("…", extra={"job_id": …})`). The cloud HTTP clients' own loggers (httpx, httpcore) are held at WARNING:
the bot logs its own events, not one line per cloud call.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
CONTEXT_FIELDS = ("request_id", "server", "job_id")
# Libraries that log a line per HTTP call at INFO; they speak at WARNING and above only.
QUIET_LOGGERS = ("httpx", "httpcore")

_KNOWN: set[str] = set()
_FIELDS = re.compile(
    r'("?(?:adminpass|password|password2|secret|token|signing_secret|sk)"?\s*[:=]\s*)("[^"]*"|\'[^\']*\'|[^\s,}&]+)',
    re.IGNORECASE,
)
_STATE_VALUES = re.compile(r'("?state"?\s*[:=]\s*)\{.*', re.IGNORECASE | re.DOTALL)
_CONTEXT: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "ecsbot_log_context", default=MappingProxyType({})
)


def register_secret(value: str | None) -> None:
    """Remember a secret (token, SK, signing secret) so any log line that contains it is redacted."""
    if value and len(value) >= 6:
        _KNOWN.add(value)


def scrub(text: str) -> str:
    for secret in _KNOWN:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    text = _FIELDS.sub(r"\1[redacted]", text)
    return _STATE_VALUES.sub(r"\1[redacted]", text)


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Attach context fields (request_id, server, job_id) to every record logged inside the block, in this task and
    in the tasks it starts. Fields given as None or "" are left out; inner blocks add to outer ones."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context field(s) {', '.join(sorted(unknown))}; use {', '.join(CONTEXT_FIELDS)}")
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: str(v) for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def context_of(record: logging.LogRecord) -> dict[str, str]:
    """The context fields of a record: `extra=` given to the call wins over the enclosing `log_context`."""
    fields = dict(_CONTEXT.get())
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value:
            fields[name] = str(value)
    return {name: scrub(fields[name]) for name in CONTEXT_FIELDS if name in fields}


class ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if record.exc_info and record.exc_info[1] is not None:
            cleaned_exc = scrub(str(record.exc_info[1]))
            if cleaned_exc != str(record.exc_info[1]):
                record.exc_info = None
                cleaned += f" [{cleaned_exc}]"
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [request_id=… server=… job_id=…]`; the bracket only when there is context."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = context_of(record)
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the line that names its context
        tags = " ".join(f"{name}={value}" for name, value in fields.items())
        return f"{head} [{tags}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the context fields, and `exception`
    (its traceback, scrubbed) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
            **context_of(record),
        }
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def check_level(level: str) -> str:
    """The level's upper-case name; a ValueError in one sentence for anything else."""
    name = str(level).strip().upper()
    if name not in LEVELS:
        raise ValueError(f"ECSBOT_LOG_LEVEL is {level!r}, which is not a log level: use one of {', '.join(LEVELS)}.")
    return name


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """One scrubbing handler on stderr for the whole process; httpx and httpcore are held at WARNING (at DEBUG,
    httpx says INFO: one line per cloud call)."""
    name = check_level(level)
    if fmt not in FORMATS:
        raise ValueError(f"ECSBOT_LOG_FORMAT is {fmt!r}: use text or json.")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(name)
    for quiet in QUIET_LOGGERS:
        logging.getLogger(quiet).setLevel(logging.WARNING)
    if name == "DEBUG":
        logging.getLogger("httpx").setLevel(logging.INFO)
