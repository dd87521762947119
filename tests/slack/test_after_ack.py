"""What follows an ack starts in a lull: never while a request waits for its answer, never later than `longest`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.after_ack import AfterAck
from bot.slack.edge import SlackEdge
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.fake_slack import FakeSlack
from tests.support.waiting import until

SECRET = "after-ack-secret-00000000"
CHANCE = 0.05  # long enough for work started too early to show itself (the lull here is a few ms)


class Recorder:
    """Work that notes when it started, and what the test had said by then."""

    def __init__(self) -> None:
        self.started: list[tuple[str, float, set[str]]] = []
        self.said: set[str] = set()

    def work(self, name: str) -> Any:
        async def run() -> None:
            self.started.append((name, time.monotonic(), set(self.said)))

        return run

    def names(self) -> list[str]:
        return [name for name, _, _ in self.started]


async def test_work_waits_for_the_request_in_flight_then_for_the_quiet() -> None:
    later, seen = AfterAck(quiet=0.02, longest=10.0), Recorder()
    with later.answering():
        later.start(seen.work("form"), name="form")
        await asyncio.sleep(CHANCE)
        assert seen.started == []
        seen.said.add("answered")
    answered_at = time.monotonic()
    await until(lambda: seen.started, timeout=5, what="the work started", every=0.001)
    (_, started_at, said) = seen.started[0]
    assert "answered" in said
    assert started_at - answered_at >= 0.02  # the quiet after the last answer
    assert later.pending == 0


async def test_a_burst_gets_all_its_answers_before_any_of_its_work() -> None:
    later, seen = AfterAck(quiet=0.03, longest=10.0), Recorder()
    for index in range(5):  # one request after another, each answered, closer together than the quiet
        with later.answering():
            later.start(seen.work(f"w{index}"), name=f"w{index}")
        await asyncio.sleep(0.005)
        assert seen.started == []
    seen.said.add("burst over")
    await until(lambda: len(seen.started) == 5, timeout=5, what="all five started", every=0.001)
    assert seen.names() == ["w0", "w1", "w2", "w3", "w4"]  # in the order they were queued
    assert all("burst over" in said for _, _, said in seen.started)


async def test_a_steady_stream_still_starts_the_work_within_longest() -> None:
    later, seen = AfterAck(quiet=0.01, longest=0.1), Recorder()
    with later.answering():  # a request that is never answered: no lull comes
        queued_at = time.monotonic()
        later.start(seen.work("form"), name="form")
        await until(lambda: seen.started, timeout=5, what="the work started", every=0.001)
    assert seen.started[0][1] - queued_at >= 0.1


async def test_a_failure_is_logged_by_name_and_told(caplog: pytest.LogCaptureFixture) -> None:
    later, told = AfterAck(quiet=0.001), []

    async def boom() -> None:
        raise RuntimeError("cloud said no")

    async def tell() -> None:
        told.append("sorry")

    with caplog.at_level(logging.ERROR, logger="bot.slack.after_ack"):
        later.start(boom, name="opening the form", on_failure=tell)
        await until(lambda: told, timeout=5, what="the person told")
    assert told == ["sorry"]
    assert [r.getMessage() for r in caplog.records] == ["opening the form failed after the ack"]


async def test_a_failure_to_tell_is_logged_too(caplog: pytest.LogCaptureFixture) -> None:
    later = AfterAck(quiet=0.001)

    async def boom() -> None:
        raise RuntimeError("first")

    with caplog.at_level(logging.ERROR, logger="bot.slack.after_ack"):
        later.start(boom, name="refresh", on_failure=boom)
        await until(lambda: len(caplog.records) == 2, timeout=5, what="two log lines")
    assert "refresh failed after the ack" in caplog.records[0].getMessage()
    assert "did not work either" in caplog.records[1].getMessage()


async def test_closing_starts_queued_work_at_once_and_cuts_what_runs_too_long() -> None:
    later, seen = AfterAck(quiet=0.01, longest=60.0), Recorder()
    hanging = asyncio.Event()
    cancelled: list[bool] = []

    async def hangs() -> None:
        hanging.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    later.start(hangs, name="hangs")
    await until(hanging.is_set, timeout=5, what="the hanging work started")
    with later.answering():  # a request in flight: without the close, the next work would wait for a lull
        later.start(seen.work("queued"), name="queued")
        await later.aclose(timeout=0.05)
    assert seen.names() == ["queued"] and cancelled == [True] and later.pending == 0
    later.start(seen.work("too late"), name="too late")  # after the close: refused, not run
    assert later.pending == 0 and seen.names() == ["queued"]


# ---------------------------------------------------------------------------------------------------------------------
# Through the edge: a request counts from its arrival to its answer, over HTTP and Socket Mode alike.


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:  # Bolt asks auth.test once
        yield server


def command(text: str) -> tuple[bytes, dict[str, str]]:
    body = sr.slash_command(text, response_url="http://127.0.0.1:9/response/x")
    return body, sr.sign(SECRET, body)


@pytest.mark.parametrize("path", ["http", "socket"])
async def test_the_edge_holds_work_back_while_a_request_waits_for_its_ack(fake: FakeSlack, path: str) -> None:
    later, seen = AfterAck(quiet=0.005, longest=10.0), Recorder()
    release = asyncio.Event()
    bolt = AsyncApp(client=AsyncWebClient(token=fake.bot_token, base_url=fake.api_url), process_before_response=True)

    @bolt.command("/changeos")
    async def on_command(ack: Any, body: dict[str, Any]) -> None:
        if body["text"] == "slow":
            await release.wait()  # a listener still working on its answer
        await ack()
        later.start(seen.work(body["text"]), name=body["text"])

    edge = SlackEdge(bolt, signing_secret=SECRET, after_ack=later)

    async def send(text: str) -> int:
        if path == "http":
            return (await edge.http(*command(text))).status
        fields = sr.slash_command_fields(text, response_url="http://127.0.0.1:9/response/x")
        return (await edge.dispatch(fields)).status

    assert await send("fast") == 200  # its work is queued
    slow = asyncio.create_task(send("slow"))
    await asyncio.sleep(CHANCE)
    assert seen.started == [] and not slow.done()
    seen.said.add("slow answered")
    release.set()
    assert await slow == 200
    await until(lambda: len(seen.started) == 2, timeout=5, what="both started", every=0.001)
    assert seen.names() == ["fast", "slow"]
    assert all("slow answered" in said for _, _, said in seen.started)
