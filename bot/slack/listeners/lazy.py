"""Bolt's `lazy=` functions: Slack gets its ack at once, and the work runs after it, on the same event loop.

Bolt hands a lazy function a copy of the request and injects its arguments by name, so the function given to Bolt
declares exactly `body` and `client`. Its failure never reaches the app's error handler (Bolt would log `str(exc)`
itself), so it is logged here, without the body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.request import ChangeRequest
from bot.slack.presenter import Presenter

log = logging.getLogger(__name__)

Work = Callable[[dict[str, Any], AsyncWebClient], Awaitable[None]]

# Context keys an ack function sets for its lazy functions (Bolt copies the context into their request).
MOVED = "ecsbot_moved"  # the request right after the ack's transition: the presenter tells it from this snapshot


async def ack_only(ack: AsyncAck) -> None:
    await ack()


def after_ack(work: Work, *, on_failure: Callable[[dict[str, Any]], Awaitable[object]] | None = None) -> Work:
    """`work` as a lazy function; `on_failure` tells the person when something went wrong after their ack."""

    async def lazy(body: dict[str, Any], client: AsyncWebClient) -> None:
        try:
            await work(body, client)
        except Exception:
            log.exception("%s failed after the ack", work.__name__)  # the scrubber keeps secrets out
            if on_failure is not None:
                await on_failure(body)

    lazy.__name__ = lazy.__qualname__ = f"{work.__name__}_after_ack"  # Bolt tells lazy functions apart by name
    return lazy


def tell_moved(presenter: Presenter) -> Callable[..., Awaitable[None]]:
    """A lazy function that brings Slack up to date with the request the ack function moved, if it moved one."""

    async def tell_moved_after_ack(context: AsyncBoltContext) -> None:
        moved = context.get(MOVED)
        if not isinstance(moved, ChangeRequest):
            return
        try:
            await presenter.sync(moved.id, moved)
        except Exception:
            log.exception("telling %s failed after the ack", moved.id)

    return tell_moved_after_ack
