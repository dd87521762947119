"""Logging set-up with a scrubber: secrets the process knows, and password-shaped fields, never reach a log line."""

from __future__ import annotations

import logging
import re
import sys

_KNOWN: set[str] = set()
_FIELDS = re.compile(
    r'("?(?:adminpass|password|password2|secret|token|signing_secret|sk)"?\s*[:=]\s*)("[^"]*"|\'[^\']*\'|[^\s,}&]+)',
    re.IGNORECASE,
)
_STATE_VALUES = re.compile(r'("?state"?\s*[:=]\s*)\{.*', re.IGNORECASE | re.DOTALL)


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


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
