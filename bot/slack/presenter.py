"""Makes Slack show what the store knows about a request: the approval card, the status message, thread replies,
the notify channels.

`sync()` is idempotent per state: the request's `notified_state` records the last state whose messages landed, so
after a crash the bot posts what people have not yet seen, and a second call posts nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bot.domain.request import ChangeRequest, RequestState
from bot.slack import views
from bot.slack.notifier import Notifier
from bot.store import Store

log = logging.getLogger(__name__)

EXECUTION_STATES = frozenset(
    {
        RequestState.APPROVED,
        RequestState.STOPPING,
        RequestState.SUBMITTING,
        RequestState.RUNNING,
        RequestState.RECONCILING,
        RequestState.SUCCEEDED,
        RequestState.FAILED,
    }
)
ENDED = frozenset({RequestState.SUCCEEDED, RequestState.FAILED})


class Presenter:
    def __init__(self, notifier: Notifier, store: Store, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._notifier = notifier
        self._store = store
        self._now = now
        self._locks: dict[str, asyncio.Lock] = {}

    async def post_approval_card(self, request: ChangeRequest, checks=()) -> ChangeRequest:
        text, blocks = views.approval_card(request, checks)
        ts = await self._notifier.post(request.approvals_channel, text, blocks)
        if ts is None:
            return request
        return self._store.update(request.id, approval_ts=ts)

    async def refresh_card(self, request: ChangeRequest) -> None:
        if request.approval_ts:
            text, blocks = views.approval_card(request)
            await self._notifier.update(request.approvals_channel, request.approval_ts, text, blocks)

    async def sync(self, request_id: str) -> ChangeRequest | None:
        """Bring Slack up to date with the request as stored now; safe to call any number of times."""
        lock = self._locks.setdefault(request_id, asyncio.Lock())
        async with lock:
            request = self._store.get(request_id)
            if request is None:
                return None
            request = await self._sync(request)
        if request.is_terminal and request.notified_state is request.state:
            self._locks.pop(request_id, None)
        return request

    async def _sync(self, request: ChangeRequest) -> ChangeRequest:
        seen = request.notified_state
        state = request.state
        channel = request.approvals_channel
        thread = request.approval_ts
        if state is not seen:
            await self.refresh_card(request)
        if state in EXECUTION_STATES and thread:
            text, blocks = views.status_message(request, self._now())
            if request.status_ts is None:
                ts = await self._notifier.post(channel, text, blocks, thread_ts=thread)
                if ts is not None:
                    request = self._store.update(request.id, status_channel=channel, status_ts=ts)
                    await self._announce_start(request)
            else:
                await self._notifier.update(channel, request.status_ts, text, blocks)
        if state is seen:
            return request
        if thread and (seen is not None or state is not RequestState.PENDING_APPROVAL):
            await self._notifier.post(channel, views.transition_reply(request, seen), thread_ts=thread)
        if state in ENDED:
            await self._announce_end(request)
        return self._store.update(request.id, notified_state=state)

    async def _announce_start(self, request: ChangeRequest) -> None:
        link = await self._link(request)
        text = views.notify_start(request, link)
        for channel in self._audience(request):
            await self._notifier.post(channel, text)

    async def _announce_end(self, request: ChangeRequest) -> None:
        link = await self._link(request)
        text = views.notify_end(request, link)
        for channel in self._audience(request):
            await self._notifier.post(channel, text)

    def _audience(self, request: ChangeRequest) -> list[str]:
        """The command's channel (linked to the thread) and every notify channel, each once."""
        channels = [request.origin_channel, *request.notify_channels]
        return [c for c in dict.fromkeys(channels) if c and c != request.approvals_channel]

    async def _link(self, request: ChangeRequest) -> str | None:
        if not request.approval_ts:
            return None
        return await self._notifier.permalink(request.approvals_channel, request.approval_ts)

    async def progress(self, request: ChangeRequest) -> None:
        """Edit the status message in place (no thread reply): progress within a state."""
        if request.status_ts and request.status_channel:
            text, blocks = views.status_message(request, self._now())
            await self._notifier.update(request.status_channel, request.status_ts, text, blocks)
