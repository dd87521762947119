"""Follow-ups to a slash command go to the command's `response_url`: an ephemeral answer that needs no channel
membership (chat.postEphemeral needs the bot in the channel, which a private channel or a DM does not give).

Slack lets a response_url be used 5 times within 30 minutes of the command. Past that, or when Slack refuses the
post (expired_url, used_url), or when no response_url is known (a form submitted to another process), the answer
falls back to chat.postEphemeral through the notifier.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.slack.client import counted_handlers
from bot.slack.notifier import Notifier

log = logging.getLogger(__name__)

USES = 5
LIFETIME_SECONDS = 30 * 60 - 60  # a minute kept in hand: Slack's clock started when the person pressed enter
REMEMBERED = 10_000  # response_urls whose uses are counted (about 200 bytes each)


@dataclass(frozen=True)
class ReplyTo:
    """Where a command's follow-ups go: its response_url while it lasts, else the person in the channel."""

    channel: str
    user: str
    response_url: str = ""
    issued_at: float = field(default_factory=time.monotonic)

    @classmethod
    def of_command(cls, body: Mapping[str, Any]) -> ReplyTo:
        url = body.get("response_url")
        return cls(
            channel=str(body.get("channel_id") or ""),
            user=str(body.get("user_id") or ""),
            response_url=url if isinstance(url, str) and url.startswith(("https://", "http://")) else "",
        )


class Replies:
    """Sends a command's follow-ups; counts each response_url's uses (and forgets the oldest past REMEMBERED)."""

    def __init__(self, notifier: Notifier, *, clock: Callable[[], float] = time.monotonic, timeout: int = 5) -> None:
        self._notifier = notifier
        self._clock = clock
        self._timeout = timeout
        self._uses: OrderedDict[str, int] = OrderedDict()

    async def send(self, to: ReplyTo, text: str) -> bool:
        """True when the person will see `text`."""
        if self._usable(to) and await self._post(to.response_url, text):
            return True
        if not to.channel or not to.user:
            return False
        return await self._notifier.ephemeral(to.channel, to.user, text)

    def _usable(self, to: ReplyTo) -> bool:
        if not to.response_url or self._clock() - to.issued_at > LIFETIME_SECONDS:
            return False
        return self._uses.get(to.response_url, 0) < USES

    async def _post(self, url: str, text: str) -> bool:
        self._uses[url] = self._uses.get(url, 0) + 1  # a post that fails may still have been counted by Slack
        self._uses.move_to_end(url)
        while len(self._uses) > REMEMBERED:
            self._uses.popitem(last=False)
        client = AsyncWebhookClient(url, timeout=self._timeout, retry_handlers=counted_handlers("response_url"))
        try:
            response = await client.send(text=text, response_type="ephemeral")
        except (aiohttp.ClientError, OSError) as exc:
            log.info("response_url post failed (%s); answering with chat.postEphemeral", type(exc).__name__)
            return False
        if response.status_code != 200:
            self._uses[url] = USES  # expired_url, used_url, ...: Slack will not take more
            log.info("response_url refused (%s); answering with chat.postEphemeral", str(response.body)[:40])
            return False
        return True
