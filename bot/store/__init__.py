"""Persistence behind one async interface (`Store`), so no database call ever runs on the event loop.

`open_store` picks the engine from the target: a file path is SQLite (the embedded default, one machine).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bot.domain.request import utcnow
from bot.store.protocol import RequestNotFound, ServerBusyError, Store, StoreError, StoreUnavailable
from bot.store.sqlite import SQLiteStore

__all__ = [
    "RequestNotFound",
    "SQLiteStore",
    "ServerBusyError",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]


def open_store(target: Path | str, *, clock: Callable[[], datetime] = utcnow) -> Store:
    """The store for `target`, opened and with its schema up to date; `StoreError` says what is wrong."""
    return SQLiteStore(target, clock=clock)
