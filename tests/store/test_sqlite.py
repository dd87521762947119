"""What only the SQLite engine does: its file, its pragmas, its text encoding, its thread."""

import asyncio
import logging
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.domain.request import RequestState
from bot.secretbox import SecretBox
from bot.store import SQLiteStore, StoreError, StoreUnavailable, open_store

CANARY = "Canary-Pw-7781!xyz"


def raw_bytes(path: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(path) + suffix)
        if p.exists():
            out += p.read_bytes()
    return out


@pytest.fixture
async def sqlite(db_path: Path):
    store = SQLiteStore(db_path)
    yield store
    await store.aclose()


async def test_datetimes_are_stored_as_iso_utc_text(sqlite, new_request):
    req = await sqlite.create(new_request(expires_at=datetime(2030, 1, 1, tzinfo=UTC)), actor="u")
    [row] = await sqlite.query("SELECT created_at, expires_at, notify_channels FROM requests WHERE id=?", [req.id])
    assert row["expires_at"] == "2030-01-01T00:00:00.000000+00:00"
    assert row["created_at"].endswith("+00:00")
    assert row["notify_channels"] == "[]"


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "no" / "such" / "x.db")


async def test_pragmas(sqlite):
    async def one(pragma: str):
        return next(iter((await sqlite.query(f"PRAGMA {pragma}"))[0].values()))

    assert await one("journal_mode") == "wal"
    assert await one("secure_delete") == 1
    assert await one("foreign_keys") == 1
    assert await one("busy_timeout") >= 1000


async def test_the_connection_lives_on_the_store_thread_only(sqlite):
    """One connection, one thread: the event loop's thread never touches it."""
    names = await sqlite.query("SELECT 1 AS one")
    assert names == [{"one": 1}]
    with pytest.raises(sqlite3.ProgrammingError, match="thread"):
        sqlite.conn.execute("SELECT 1")
    assert threading.current_thread() is threading.main_thread()


async def test_a_locked_database_makes_the_caller_wait_not_the_loop(db_path, new_request, monkeypatch):
    """Another process holds the write lock: the write waits out the busy timeout on the store's thread, the loop
    keeps turning meanwhile, and the caller gets a clear StoreUnavailable."""
    monkeypatch.setattr("bot.store.sqlite.BUSY_TIMEOUT_S", 0.5)
    store = SQLiteStore(db_path)
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        counting = asyncio.create_task(ticker())
        with pytest.raises(StoreUnavailable, match="try again"):
            await store.create(new_request(), actor="u")
        counting.cancel()
        assert ticks >= 10  # ~50 in 0.5 s; a blocked loop would count none
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await store.aclose()


async def test_closed_store_says_so(db_path):
    store = SQLiteStore(db_path)
    await store.aclose()
    await store.aclose()  # twice is fine
    with pytest.raises(StoreError, match="closed"):
        await store.count_live()


async def test_canary_never_in_the_database_files(sqlite, db_path, new_request, caplog):
    caplog.set_level(logging.DEBUG)
    box = SecretBox("a long passphrase for the tests")
    req = await sqlite.create(new_request(login="password", keyname=None, has_password=True), actor="u")
    ciphertext = box.encrypt(SecretStr(CANARY))
    await sqlite.put_secret(req.id, ciphertext, expires_at=None)
    await sqlite.transition(req.id, to=RequestState.APPROVED, expected=RequestState.PENDING_APPROVAL, actor="a")
    await sqlite.checkpoint()
    before = raw_bytes(db_path)
    assert ciphertext in before  # the check reads the right files
    assert CANARY.encode() not in before
    assert box.decrypt(await sqlite.get_secret(req.id)).get_secret_value() == CANARY
    assert await sqlite.delete_secret(req.id)
    await sqlite.checkpoint()
    after = raw_bytes(db_path)
    assert CANARY.encode() not in after
    assert ciphertext not in after  # secure_delete overwrote it, and the WAL copy went with the checkpoint
    assert ciphertext[:40] not in after
    assert CANARY not in caplog.text
