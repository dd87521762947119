"""While the database does not answer, the edge refuses new work in plain words where the person acted, instead of
letting Bolt half-do it; the image type-ahead (no database) still answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.edge import Answer, SlackEdge
from bot.slack.texts import DATABASE_DOWN
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.fake_slack import FakeSlack

SECRET = "edge-db-down-secret-000"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


class Down:
    """The store's `problem`, switchable."""

    def __init__(self) -> None:
        self.problem: str | None = "The database postgresql://db:5432/ecsbot did not answer: connection refused."


def edge(fake: FakeSlack, down: Down, told: list[tuple[str, str, str]]) -> tuple[SlackEdge, list[str]]:
    bolt = AsyncApp(
        client=AsyncWebClient(token=fake.bot_token, base_url=fake.api_url), request_verification_enabled=False
    )
    reached: list[str] = []

    @bolt.command("/changeos")
    async def on_command(ack: Any) -> None:
        reached.append("command")
        await ack(text="planned")

    async def tell(channel: str, user: str, text: str) -> None:
        told.append((channel, user, text))

    return SlackEdge(bolt, signing_secret=SECRET, tell_user=tell, unavailable=lambda: down.problem), reached


async def send(edge: SlackEdge, body: bytes) -> Answer:
    headers = {**sr.sign(SECRET, body), "Content-Type": "application/x-www-form-urlencoded"}
    return await edge.http(body, headers)


async def test_a_command_is_answered_with_the_reason_and_reaches_no_listener(fake: FakeSlack) -> None:
    down, told = Down(), []
    slack_edge, reached = edge(fake, down, told)
    answer = await send(slack_edge, sr.slash_command("web-01 ubuntu-22.04", response_url="http://127.0.0.1:9/r/x"))
    assert answer == Answer.ephemeral(DATABASE_DOWN) and reached == []
    assert "postgresql://" not in DATABASE_DOWN  # people are told what to do, not where the database is
    down.problem = None  # back: the same command goes through
    answer = await send(slack_edge, sr.slash_command("web-01 ubuntu-22.04", response_url="http://127.0.0.1:9/r/x"))
    assert reached == ["command"] and answer.payload == {"text": "planned"}


async def test_a_form_keeps_its_input_and_shows_the_reason(fake: FakeSlack) -> None:
    down, told = Down(), []
    slack_edge, _ = edge(fake, down, told)
    view = {
        "id": "V01PLAN0001",
        "type": "modal",
        "callback_id": "changeos_plan",
        "private_metadata": "{}",
        "blocks": [
            {"type": "section", "block_id": "facts", "text": {"type": "mrkdwn", "text": "plan"}},
            {
                "type": "input",
                "block_id": "reason_b",
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {"type": "plain_text_input", "action_id": "reason"},
            },
        ],
        "state": {"values": {}},
    }
    answer = await send(slack_edge, sr.view_submission(view=view, values={}))
    assert answer.status == 200
    assert answer.payload == {"response_action": "errors", "errors": {"reason_b": DATABASE_DOWN}}


CARD = {
    "ts": "1700000000.000100",
    "text": "card",
    "blocks": [
        {
            "type": "actions",
            "block_id": "cr_actions:CR-ABCDEF",
            "elements": [
                {
                    "type": "button",
                    "action_id": "cr_approve",
                    "value": "CR-ABCDEF",
                    "text": {"type": "plain_text", "text": "Approve"},
                }
            ],
        }
    ],
}


async def test_a_click_is_answered_with_an_ephemeral_to_whoever_clicked(fake: FakeSlack) -> None:
    down, told = Down(), []
    slack_edge, _ = edge(fake, down, told)
    body = sr.block_actions(
        action_id="cr_approve",
        value="CR-ABCDEF",
        block_id="cr_actions:CR-ABCDEF",
        channel_id="C01APPROVE1",
        message=CARD,
        response_url=fake.response_url("click"),
    )
    answer = await send(slack_edge, body)
    assert answer == Answer(200)
    assert told == [("C01APPROVE1", "U01APR0001", DATABASE_DOWN)]
