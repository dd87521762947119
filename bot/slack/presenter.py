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
        RequestState.BACKING_UP,
        RequestState.SUBMITTING,
        RequestState.RUNNING,
        RequestState.RECONCILING,
        RequestState.SUCCEEDED,
        RequestState.FAILED,
    }
)
ENDED = frozenset({RequestState.SUCCEEDED, RequestState.FAILED})
_ORDER = (
    RequestState.PENDING_APPROVAL,
    RequestState.APPROVED,
    RequestState.STOPPING,
    RequestState.BACKING_UP,
    RequestState.SUBMITTING,
    RequestState.RECONCILING,
    RequestState.RUNNING,
)


def _rank(state: RequestState) -> int:
    """States in the order a request passes them; every end ranks last, so nothing is told twice."""
    return _ORDER.index(state) if state in _ORDER else len(_ORDER)


class Presenter:
    def __init__(self, notifier: Notifier, store: Store, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._notifier = notifier
        self._store = store
        self._now = now
        self._locks: dict[str, asyncio.Lock] = {}

    async def post_approval_card(self, request: ChangeRequest) -> ChangeRequest:
        text, blocks = views.approval_card(request)
        ts = await self._notifier.post(request.approvals_channel, text, blocks)
        if ts is None:
            return request
        return await self._store.update(request.id, approval_ts=ts)

    async def refresh_card(self, request: ChangeRequest) -> None:
        if request.approval_ts:
            text, blocks = views.approval_card(request)
            await self._notifier.update(request.approvals_channel, request.approval_ts, text, blocks)

    async def sync(self, request_id: str, moved: ChangeRequest | None = None) -> ChangeRequest | None:
        """Bring Slack up to date; safe to call any number of times.

        `moved` is the request as it was right after a transition: its thread reply is told from that snapshot, so
        fast transitions are each told, in order (the per-request lock is FIFO), even when the store has moved on.
        """
        lock = self._locks.setdefault(request_id, asyncio.Lock())
        async with lock:
            current = await self._store.get(request_id)
            if current is None:
                return None
            current = await self._sync(current, moved or current)
        if current.is_terminal and current.notified_state is current.state:
            self._locks.pop(request_id, None)
        return current

    async def _sync(self, current: ChangeRequest, moved: ChangeRequest) -> ChangeRequest:
        seen = current.notified_state
        fresh = seen is None or _rank(moved.state) > _rank(seen)
        channel = current.approvals_channel
        thread = current.approval_ts
        # Edits share one workspace-wide budget: start them, but let the thread reply and end posts (per-channel
        # budgets) go out meanwhile instead of queueing behind every other request's edits.
        edits: list[asyncio.Future[object]] = []
        if fresh:
            edits.append(asyncio.ensure_future(self.refresh_card(current)))
        if current.state in EXECUTION_STATES and thread:
            text, blocks = views.status_message(current, self._now())
            if current.status_ts is None:
                ts = await self._notifier.post(channel, text, blocks, thread_ts=thread)
                if ts is not None:
                    current = await self._store.update(current.id, status_channel=channel, status_ts=ts)
                    await self._announce_start(current)
            else:
                edits.append(asyncio.ensure_future(self._notifier.update(channel, current.status_ts, text, blocks)))
        if fresh:
            if thread and (seen is not None or moved.state is not RequestState.PENDING_APPROVAL):
                await self._notifier.post(channel, views.transition_reply(moved), thread_ts=thread)
            if moved.state in ENDED:
                await self._announce_end(current)
                if current.rollback_of:
                    await self._tell_rolled_back(current)
        await asyncio.gather(*edits)
        if not fresh:
            return current
        return await self._store.update(current.id, notified_state=moved.state)

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

    async def link_rollback(self, rollback: ChangeRequest) -> None:
        """A rollback was requested: both threads say so, each naming the other request."""
        original = await self._store.get(rollback.rollback_of) if rollback.rollback_of else None
        if original is None:
            return
        image = rollback.target_image_name or rollback.target_image_id
        await self._thread_note(original, f"↩️ Rollback requested by <@{rollback.requester}>: {rollback.id} takes "
                                f"{views.escape(original.server_name)} back to {views.escape(image)}.")
        await self._thread_note(rollback, f"↩️ This rolls back {original.id} (the change to "
                                f"{views.escape(original.target_image_name)}) to its backup {views.escape(image)}.")

    async def _tell_rolled_back(self, rollback: ChangeRequest) -> None:
        original = await self._store.get(rollback.rollback_of) if rollback.rollback_of else None
        if original is not None:
            await self._thread_note(original, f"↩️ Rollback {rollback.id}: {views.transition_reply(rollback)}")

    async def _thread_note(self, request: ChangeRequest, mrkdwn: str) -> None:
        if request.approval_ts:
            await self._notifier.post(request.approvals_channel, mrkdwn, None, thread_ts=request.approval_ts)

    async def backup_gone(self, request: ChangeRequest) -> None:
        """Retention deleted the request's backup: its final message loses the Roll back button."""
        if request.status_ts and request.status_channel:
            text, blocks = views.status_message(request, self._now(), backup_exists=False)
            await self._notifier.update(request.status_channel, request.status_ts, text, blocks)

    async def note(self, request: ChangeRequest, text: str) -> None:
        """A thread reply that is not a transition (e.g. the job record expired and the server is followed)."""
        if request.approval_ts:
            thread = request.approval_ts
            await self._notifier.post(request.approvals_channel, views.escape(text), None, thread_ts=thread)
        await self.progress(request)

    async def progress(self, request: ChangeRequest) -> None:
        """Edit the status message in place (no thread reply): progress within a state."""
        if request.status_ts and request.status_channel:
            text, blocks = views.status_message(request, self._now())
            await self._notifier.update(request.status_channel, request.status_ts, text, blocks)
