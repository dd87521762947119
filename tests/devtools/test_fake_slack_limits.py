"""Rate limits and injected faults, waiting on calls with a deadline, and response_url posts."""

import asyncio
import time

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from sandbox.devtools.fake_slack import FakeSlack
from tests.support.clocks import SecondsClock as ManualClock


async def test_injected_429_carries_retry_after(client: AsyncWebClient, fake: FakeSlack) -> None:
    fake.fail_next("chat.update", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as exc:
        await client.chat_update(channel="C01CHAN001", ts="1718000000.000100", text="x")
    assert exc.value.response.status_code == 429
    assert exc.value.response.headers["Retry-After"] == "7"
    assert exc.value.response["error"] == "ratelimited"
    call = fake.calls_to("chat.update")[0]
    assert (call.status, call.error, call.injected) == (429, "ratelimited", True)
    assert fake.errors() == []  # injected on purpose: not the bot's fault


async def test_rate_limit_retry_handler_recovers(fake: FakeSlack) -> None:
    client = AsyncWebClient(
        token=fake.bot_token,
        base_url=fake.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    fake.fail_next("chat.postMessage", status=429, retry_after=0, count=2)
    resp = await client.chat_postMessage(channel="C01CHAN001", text="eventually")
    assert resp["ok"] is True
    assert [c.status for c in fake.calls_to("chat.postMessage")] == [429, 429, 200]
    assert len(fake.messages()) == 1


async def test_injected_server_error_and_ok_false(client: AsyncWebClient, fake: FakeSlack) -> None:
    fake.fail_next("views.open", status=200, error="expired_trigger_id")
    with pytest.raises(SlackApiError) as exc:
        await client.views_open(trigger_id="1.2.ab", view={"type": "modal"})
    assert exc.value.response["error"] == "expired_trigger_id"
    fake.fail_next("auth.test", status=503)
    with pytest.raises(SlackApiError) as server:
        await client.auth_test()
    assert server.value.response.status_code == 503
    assert (await client.auth_test())["ok"] is True


async def test_token_bucket_limits_sustained_rate_and_refills() -> None:
    clock = ManualClock()
    async with FakeSlack(clock=clock) as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        fake.set_rate_limit("chat.update", per_minute=60, burst=2)
        posted = await client.chat_postMessage(channel="C01CHAN001", text="status")
        for _ in range(2):
            await client.chat_update(channel="C01CHAN001", ts=posted["ts"], text="tick")
        with pytest.raises(SlackApiError) as exc:
            await client.chat_update(channel="C01CHAN001", ts=posted["ts"], text="tick")
        assert exc.value.response.status_code == 429
        assert exc.value.response.headers["Retry-After"] == "1"
        assert fake.errors()[-1].error == "ratelimited"
        clock.now += 1.0
        assert (await client.chat_update(channel="C01CHAN001", ts=posted["ts"], text="tock"))["ok"] is True
        assert fake.message("C01CHAN001", posted["ts"]).text == "tock"


async def test_default_tiers_limit_post_message_per_channel() -> None:
    clock = ManualClock()
    async with FakeSlack(rate_limits=True, clock=clock) as fake:
        client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        for _ in range(3):  # a short burst is allowed
            await client.chat_postMessage(channel="C01CHAN001", text="burst")
        with pytest.raises(SlackApiError) as exc:
            await client.chat_postMessage(channel="C01CHAN001", text="one too many")
        assert exc.value.response.status_code == 429
        assert (await client.chat_postMessage(channel="C02OTHER01", text="other channel"))["ok"] is True
        clock.now += 1.0
        assert (await client.chat_postMessage(channel="C01CHAN001", text="a second later"))["ok"] is True


async def test_wait_for_returns_a_call_that_arrives_later(client: AsyncWebClient, fake: FakeSlack) -> None:
    started = time.monotonic()
    waiter = asyncio.create_task(
        fake.wait_for("chat.postMessage", predicate=lambda c: c.body.get("text") == "second", timeout=5.0)
    )
    await client.chat_postMessage(channel="C01CHAN001", text="first")
    await client.chat_postMessage(channel="C01CHAN001", text="second")
    call = await waiter
    assert call.body["text"] == "second"
    assert time.monotonic() - started < 2.5  # woken by the call itself, not by the 5 s deadline


async def test_wait_for_gives_up_at_the_deadline(client: AsyncWebClient, fake: FakeSlack) -> None:
    await client.auth_test()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"chat\.update.*last calls: auth\.test"):
        await fake.wait_for("chat.update", timeout=0.2)
    assert 0.15 < time.monotonic() - started < 2.0


async def test_response_url_posts_are_recorded_and_answered_ok(fake: FakeSlack) -> None:
    url = fake.response_url("cmd-1")
    assert url == f"{fake.url}/response/cmd-1"
    webhook = AsyncWebhookClient(url)
    resp = await webhook.send(text="Opening the change form…", response_type="ephemeral")
    assert (resp.status_code, resp.body) == (200, "ok")
    posted = await fake.wait_for_response("cmd-1")
    assert posted.body == {"text": "Opening the change form…", "response_type": "ephemeral"}
    assert fake.calls_to("response_url")[0].ok


async def test_response_url_refuses_bad_payloads_and_overuse(fake: FakeSlack) -> None:
    webhook = AsyncWebhookClient(fake.response_url("cmd-2"))
    bad = await webhook.send(text="x", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}}])
    assert (bad.status_code, bad.body) == (400, "invalid_blocks")
    assert fake.errors()[0].method == "response_url"
    for i in range(5):
        assert (await webhook.send(text=f"update {i}")).status_code == 200
    sixth = await webhook.send(text="one too many")
    assert (sixth.status_code, sixth.body) == (404, "used_url")


async def test_response_url_expires_thirty_minutes_after_the_command() -> None:
    clock = ManualClock()
    async with FakeSlack(clock=clock) as fake:
        webhook = AsyncWebhookClient(fake.response_url("cmd-3", channel="C01CHAN001", user_id="U01REQ0001"))
        clock.now += 30 * 60 - 1
        assert (await webhook.send(text="still in time")).status_code == 200
        clock.now += 2
        late = await webhook.send(text="too late")
        assert (late.status_code, late.body) == (404, "expired_url")
        assert [m.text for m in fake.ephemerals("C01CHAN001")] == ["still in time"]
        assert [(r.key, r.status) for r in fake.responses] == [("cmd-3", 200), ("cmd-3", 404)]


async def test_bound_response_url_replaces_the_original_message(client: AsyncWebClient, fake: FakeSlack) -> None:
    card = await client.chat_postMessage(channel="C01CHAN001", text="CR-17 waiting for approval")
    webhook = AsyncWebhookClient(fake.response_url("act-1", channel="C01CHAN001", message_ts=card["ts"]))
    await webhook.send(text="CR-17 approved by <@U01APR0001>", replace_original=True)
    message = fake.message("C01CHAN001", card["ts"])
    assert message.text == "CR-17 approved by <@U01APR0001>"
    assert [v.text for v in message.history] == ["CR-17 waiting for approval"]
    await webhook.send(text="posted for everyone", response_type="in_channel")
    assert [m.text for m in fake.messages("C01CHAN001")][-1] == "posted for everyone"
