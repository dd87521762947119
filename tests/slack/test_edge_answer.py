"""Bolt's answer crosses the edge as the text Bolt wrote; only Socket Mode, whose ack carries an object, decodes it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.edge import MALFORMED, Answer, SlackEdge
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.fake_slack import FakeSlack
from tests.support.waiting import until

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


async def test_a_malformed_click_is_answered_before_the_person_is_told_and_told_once_per_burst(fake: FakeSlack) -> None:
    """Telling waits for Slack's rate limit; the answer must not. A burst from one person gets one word."""
    told: list[tuple[str, str, str]] = []
    release = asyncio.Event()

    async def tell_user(channel: str, user: str, text: str) -> None:
        told.append((channel, user, text))
        await release.wait()

    client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
    bolt = AsyncApp(client=client, request_verification_enabled=False)
    edge = SlackEdge(bolt, signing_secret=SECRET, tell_user=tell_user)
    click = {"type": "block_actions", "user": {"id": "U01REQ0001"}, "channel": {"id": "C01CHAN001"}, "actions": 5}
    body = sr.interaction_body(click)
    for _ in range(3):
        assert (await edge.http(body, sr.sign(SECRET, body))).status == 400  # answered while the word still waits
    await until(lambda: told, timeout=5, what="the word to the person")
    assert told == [("C01CHAN001", "U01REQ0001", MALFORMED)]
    release.set()
    await until(lambda: not edge._telling, timeout=5, what="the word delivered")
    assert (await edge.http(body, sr.sign(SECRET, body))).status == 400
    await until(lambda: len(told) == 2, timeout=5, what="a later burst told again")
