"""Fixtures shared by every test folder."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from bot import logs

pytest_plugins = ["tests.support.browser"]  # the `browser` fixture of the page and playground tests


@dataclass
class JsonLogs:
    """What the bot's JSON log handler (ECSBOT_LOG_FORMAT=json, scrubber included) wrote during a test."""

    stream: io.StringIO = field(default_factory=io.StringIO)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def entries(self) -> list[dict[str, str]]:
        """Every line parsed: each must be one JSON object."""
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def json_logs() -> Iterator[JsonLogs]:
    """Adds the production JSON handler to the root logger at DEBUG beside pytest's own, for canary tests."""
    captured = JsonLogs()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ScrubFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield captured
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
