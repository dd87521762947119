"""Single changes' end posts, per channel, paced by the Coalescer (bot/slack/coalesce.py): one post a second per
channel, and when several wait, one digest carries them all. 1,000 changes ending together reach a channel in a
few digests instead of 1,000 posts queued behind Slack's 1 per second."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from bot.slack.coalesce import Coalescer, EndPost, Post, Tiers
from bot.slack.notifier import Notifier


class EndDigests:
    def __init__(self, notifier: Notifier, *, post_interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self._notifier = notifier
        self._coalescer = Coalescer(Tiers(post_interval=post_interval))
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[Any]] = set()
        self._waiting: dict[str, deque[asyncio.Future[str | None]]] = {}
        self.digests = 0  # posts that carried more than one end

    async def post(self, channel: str, text: str) -> str | None:
        """`text` goes as it is when it is alone in its channel's queue, else as one line of a digest; the ts of the
        message that carried it, once it landed (so the caller records "told" only then)."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(channel, deque()).append(future)
        self._coalescer.post(EndPost(channel, text, text.replace("\n", " ")))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return await future

    async def _run(self) -> None:
        while True:
            for call in self._coalescer.due(self._clock()):
                if isinstance(call, Post):
                    self.digests += call.count > 1
                    queue = self._waiting[call.channel]
                    carried = [queue.popleft() for _ in range(call.count)]
                    task = asyncio.ensure_future(self._send(call, carried))
                    self._sends.add(task)
                    task.add_done_callback(self._sends.discard)
            due = self._coalescer.next_at(self._clock())
            if due is None:
                return
            await asyncio.sleep(max(0.0, due - self._clock()))

    async def _send(self, call: Post, carried: list[asyncio.Future[str | None]]) -> None:
        try:
            ts = await self._notifier.post(call.channel, call.text, list(call.blocks) or None)
        except Exception:
            ts = None
        for future in carried:
            if not future.done():
                future.set_result(ts)

    async def aclose(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._sends, return_exceptions=True)
