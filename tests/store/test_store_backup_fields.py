"""The backup fields and the backing_up state persist like any other: columns come from the model by themselves."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from bot.domain.request import RequestState as S
from bot.store import ServerBusyError, open_store


async def test_backup_fields_round_trip_and_backing_up_is_live(store, new_request):
    req = await store.create(new_request(backup_wanted=True, rollback_of="CR-ABCDEF"), actor="u")
    await store.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="a")
    sent = datetime(2026, 1, 1, 12, tzinfo=UTC)
    moved = await store.transition(
        req.id,
        to=S.BACKING_UP,
        expected=S.APPROVED,
        actor="bot",
        backup_image_name="ecsbot-web-01-CR-X-20260101T120000Z",
        backup_sent_at=sent,
        backup_job_id="ims-1",
    )
    assert moved is not None and moved.state is S.BACKING_UP
    again = await store.get(req.id)
    assert again.backup_wanted and again.backup_sent_at == sent and again.backup_job_id == "ims-1"
    assert again.rollback_of == "CR-ABCDEF" and again.backup_restart is True
    with pytest.raises(ServerBusyError):
        await store.create(new_request(), actor="u")


async def test_a_version_2_file_gets_the_backup_columns_and_the_new_live_index(db_path, new_request):
    await open_store(db_path).aclose()  # a file with today's schema, then made to look like the one before backups
    old = sqlite3.connect(db_path, isolation_level=None)
    try:
        old.execute("DELETE FROM schema_migrations WHERE version >= 3")
        old.execute("DROP INDEX requests_one_live_per_server")
        old.execute("ALTER TABLE requests DROP COLUMN backup_image_id")
        old.execute(
            "CREATE UNIQUE INDEX requests_one_live_per_server ON requests(server_id) "
            "WHERE state IN ('approved', 'pending_approval', 'reconciling', 'running', 'stopping', 'submitting')"
        )
    finally:
        old.close()
    new = open_store(db_path)
    try:
        req = await new.create(new_request(backup_wanted=True), actor="u")
        await new.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="a")
        moved = await new.transition(req.id, to=S.BACKING_UP, expected=S.APPROVED, actor="bot", backup_image_id="i")
        assert moved is not None and moved.backup_image_id == "i"
        with pytest.raises(ServerBusyError):
            await new.create(new_request(), actor="u")
    finally:
        await new.aclose()
