"""A command's follow-ups: its response_url (5 uses, 30 minutes) first, chat.postEphemeral after, against the fake."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.notifier import Notifier
from bot.slack.replies import LIFETIME_SECONDS, Replies, ReplyTo
from sandbox.devtools.fake_slack import FakeSlack

CHANNEL, USER = "C01PRIV001", "U01REQ0001"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_follow_ups_use_the_response_url_then_fall_back_to_post_ephemeral() -> None:
    async with FakeSlack() as fake:
        notifier = Notifier(AsyncWebClient(token=fake.bot_token, base_url=fake.api_url))
        await notifier.start()
        clock = Clock()
        replies = Replies(notifier, clock=clock)
        url = fake.response_url("cmd", channel=CHANNEL, user_id=USER)
        to = ReplyTo(CHANNEL, USER, url, issued_at=clock.now)
        for i in range(6):
            assert await replies.send(to, f"note {i}")
        assert [r.body["text"] for r in fake.responses] == [f"note {i}" for i in range(5)]
        assert all(r.body["response_type"] == "ephemeral" for r in fake.responses)
        assert [c.body["text"] for c in fake.calls_to("chat.postEphemeral")] == ["note 5"]  # the sixth
        later = ReplyTo(CHANNEL, USER, fake.response_url("cmd-2", channel=CHANNEL, user_id=USER), issued_at=clock.now)
        clock.now += LIFETIME_SECONDS + 1
        assert await replies.send(later, "late")
        assert len(fake.responses) == 5 and fake.calls_to("chat.postEphemeral")[-1].body["text"] == "late"
        await notifier.aclose()


async def test_a_refused_response_url_is_not_tried_again() -> None:
    async with FakeSlack() as fake:
        notifier = Notifier(AsyncWebClient(token=fake.bot_token, base_url=fake.api_url))
        await notifier.start()
        replies = Replies(notifier)
        fake.fail_next("response_url", status=404, error="expired_url")
        to = ReplyTo(CHANNEL, USER, fake.response_url("cmd", channel=CHANNEL, user_id=USER))
        assert await replies.send(to, "one") and await replies.send(to, "two")
        assert len(fake.responses) == 1
        assert [c.body["text"] for c in fake.calls_to("chat.postEphemeral")] == ["one", "two"]
        await notifier.aclose()


def test_a_command_without_a_usable_response_url_has_none() -> None:
    assert ReplyTo.of_command({"channel_id": "C1", "user_id": "U1", "response_url": "javascript:x"}).response_url == ""
    assert ReplyTo.of_command({"channel_id": "C1", "user_id": "U1"}).response_url == ""
