"""The playground's API over HTTP (no browser): bad input gets a sentence, a command reaches the bot signed, and a
bad --policy stops `ecsbot playground` with one line."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from sandbox.devtools.stack import COMMAND_CHANNEL, OUTSIDER, REQUESTER
from sandbox.playground.server import Playground, run_playground


@pytest.fixture
async def pg():
    async with Playground(speed=200) as playground:
        yield playground


async def test_bad_requests_are_explained(pg: Playground) -> None:
    async with httpx.AsyncClient(base_url=pg.url) as http:
        cases = [
            ("/api/command", b"not json", "the body must be JSON"),
            ("/api/command", b"[]", "the body must be a JSON object"),
            ("/api/command", b'{"user": "U01REQ0001", "channel": "C01CHAN001", "line": "hi"}', "only slash commands"),
            ("/api/command", b'{"user": "U0NOBODY", "channel": "C01CHAN001", "line": "/changeos"}', "unknown user"),
            ("/api/submit", b'{"user": "U01REQ0001", "view_id": "V404", "values": {}}', "not open for this user"),
            ("/api/action", b'{"user": "U01REQ0001", "channel": "C1", "ts": "1.2", "action_id": "x"}', "gone"),
            ("/api/faults", b'{"fault": "meteor"}', "unknown fault 'meteor'"),
        ]
        for path, body, sentence in cases:
            response = await http.post(path, content=body)
            assert response.status_code == 400, (path, body)
            assert sentence in response.json()["error"], (path, body)


async def test_a_command_reaches_the_bot_and_its_ack_shows_as_ephemeral(pg: Playground) -> None:
    async with httpx.AsyncClient(base_url=pg.url) as http:
        line = {"channel": COMMAND_CHANNEL, "line": "/changeos help"}
        assert (await http.post("/api/command", json={"user": REQUESTER, **line})).status_code == 200
        assert (await http.post("/api/command", json={"user": OUTSIDER, **line})).status_code == 200
    fake = pg.stack.slack
    shown = {m.ephemeral_user: m.text for m in fake.ephemerals(COMMAND_CHANNEL)}
    assert "/changeos SERVER" in shown[REQUESTER]
    assert "You are not named in the bot's policy" in shown[OUTSIDER]
    assert fake.errors() == []


async def test_a_bad_policy_stops_the_playground_with_one_sentence(tmp_path: Path, capsys) -> None:
    missing = await run_playground(policy=tmp_path / "nope.toml", port=0, out=io.StringIO())
    broken = tmp_path / "broken.toml"
    broken.write_text('approvals_channel = "not-a-channel"\n')
    invalid = await run_playground(policy=broken, port=0, out=io.StringIO())
    err = capsys.readouterr().err.splitlines()
    assert (missing, invalid) == (2, 2)
    assert err[0].startswith(f"ecsbot playground: cannot read the policy {tmp_path / 'nope.toml'}")
    assert err[1].startswith("ecsbot playground: ") and "broken.toml" in err[1]
    assert "Traceback" not in "\n".join(err)
