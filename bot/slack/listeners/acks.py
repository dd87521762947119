"""Listener shapes over `AfterAck`: Slack gets its ack at once, and the work runs after the answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncAck
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.request import ChangeRequest
from bot.slack.after_ack import AfterAck
from bot.slack.presenter import Presenter

Work = Callable[[dict[str, Any], AsyncWebClient], Awaitable[None]]
Listener = Callable[[AsyncAck, dict[str, Any], AsyncWebClient], Awaitable[None]]


async def ack_only(ack: AsyncAck) -> None:
    await ack()


def ack_then(
    later: AfterAck, work: Work, *, on_failure: Callable[[dict[str, Any]], Awaitable[object]] | None = None
) -> Listener:
    """A listener that acks, then runs `work(body, client)` after the answer; `on_failure(body)` tells the person
    when the work raised (the failure itself is logged without the body)."""

    async def listener(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        later.start(
            partial(work, body, client),
            name=work.__name__,
            on_failure=None if on_failure is None else partial(on_failure, body),
        )

    return listener


def tell_moved(later: AfterAck, presenter: Presenter, request: ChangeRequest) -> None:
    """After the answer, bring Slack up to date with a request the ack function moved (cancelled, rejected)."""
    later.start(partial(presenter.sync, request.id, request), name=f"telling {request.id}")
