"""Fixtures shared by every test folder: the bot's JSON log capture, and a real PostgreSQL server, started once
per session when a test asks."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings

from bot import logs
from tests.postgres_server import PostgresServer, find_bindir

# Property tests are deterministic: the same examples on every run and machine, no example database between runs, and
# no timing checks (a shared machine slowed example generation past the too_slow health check once: a flaky test).
settings.register_profile(
    "deterministic",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("deterministic")

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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """Skipped with a reason when PostgreSQL is not installed; in CI that is a failure, never a skip."""
    bindir = find_bindir()
    if bindir is None:
        reason = "PostgreSQL is not installed (scripts/test.sh installs Debian's postgresql package)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the PostgreSQL tests")
        pytest.skip(reason)
    server = PostgresServer(bindir)
    server.init()
    yield server
    server.destroy()
