"""The work that follows an ack: it starts once Slack has its answer, and once the requests around it have theirs.

Slack waits at most 3 s for an ack; the modal, the lookups and the posts that follow one may take seconds more. On
one event loop they compete: asyncio runs ready tasks in turn, so every step of earlier work that is ready when a
request arrives runs before that request's ack. A burst of commands (an incident: everyone types at once) would see
its later acks wait behind the earlier commands' lookups.

So listeners hand their follow-up work here, and the edge says when requests arrive and are answered. Queued work
starts in a lull: no request in flight and none for `quiet` seconds, and never later than `longest` seconds after it
was queued (a steady stream of requests still gets its modals well inside the 3 s a trigger id lasts). 50 ms of quiet:
the gaps inside a burst of 50 simultaneous commands reached 5-10 ms on loopback (bench/ack.py), and no person notices
a form that opens 50 ms later.

Bolt's own `lazy=` functions do the same job for functions-as-a-service: to hand each one a request it can carry to
another process, Bolt deep-copies the request and its context before answering (~110 µs per function, more than its
whole dispatch). A long-running server needs no copy, so the work here is a closure over the body it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator

log = logging.getLogger(__name__)

Later = Callable[[], Awaitable[object]]


class AfterAck:
    """Starts follow-up work in the first lull after it is queued; logs its failures (never the payload)."""

    def __init__(
        self, *, quiet: float = 0.05, longest: float = 0.25, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._quiet = quiet
        self._longest = longest
        self._clock = clock
        self._in_flight = 0
        self._last = -quiet  # the last arrival or answer
        self._queue: deque[tuple[float, str, Later, Later | None]] = deque()
        self._starter: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks
        self._closed = False

    # ---------------------------------------------------------------------- the edge's side

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Around one Slack request, from its arrival to its answer."""
        self._in_flight += 1
        self._last = self._clock()
        try:
            yield
        finally:
            self._in_flight -= 1
            self._last = self._clock()

    # ---------------------------------------------------------------------- the listeners' side

    def start(self, work: Later, *, name: str, on_failure: Later | None = None) -> None:
        """Run `work()` in the next lull; if it raises, log `name` and run `on_failure()` (to tell the person)."""
        if self._closed:
            log.warning("%s was not started: the bot is shutting down", name)
            return
        self._queue.append((self._clock(), name, work, on_failure))
        if self._starter is None:
            self._starter = asyncio.get_running_loop().create_task(self._start_queued(), name="after-ack")

    @property
    def pending(self) -> int:
        """Work queued or running."""
        return len(self._queue) + len(self._running)

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 -- a bound on shutdown, not a deadline
        """At shutdown: queued work starts now, running work gets `timeout` seconds to end, then is cancelled."""
        self._closed = True
        self._longest = 0.0
        if self._starter is not None:
            await self._starter
        if not self._running:
            return
        _done, late = await asyncio.wait(set(self._running), timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            log.warning("cancelled %d pieces of after-ack work at shutdown", len(late))
            await asyncio.gather(*late, return_exceptions=True)

    # ---------------------------------------------------------------------- inside

    def _lull_in(self, queued_at: float) -> float:
        """Seconds until the lull (0: now), for work queued at `queued_at`."""
        now = self._clock()
        overdue = queued_at + self._longest - now
        if overdue <= 0:
            return 0.0
        quiet = self._quiet if self._in_flight else self._last + self._quiet - now
        return max(0.0, min(quiet, overdue))

    async def _start_queued(self) -> None:
        try:
            while self._queue:
                wait = self._lull_in(self._queue[0][0])
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                while self._queue:
                    _queued, name, work, on_failure = self._queue.popleft()
                    task = asyncio.get_running_loop().create_task(self._run(name, work, on_failure), name=name)
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
        finally:
            self._starter = None

    @staticmethod
    async def _run(name: str, work: Later, on_failure: Later | None) -> None:
        try:
            await work()
        except Exception:
            log.exception("%s failed after the ack", name)  # the log scrubber keeps secrets out
            if on_failure is not None:
                try:
                    await on_failure()
                except Exception:
                    log.exception("telling the person that %s failed did not work either", name)
