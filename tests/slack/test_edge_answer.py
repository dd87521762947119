"""Bolt's answer crosses the edge as the text Bolt wrote; only Socket Mode, whose ack carries an object, decodes it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.edge import Answer, SlackEdge
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.fake_slack import FakeSlack

SECRET = "edge-answer-secret-0000"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:  # Bolt asks auth.test once
        yield server


def edge_answering(fake: FakeSlack, **ack_kwargs: Any) -> SlackEdge:
    client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
    bolt = AsyncApp(client=client, request_verification_enabled=False)  # as bot/slack/app.py builds it

    @bolt.command("/changeos")
    async def on_command(ack: Any) -> None:
        await ack(**ack_kwargs)

    return SlackEdge(bolt, signing_secret=SECRET)


async def answer_to_command(edge: SlackEdge) -> Answer:
    body = sr.slash_command("help", response_url="http://127.0.0.1:9/response/x")
    headers = sr.sign(SECRET, body)
    return await edge.http(body, headers)


async def test_a_json_answer_is_passed_through_as_bolts_text(fake: FakeSlack) -> None:
    answer = await answer_to_command(edge_answering(fake, text="hi <@U1>", response_type="ephemeral"))
    assert answer.status == 200 and answer.body is None and answer.json_text is not None
    assert json.loads(answer.json_text) == {"text": "hi <@U1>", "response_type": "ephemeral"}
    assert answer.payload == json.loads(answer.json_text)  # what a Socket Mode ack carries


async def test_a_plain_text_answer_still_becomes_a_text_object(fake: FakeSlack) -> None:
    answer = await answer_to_command(edge_answering(fake, text="just words"))
    assert answer.json_text is None and answer.body == {"text": "just words"} and answer.payload == answer.body


async def test_an_empty_ack_has_no_body(fake: FakeSlack) -> None:
    answer = await answer_to_command(edge_answering(fake))
    assert answer == Answer(200) and answer.payload is None
