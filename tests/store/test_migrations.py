"""Versioned schemas: applied at open, once, in order, on both engines; a database of the previous release opens
with every row intact; a database newer than the bot is refused with a clear reason."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from bot.domain.request import RequestState
from bot.store import Store, StoreError, open_store, schema
from bot.store.codec import KINDS

DATA = Path(__file__).parent / "data"


def raw(database: str, statement: str) -> list[tuple]:
    """One statement on the database, outside the store (literal SQL both engines read alike)."""
    if database.startswith("postgresql://"):
        with psycopg.connect(database, autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        return conn.execute(statement).fetchall()
    finally:
        conn.close()


def migrate(database: str, upto: int) -> int:
    if database.startswith("postgresql://"):
        from bot.store.postgres import migrate as pg_migrate

        return pg_migrate(database, upto=upto)
    from bot.store.sqlite import migrate as sqlite_migrate

    return sqlite_migrate(database, upto=upto)


def test_every_field_of_the_model_has_a_column_as_of_the_latest_version():
    columns = schema.REQUEST_COLUMNS_V1 + schema.REQUEST_COLUMNS_V3 + schema.REQUEST_COLUMNS_V4
    assert schema.missing_columns(name for name, _ in columns) == []
    assert {kind for _, kind in columns} <= set(KINDS.values())
    assert sorted(schema.VERSIONS) == list(range(1, schema.LATEST + 1))


async def test_opening_applies_every_version_once(connect, database):
    store = connect()
    await store.aclose()
    connect()  # a second open finds nothing to do
    rows = raw(database, "SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == list(range(1, schema.LATEST + 1))


async def test_upgrade_from_version_1_keeps_the_rows(connect, database):
    assert migrate(database, 1) == 1
    raw(
        database,
        "INSERT INTO requests (id, state, created_at, updated_at, requester, origin_channel, server_id, server_name, "
        "server_status, target_image_id, target_image_name, target_os_type, cloud_init, login, keyname, has_password, "
        "stop_first, stop_type, reason, notify_channels, checklist, approvals_channel, approvals_required, approvals, "
        "overdue, poll_failures) VALUES ('CR-VERAAA', 'approved', '2026-11-27T09:00:00.000000+00:00', "
        "'2026-11-27T09:00:00.000000+00:00', 'U01REQ0001', 'C01ORIGIN1', 'srv-1', 'web-01', '', 'img-1', 'ubuntu', "
        "'Linux', false, 'keypair', 'ops-key', false, false, 'SOFT', 'made by version 1', '[\"C01NOTIFY1\"]', '[]', "
        "'C01APPROVE1', 1, '[\"U01APR0001\"]', false, 0)",
    )
    raw(database, "INSERT INTO leases (name, owner, expires_at, acquired_at) VALUES ('tracker', 'old', 1.0, 0.0)")
    store = connect()
    request = await store.get("CR-VERAAA")
    assert request is not None and request.state is RequestState.APPROVED
    assert request.approvals == ["U01APR0001"] and request.notify_channels == ["C01NOTIFY1"]
    assert request.created_at == datetime(2026, 11, 27, 9, tzinfo=UTC)
    assert await store.lease_epoch("tracker") == 0  # version 2's column, defaulted for the existing row
    assert await store.acquire_lease("tracker", "new", 30, now=10.0)  # the old one expired: taken over
    assert await store.lease_epoch("tracker") == 1
    assert await store.count_live() == 1


async def test_a_database_newer_than_the_bot_is_refused(connect, database):
    store = connect()
    await store.aclose()
    raw(
        database,
        f"INSERT INTO schema_migrations (version, description, applied_at) "
        f"VALUES ({schema.LATEST + 1}, 'from the future', '2030-01-01T00:00:00+00:00')",
    )
    with pytest.raises(StoreError, match=f"schema version {schema.LATEST + 1}, newer than this bot knows"):
        connect()


async def test_replicas_opening_together_migrate_once(database):
    errors: list[BaseException] = []
    opened: list[Store] = []

    def open_one() -> None:
        try:
            opened.append(open_store(database))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for store in opened:
        await store.aclose()
    assert not errors, errors
    assert len(opened) == 4
    rows = raw(database, "SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == list(range(1, schema.LATEST + 1))


async def test_a_sqlite_file_of_the_previous_release_opens_with_every_row(tmp_path):
    """tests/store/data/made_by_main.sql is the file the release before versioned schemas wrote."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript((DATA / "made_by_main.sql").read_text())
    conn.close()
    store = open_store(path)
    try:
        assert store.version == schema.LATEST
        live = {r.id: r for r in await store.live()}
        assert sorted(live) == ["CR-PREVAB", "CR-PREVAC", "CR-PREVAD"]
        assert live["CR-PREVAC"].approvals == ["U01APR0001"] and live["CR-PREVAC"].approvals_required == 2
        sent = live["CR-PREVAD"]
        assert sent.state is RequestState.SUBMITTING and sent.submit_sent_at is not None
        assert sent.next_poll_at == 1800000000.5 and sent.notify_channels == ["C01NOTIFY1"]
        assert [e.action for e in await store.audit("CR-PREVAD")] == ["created", "approved", "submitting"]
        assert await store.get_secret("request:CR-PREVAD") is None  # expired by now: its date was kept
        assert await store.lease_epoch("tracker") == 0
        assert await store.count_live() == 3
    finally:
        await store.aclose()
