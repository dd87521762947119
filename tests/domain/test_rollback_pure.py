"""Pure parts of backup and rollback: the commands, which image is the server's own backup, when a rollback is
possible, the plan card's duration guess."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.domain.backup import backup_minutes, image_tags, is_own_backup
from bot.domain.command import BackupsCommand, RollbackCommand, UsageError, parse_command
from bot.domain.request import ChangeRequest, RequestState
from bot.services.plan import rollback_refusal

SERVER = "7a9f4d3b-0000-4f00-8000-000000000002"
TAGS = [f"{k}={v}" for k, v in image_tags("CR-ABCDEF", SERVER, datetime(2026, 1, 1, tzinfo=UTC)).items()]


def test_rollback_and_backups_commands() -> None:
    assert parse_command("rollback cr-abcdef") == RollbackCommand("CR-ABCDEF")
    assert parse_command("backups web-01") == BackupsCommand("web-01")
    assert isinstance(parse_command("rollback"), UsageError)
    assert isinstance(parse_command("rollback web-01"), UsageError)
    assert isinstance(parse_command("backups"), UsageError)


@pytest.mark.parametrize(
    ("tags", "origin", "server", "own"),
    [
        (TAGS, f"instance,{SERVER}", SERVER, True),
        (TAGS, "instance,another-server", SERVER, False),  # IMS says it came from another disk
        (TAGS, None, SERVER, False),  # an uploaded image with copied tags
        (TAGS, f"instance,{SERVER}", "another-server", False),  # another server's backup
        ([t for t in TAGS if not t.startswith("ecsbot-request=")], f"instance,{SERVER}", SERVER, False),
        ([], f"instance,{SERVER}", SERVER, False),  # a person's own image of the server: not the bot's
    ],
)
def test_only_the_servers_own_backup_counts(tags: list[str], origin: str | None, server: str, own: bool) -> None:
    assert is_own_backup(tags, origin, server) is own


def test_backup_minutes_grow_with_the_disk() -> None:
    assert backup_minutes(None) == backup_minutes(40) == 4
    assert backup_minutes(100) == 10


def _request(**fields: object) -> ChangeRequest:
    base: dict[str, object] = dict(
        requester="U1",
        origin_channel="C1",
        server_id=SERVER,
        target_image_id="img",
        reason="r",
        keyname="k",
        approvals_channel="C2",
    )
    return ChangeRequest(**{**base, **fields})


def test_rollback_refusals_say_why() -> None:
    assert "no change request CR-ZZZZZZ" in (rollback_refusal(None, "CR-ZZZZZZ") or "")
    assert "still pending approval" in (rollback_refusal(_request(), "x") or "")
    ended = _request(state=RequestState.FAILED, backup_failure="IMS failed the backup.")
    assert "IMS failed the backup" in (rollback_refusal(ended, ended.id) or "")
    assert rollback_refusal(_request(state=RequestState.SUCCEEDED, backup_image_id="b"), "x") is None
