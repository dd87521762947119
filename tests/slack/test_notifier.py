"""The notifier against the fake Slack Web API over real HTTP on loopback: pacing, coalescing, 429s, errors, drain.

Pacing is checked on a manual clock shared by the notifier's token buckets and the fake's call records: a budget's
tokens appear only when the test moves the clock, so the timings asserted are exact and a loaded machine cannot
change them (it can only make the test take longer)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.notifier import Notifier
from sandbox.devtools.fake_slack import Call, FakeSlack
from tests.support.clocks import SecondsClock as ManualClock
from tests.support.waiting import until

CANARY = "CANARY-7f3e-do-not-log"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeSlack]:
    async with FakeSlack(clock=clock) as server:  # call.time reads the manual clock
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def make_client(base_url: str, session: aiohttp.ClientSession) -> AsyncWebClient:
    # No retry handlers at all: the notifier alone must cope with 429s, 5xx and dropped connections.
    return AsyncWebClient(token="xoxb-test", base_url=base_url, session=session, retry_handlers=[], timeout=5)


@asynccontextmanager
async def running(
    fake: FakeSlack, session: aiohttp.ClientSession, *, drain: float = 5.0, **options: Any
) -> AsyncIterator[Notifier]:
    notifier = Notifier(make_client(fake.api_url, session), **options)
    notifier.retry_base_delay = 0.01
    notifier.retry_max_delay = 0.05
    await notifier.start()
    try:
        yield notifier
    finally:
        await notifier.aclose(drain_timeout=drain)


def max_in_window(calls: list[Call], window: float) -> int:
    times = sorted(c.time for c in calls)
    return max((sum(1 for u in times[i:] if u < t + window) for i, t in enumerate(times)), default=0)


def section(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


# -- chat.postMessage -------------------------------------------------------------------------------------------------


async def test_posts_land_in_order_per_channel_and_per_channel_rate(
    fake: FakeSlack, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    rate = 16  # a power of two: each step of 1/16 s adds exactly one token, with no rounding
    start = clock()

    def sent(channel: str) -> list[Call]:
        return [c for c in fake.calls_to("chat.postMessage") if c.body["channel"] == channel]

    async with running(
        fake, session, clock=clock, posts_per_second_per_channel=rate, post_burst=2, workspace_posts_per_minute=6000
    ) as notifier:
        posts = [notifier.post("C1", f"c1-{i}") for i in range(8)] + [notifier.post("C2", f"c2-{i}") for i in range(8)]
        everything = asyncio.gather(*posts)
        for landed in range(2, 9):  # 2 at once, then one per channel for each 1/16 s the clock moves, never more
            await fake.wait_until(
                lambda n=landed: len(sent("C1")) == n and len(sent("C2")) == n, what=f"{landed} posts per channel"
            )
            clock.advance(1 / rate)
        results = await asyncio.wait_for(everything, timeout=5)
    assert all(results)
    assert [m.text for m in fake.messages("C1")] == [f"c1-{i}" for i in range(8)]
    assert [m.text for m in fake.messages("C2")] == [f"c2-{i}" for i in range(8)]
    assert results[:8] == [m.ts for m in fake.messages("C1")]
    expected = [0.0, 0.0] + [k / rate for k in range(1, 7)]  # the burst of 2, then the channel's rate
    assert [c.time - start for c in sent("C1")] == expected
    assert [c.time - start for c in sent("C2")] == expected
    assert max_in_window(sent("C1"), 0.2) == 2 + 3  # never more than the burst + rate x window (strict window)
    assert notifier.stats()["chat.postMessage"] == 16


async def test_thread_replies_keep_order_and_broadcast_flag(fake: FakeSlack, session: aiohttp.ClientSession) -> None:
    async with running(fake, session, posts_per_second_per_channel=50) as notifier:
        parent = await notifier.post("C1", "status", section("*running*"))
        assert parent is not None
        replies = await asyncio.gather(
            notifier.post("C1", "step 1", thread_ts=parent),
            notifier.post("C1", "step 2", thread_ts=parent),
            notifier.post("C1", "done", thread_ts=parent, reply_broadcast=True),
        )
    assert all(replies)
    assert [m.text for m in fake.thread("C1", parent)] == ["step 1", "step 2", "done"]
    last = fake.calls_to("chat.postMessage")[-1]
    assert last.body["thread_ts"] == parent and last.body["reply_broadcast"] is True
    assert "reply_broadcast" not in fake.calls_to("chat.postMessage")[1].body


async def test_post_429_pauses_only_that_channel(
    fake: FakeSlack, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    async with running(fake, session, clock=clock) as notifier:
        first = asyncio.create_task(notifier.post("C1", "after the pause"))
        await until(lambda: notifier.stats()["ratelimited"] == 1, timeout=5, what="the 429")
        other = await asyncio.wait_for(notifier.post("C2", "other channel"), timeout=5)  # with the clock stopped
        assert other is not None
        assert not first.done() and len(fake.calls_to("chat.postMessage")) == 2  # C1 waits out Retry-After
        clock.advance(1.0)
        assert await asyncio.wait_for(first, timeout=5) is not None
    calls = fake.calls_to("chat.postMessage")
    limited = calls[0]
    assert limited.status == 429
    c1_retry = next(c for c in calls[1:] if c.body["channel"] == "C1")
    c2 = next(c for c in calls if c.body["channel"] == "C2")
    assert c1_retry.time - limited.time == 1.0
    assert c2.time == limited.time
    assert [m.text for m in fake.messages("C1")] == ["after the pause"]
    assert notifier.stats()["retries"] == 1


async def test_permanent_post_error_returns_none_without_retries_and_logs_no_text(
    fake: FakeSlack, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("chat.postMessage", status=200, error="channel_not_found")
    caplog.set_level(logging.DEBUG, logger="bot")
    async with running(fake, session) as notifier:
        result = await asyncio.wait_for(notifier.post("C404", f"hello {CANARY}", section(CANARY)), timeout=5)
        assert result is None
        # The next post to a good channel is unaffected.
        assert await notifier.post("C1", "fine") is not None
    assert len([c for c in fake.calls_to("chat.postMessage") if c.body["channel"] == "C404"]) == 1
    assert notifier.stats()["failed"] == 1 and notifier.stats()["retries"] == 0
    failures = [r for r in caplog.records if "channel_not_found" in r.getMessage()]
    assert len(failures) == 1
    assert "C404" in failures[0].getMessage() and failures[0].levelno == logging.WARNING
    assert CANARY not in caplog.text


async def test_server_errors_are_retried_then_given_up_after_max_attempts(
    fake: FakeSlack, session: aiohttp.ClientSession
) -> None:
    fake.fail_next("chat.postMessage", status=500, count=2)
    async with running(fake, session, max_attempts=3, posts_per_second_per_channel=50) as notifier:
        assert await asyncio.wait_for(notifier.post("C1", "third time lucky"), timeout=5) is not None
        assert len(fake.calls_to("chat.postMessage")) == 3
        fake.fail_next("chat.postMessage", status=503, count=5)
        assert await asyncio.wait_for(notifier.post("C1", "never"), timeout=5) is None
    assert len(fake.calls_to("chat.postMessage")) == 6
    assert [m.text for m in fake.messages("C1")] == ["third time lucky"]
    assert notifier.stats()["retries"] == 4 and notifier.stats()["failed"] == 1


async def test_connection_errors_are_retried_and_bounded(session: aiohttp.ClientSession) -> None:
    # A port that was just free: nothing listens, every connection is refused.
    async with FakeSlack() as gone:
        url = gone.api_url
    notifier = Notifier(make_client(url, session), max_attempts=3)
    notifier.retry_base_delay = 0.01
    await notifier.start()
    try:
        assert await asyncio.wait_for(notifier.post("C1", "into the void"), timeout=5) is None
        assert await asyncio.wait_for(notifier.update("C1", "1.2", "x"), timeout=5) is False
    finally:
        await notifier.aclose(drain_timeout=1)
    stats = notifier.stats()
    assert stats["chat.postMessage"] == 3 and stats["chat.update"] == 3
    assert stats["retries"] == 4 and stats["failed"] == 2


# -- chat.update ------------------------------------------------------------------------------------------------------


async def test_200_updates_coalesce_and_the_last_content_lands(
    fake: FakeSlack, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with running(fake, session, clock=clock, updates_per_minute=60) as notifier:
        ts = await notifier.post("C1", "v-start")
        assert ts is not None
        waiters = []
        for i in range(200):
            waiters.append(asyncio.create_task(notifier.update("C1", ts, f"v{i}", section(f"*v{i}*"))))
            if i % 40 == 39 and i < 120:  # let the burst's edits go out (one at a time) while more arrive
                await fake.wait_until(lambda n=i // 40 + 1: len(fake.calls_to("chat.update")) >= n, what="an edit")
        assert len(fake.calls_to("chat.update")) == 3  # the burst of 3; the clock has not moved
        clock.advance(1.0)  # one more token (60/min): the newest content goes out
        results = await asyncio.wait_for(asyncio.gather(*waiters), timeout=10)
    assert all(results)
    message = fake.message("C1", ts)
    assert message.text == "v199"
    assert message.blocks[0]["text"]["text"] == "*v199*"
    calls = fake.calls_to("chat.update")
    assert len(calls) == 4
    # Edits of one message go out oldest first: the versions Slack saw only move forward.
    seen = [int(v.text[1:]) for v in message.history[1:]] + [199]
    assert seen == sorted(seen)
    stats = notifier.stats()
    assert stats["coalesced"] >= 195 and stats["chat.update"] == len(calls)


async def test_identical_content_is_not_sent_again(fake: FakeSlack, session: aiohttp.ClientSession) -> None:
    async with running(fake, session) as notifier:
        ts = await notifier.post("C1", "same", section("same"))
        assert ts is not None
        assert await notifier.update("C1", ts, "same", section("same")) is True  # what the post put there
        assert await notifier.update("C1", ts, "new", section("new")) is True
        assert await notifier.update("C1", ts, "new", section("new")) is True
    assert len(fake.calls_to("chat.update")) == 1
    assert notifier.stats()["skipped"] == 2


async def test_update_429_pauses_every_update_then_lands(
    fake: FakeSlack, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    fake.fail_next("chat.update", status=429, retry_after=1)
    async with running(fake, session, clock=clock, updates_per_minute=600) as notifier:
        a = await notifier.post("C1", "a")
        b = await notifier.post("C2", "b")
        assert a and b
        first = asyncio.create_task(notifier.update("C1", a, "a1"))
        await until(lambda: notifier.stats()["ratelimited"] == 1, timeout=5, what="the 429")
        newer = asyncio.create_task(notifier.update("C1", a, "a2"))  # replaces a1 while paused
        other = asyncio.create_task(notifier.update("C2", b, "b1"))  # another message: paused too (Tier 3 is global)
        everything = asyncio.gather(first, newer, other)
        clock.advance(1.0)  # Retry-After has passed; the pause left one token for the first edit after it
        await fake.wait_until(lambda: len(fake.calls_to("chat.update")) == 2, what="the first edit after the pause")
        clock.advance(1.0)
        assert await asyncio.wait_for(everything, timeout=5) == [True, True, True]
    calls = fake.calls_to("chat.update")
    limited = calls[0]
    assert limited.status == 429
    assert len(calls) == 3
    assert calls[1].time - limited.time == 1.0 and calls[2].time - limited.time == 2.0
    assert fake.message("C1", a).text == "a2"
    assert [v.text for v in fake.message("C1", a).history] == ["a"]  # a1 was never shown
    assert fake.message("C2", b).text == "b1"


async def test_permanent_update_error_returns_false_once(fake: FakeSlack, session: aiohttp.ClientSession) -> None:
    async with running(fake, session) as notifier:
        assert await asyncio.wait_for(notifier.update("C1", "1718000000.999999", "x"), timeout=5) is False
    calls = fake.calls_to("chat.update")
    assert len(calls) == 1 and calls[0].error == "message_not_found"
    assert notifier.stats()["failed"] == 1


async def test_1000_messages_updated_at_once_never_exceed_the_budget(
    fake: FakeSlack, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    seeder = make_client(fake.api_url, session)
    stamps: list[tuple[str, str]] = []
    for batch in range(10):
        answers = await asyncio.gather(
            *(seeder.chat_postMessage(channel=f"C{batch}", text=f"job {batch}-{i}") for i in range(100))
        )
        stamps += [(a["channel"], a["ts"]) for a in answers]
    fake.clear_calls()

    per_minute = 480  # 8 a second (a step of 1/8 s is one token, exactly), burst 3
    notifier = Notifier(make_client(fake.api_url, session), updates_per_minute=per_minute, clock=clock)
    await notifier.start()
    waiters = [asyncio.create_task(notifier.update(ch, ts, f"{ts} running")) for ch, ts in stamps]
    await asyncio.sleep(0)
    assert notifier.pending() >= 990
    rate, steps = per_minute / 60, 16
    for step in range(steps + 1):  # the burst of 3, then exactly one more per step of the clock
        await fake.wait_until(lambda n=3 + step: len(fake.calls_to("chat.update")) == n, what=f"{3 + step} updates")
        if step < steps:
            clock.advance(1 / rate)
    await notifier.aclose(drain_timeout=0)
    results = await asyncio.gather(*waiters)

    calls = fake.calls_to("chat.update")
    assert len(calls) == 3 + steps
    # Scaled-down Tier 3 check on the notifier's own clock: in no window W more than burst + rate * W.
    assert max_in_window(calls, 1.0) <= 3 + rate * 1.0
    assert max_in_window(calls, 2.0) <= 3 + rate * 2.0
    # Fair: first asked, first served, each message once.
    sent = [(c.body["channel"], c.body["ts"]) for c in calls]
    assert sent == stamps[: len(sent)]
    landed = sum(results)
    assert landed == len(calls)
    assert fake.message(*stamps[0]).text == f"{stamps[0][1]} running"
    # Closing without time to drain gives the rest a clear False and counts them.
    assert notifier.stats()["dropped"] == 1000 - landed
    assert notifier.pending() == 0


# -- chat.postEphemeral, chat.getPermalink ----------------------------------------------------------------------------


async def test_ephemeral_lands_and_reports_errors(fake: FakeSlack, session: aiohttp.ClientSession) -> None:
    async with running(fake, session) as notifier:
        assert await notifier.ephemeral("C1", "U01REQ0001", "only you", section("only you")) is True
        assert await notifier.ephemeral("C1", "not-a-user", "nobody") is False
    assert [m.text for m in fake.ephemerals("C1")] == ["only you"]
    assert fake.ephemerals("C1")[0].ephemeral_user == "U01REQ0001"
    assert len(fake.calls_to("chat.postEphemeral")) == 2


async def test_permalink_is_cached_and_shared(fake: FakeSlack, session: aiohttp.ClientSession) -> None:
    async with running(fake, session) as notifier:
        ts = await notifier.post("C1", "status")
        assert ts is not None
        links = await asyncio.gather(*(notifier.permalink("C1", ts) for _ in range(5)))
        again = await notifier.permalink("C1", ts)
        missing = await notifier.permalink("C1", "1718000000.999999")
    assert links[0] is not None and links[0].startswith("https://") and "C1" in links[0]
    assert set(links) == {again}
    assert missing is None
    assert len(fake.calls_to("chat.getPermalink")) == 2


# -- lifecycle --------------------------------------------------------------------------------------------------------


async def test_aclose_drains_queued_work(fake: FakeSlack, session: aiohttp.ClientSession) -> None:
    notifier = Notifier(
        make_client(fake.api_url, session), posts_per_second_per_channel=10, post_burst=1, updates_per_minute=600
    )
    # Asked for before start(): it waits, then goes out when aclose drains.
    posts = [asyncio.create_task(notifier.post("C1", f"p{i}")) for i in range(5)]
    await asyncio.sleep(0)
    assert notifier.pending() == 5
    assert fake.calls == []
    await notifier.aclose(drain_timeout=5)
    assert all(p.done() and p.result() for p in posts)
    assert [m.text for m in fake.messages("C1")] == [f"p{i}" for i in range(5)]
    assert notifier.pending() == 0 and notifier.stats()["dropped"] == 0
    with pytest.raises(RuntimeError, match="closed"):
        await notifier.post("C1", "too late")


async def test_aclose_gives_up_on_what_cannot_drain_in_time(
    fake: FakeSlack, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    # On a stopped clock the last three posts can never get a token: only the drain deadline can end aclose.
    notifier = Notifier(make_client(fake.api_url, session), posts_per_second_per_channel=1, post_burst=1, clock=clock)
    await notifier.start()
    posts = [asyncio.create_task(notifier.post("C1", f"p{i}")) for i in range(4)]
    await fake.wait_for("chat.postMessage")
    await asyncio.wait_for(notifier.aclose(drain_timeout=0.2), timeout=5)
    results = await asyncio.gather(*posts)
    assert results[0] is not None and results[1:] == [None, None, None]
    assert notifier.stats()["dropped"] == 3
    assert len(fake.messages("C1")) == 1


def test_bad_settings_are_refused_with_a_clear_message() -> None:
    client = AsyncWebClient(token="xoxb-test")
    with pytest.raises(ValueError, match="updates_per_minute must be a positive number"):
        Notifier(client, updates_per_minute=0)
    with pytest.raises(ValueError, match="max_attempts"):
        Notifier(client, max_attempts=0)
