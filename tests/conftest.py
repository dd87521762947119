"""Fixtures every test folder may use: a real PostgreSQL server, started once per session when a test asks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer, find_bindir


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
