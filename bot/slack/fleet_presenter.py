"""What people see of a fleet: one message, edited in place, and its thread for failures and the end.

The message is the approval card while the fleet waits for approval and the status message after
(bot/slack/fleet_views.py). Its edits go through the notifier, which keeps only the newest render of a message
while an edit waits for the Tier 3 budget, so a fleet of 500 servers changing state costs a few edits a minute.
The notify channels hear the fleet twice: at its start and at its end, never once per server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot.domain.fleet import FleetPhase, Rollout, ThreadReply
from bot.slack.fleet_views import (
    PHASE_LABEL,
    fleet_approval_card,
    fleet_reply,
    fleet_server_lines,
    fleet_status_message,
    server_list_messages,
)
from bot.slack.notifier import Notifier
from bot.slack.views import escape

log = logging.getLogger(__name__)


def render(r: Rollout, now: datetime) -> tuple[str, list[dict[str, Any]]]:
    if r.phase is FleetPhase.AWAITING_APPROVAL:
        return fleet_approval_card(r)
    return fleet_status_message(r, now)


class FleetMessages:
    """Implements services.fleet.FleetPresenter over the notifier."""

    def __init__(self, notifier: Notifier, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._notifier = notifier
        self._now = now
        self._edits: set[asyncio.Task[bool]] = set()

    async def show(self, rollout: Rollout) -> str | None:
        text, blocks = render(rollout, self._now())
        return await self._notifier.post(rollout.channel, text, blocks)

    def status(self, rollout: Rollout) -> None:
        if rollout.message_ts is None:
            return
        text, blocks = render(rollout, self._now())
        task = asyncio.ensure_future(self._notifier.update(rollout.channel, rollout.message_ts, text, blocks))
        self._edits.add(task)  # the notifier answers once it landed; nobody waits for that
        task.add_done_callback(self._edits.discard)

    async def reply(self, rollout: Rollout, reply: ThreadReply) -> None:
        if rollout.message_ts is None:
            return
        channel, thread = rollout.channel, rollout.message_ts
        await self._notifier.post(channel, fleet_reply(rollout, reply), thread_ts=thread)
        if reply.kind == "end":
            for text, blocks in server_list_messages(f"{rollout.id}: every server", fleet_server_lines(rollout)):
                await self._notifier.post(channel, text, blocks, thread_ts=thread)

    async def notify(self, rollout: Rollout, kind: str) -> None:
        link = await self._notifier.permalink(rollout.channel, rollout.message_ts) if rollout.message_ts else None
        where = f" (<{link}|details>)" if link else ""
        image = escape(rollout.image_name or rollout.image_id)
        if kind == "start":
            text = (
                f"🔄 Fleet {rollout.id} starts: {len(rollout.servers)} servers to {image} in {rollout.wave_count} "
                f"waves, by <@{rollout.requester}>{where}."
            )
        else:
            counts = rollout.counts()
            done = sum(n for phase, n in counts.items() if phase.value == "healthy")
            text = (
                f"{PHASE_LABEL[rollout.phase]} fleet {rollout.id}: {done} of {len(rollout.servers)} servers on "
                f"{image}, {rollout.failures} failed{where}."
            )
        channels = [rollout.origin_channel, *(rollout.spec.notify if rollout.spec else ())]
        for channel in dict.fromkeys(c for c in channels if c and c != rollout.channel):
            await self._notifier.post(channel, text)

    async def refuse(self, rollout: Rollout, user_id: str, message: str) -> None:
        await self._notifier.ephemeral(rollout.channel, user_id, f"⛔ {escape(message)}")
