"""Persistence behind one async interface (`Store`), so no database call ever runs on the event loop.

`open_store` picks the engine from the target: a `postgresql://` URL is PostgreSQL (replicas share it), anything
else is a SQLite file (the embedded default, one machine). psycopg is imported only for the former.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bot.domain.request import utcnow
from bot.store.health import POSTGRES_SCHEMES, describe_database
from bot.store.protocol import RequestNotFound, ServerBusyError, Store, StoreError, StoreUnavailable
from bot.store.sqlite import SQLiteStore

__all__ = [
    "RequestNotFound",
    "SQLiteStore",
    "ServerBusyError",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "describe_database",
    "open_store",
]


def open_store(target: Path | str, *, clock: Callable[[], datetime] = utcnow) -> Store:
    """The store for `target`, opened and with its schema up to date; `StoreError` says what is wrong."""
    if isinstance(target, str) and target.startswith(POSTGRES_SCHEMES):
        try:
            from bot.store.postgres import PostgresStore
        except ImportError:
            raise StoreError(
                "ECSBOT_DATABASE_URL names PostgreSQL, but psycopg is not installed: "
                "pip install 'ecs-changeos-bot[postgres]'."
            ) from None
        return PostgresStore(target, clock=clock)
    return SQLiteStore(target, clock=clock)
