"""`ecsbot audit export`, `ecsbot retention run` and `ecsbot rotate-key`, run as an operator runs them."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.domain.request import RequestState
from bot.secretbox import SecretBox
from bot.store import SQLiteStore
from tests.support.bot_process import ecsbot
from tests.support.requests import change_request

CANARY = "Canary-Pa55word-7f3e9!"
OLD, NEW = SecretBox.generate_key(), SecretBox.generate_key()


async def _seed(db: Path) -> list[str]:
    """Two old ended requests of web-01 (one prunable, its newest kept) and a recent one; a canary secret."""
    store = SQLiteStore(db)
    ids = []
    for days_ago in (900, 800, 1):
        at = datetime.now(UTC) - timedelta(days=days_ago)
        req = change_request(at=at, state=RequestState.SUCCEEDED, finished_at=at, server_id=f"srv-{days_ago > 1}")
        ids.append((await store.create(req, actor="U01REQ0001")).id)
    await store.record(ids[0], actor="U01REQ0001", action="note", detail='a "quoted", comma\nand a line')
    await store.put_secret("request:" + ids[2], SecretBox(OLD).encrypt(CANARY), expires_at=None)
    await store.aclose()
    return ids


async def test_audit_export_streams_jsonl_and_csv(tmp_path: Path) -> None:
    ids = await _seed(tmp_path / "ecsbot.db")
    done = ecsbot(tmp_path, "audit", "export", ECSBOT_DB="ecsbot.db")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["request_id"] for r in rows] == [*ids, ids[0]]
    assert rows[-1]["detail"] == 'a "quoted", comma\nand a line' and rows[0]["to_state"] == "succeeded"
    assert "Exported 4 audit rows." in done.stderr

    out = tmp_path / "audit.csv"
    args = ("--format", "csv", "--since", "30d", "--output", str(out))
    done = ecsbot(tmp_path, "audit", "export", *args, ECSBOT_DB="ecsbot.db")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    # the note was written now, the third request a day ago; the old "created" rows are before the 30 days
    assert [(r["request_id"], r["action"]) for r in table] == [(ids[2], "created"), (ids[0], "note")]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--since", "soon"], "--since takes an age such as 7d"),
        (["--format", "xml"], "invalid choice: 'xml'"),
        (["--output", "/nonexistent/dir/a.jsonl"], "cannot write /nonexistent/dir/a.jsonl"),
    ],
)
def test_audit_export_refuses_bad_input_in_one_sentence(tmp_path: Path, args: list[str], said: str) -> None:
    done = ecsbot(tmp_path, "audit", "export", *args, ECSBOT_DB="ecsbot.db")
    assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr


async def test_retention_run_prunes_and_the_kept_request_says_what_went(tmp_path: Path) -> None:
    ids = await _seed(tmp_path / "ecsbot.db")
    done = ecsbot(tmp_path, "retention", "run", ECSBOT_DB="ecsbot.db")
    assert done.returncode == 0, done.stderr
    assert "Removed 1 requests" in done.stdout and "with their 2 audit rows" in done.stdout
    store = SQLiteStore(tmp_path / "ecsbot.db")
    try:
        assert await store.get(ids[0]) is None
        kept = await store.audit(ids[1])
        assert kept[-1].action == "pruned" and ids[0] in kept[-1].detail
    finally:
        await store.aclose()
    assert "Removed 0 requests" in ecsbot(tmp_path, "retention", "run", ECSBOT_DB="ecsbot.db").stdout
    off = ecsbot(tmp_path, "retention", "run", ECSBOT_DB="ecsbot.db", ECSBOT_RETENTION_DAYS="0")
    assert "ECSBOT_RETENTION_DAYS is 0" in off.stdout


async def test_rotate_key_re_encrypts_and_the_canary_appears_nowhere(tmp_path: Path) -> None:
    ids = await _seed(tmp_path / "ecsbot.db")
    key = "request:" + ids[2]
    refused = ecsbot(tmp_path, "rotate-key", ECSBOT_DB="ecsbot.db", ECSBOT_SECRET_KEY=NEW)
    assert refused.returncode == 1 and "nothing was changed" in refused.stderr
    assert "ECSBOT_SECRET_KEYS_OLD" in refused.stderr

    done = ecsbot(tmp_path, "rotate-key", ECSBOT_DB="ecsbot.db", ECSBOT_SECRET_KEY=NEW, ECSBOT_SECRET_KEYS_OLD=OLD)
    assert done.returncode == 0, done.stderr
    assert "Re-encrypted 1 stored secrets" in done.stdout and "0 already used it" in done.stdout
    again = ecsbot(tmp_path, "rotate-key", ECSBOT_DB="ecsbot.db", ECSBOT_SECRET_KEY=NEW, ECSBOT_SECRET_KEYS_OLD=OLD)
    assert "Re-encrypted 0 stored secrets" in again.stdout and "1 already used it" in again.stdout

    store = SQLiteStore(tmp_path / "ecsbot.db")
    try:
        token = await store.get_secret(key)
    finally:
        await store.aclose()
    assert token is not None and SecretBox(NEW).decrypt(token).get_secret_value() == CANARY  # the new key alone
    for text in (refused.stdout, refused.stderr, done.stdout, done.stderr, again.stdout, again.stderr):
        assert CANARY not in text
    for path in tmp_path.iterdir():
        assert CANARY.encode() not in path.read_bytes(), path.name
