"""Many single changes ending at once: each channel gets its first end post as it is and the rest as one digest,
over the real notifier and the fake Slack, and every caller hears which message carried its line."""

from __future__ import annotations

import asyncio

from bot.slack.client import web_client
from bot.slack.digests import EndDigests
from bot.slack.notifier import Notifier
from sandbox.devtools.fake_slack import FakeSlack


async def test_a_burst_of_end_posts_becomes_one_digest_per_channel() -> None:
    async with FakeSlack() as slack:
        notifier = Notifier(web_client(slack.bot_token, slack.api_url + "/"), posts_per_second_per_channel=100.0)
        await notifier.start()
        digests = EndDigests(notifier, post_interval=0.2)
        texts = [f"✅ *CR-{i:06d}*: *web-{i:03d}* now runs *ubuntu-22.04*." for i in range(60)]
        sent = await asyncio.gather(
            *(digests.post("C01CHAN001", t) for t in texts), digests.post("C01INCIDNT1", texts[0])
        )
        await notifier.aclose()
    assert all(sent)
    channel = slack.messages("C01CHAN001")
    assert len(channel) == 1 and "60 changes ended" in channel[0].text  # one post instead of 60 at 1/s
    assert all(t in str(channel[0].blocks) for t in texts)
    assert [m.text for m in slack.messages("C01INCIDNT1")] == [texts[0]]  # alone in its channel: as it is
    assert set(sent[:60]) == {channel[0].ts} and digests.digests == 1
