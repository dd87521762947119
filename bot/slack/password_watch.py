"""Wakes the plan modal when its password link or stored password runs out, so no expiry is silent.

One timer per open draft, set for the nearest deadline the form shows (the link's end, the stored password's end).
When it fires the form is rebuilt: an expired password is deleted with every link of its draft, and the rebuilt form
says so and offers a fresh link. A submitted or closed draft is forgotten, so its form is never refreshed again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)

SLACK_MODAL_LIFETIME = timedelta(hours=24)  # a form still open after this is abandoned: stop refreshing it
_SLACK_GONE = frozenset({"not_found", "view_not_found", "not_allowed_token_type"})


class PasswordWatch:
    def __init__(
        self,
        refresh: Callable[[str], Awaitable[None]],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        grace: float = 0.5,
    ) -> None:
        self._refresh = refresh
        self._now = now
        self._grace = grace  # fire just after the deadline, so what it checks has really expired
        self._timers: dict[str, tuple[asyncio.Task[None], datetime]] = {}
        self._first_seen: dict[str, datetime] = {}
        self.password_deadline: dict[str, datetime] = {}  # draft id -> when its stored password expires
        self.notices: dict[str, str] = {}  # draft id -> why the form was rebuilt, shown once
        self.expired: dict[str, datetime] = {}  # draft id -> when its last password expired (for a later submit)

    def watch(self, draft_id: str, when: datetime) -> None:
        """Refresh the draft's form at `when` (a nearer deadline replaces a later one)."""
        first = self._first_seen.setdefault(draft_id, self._now())
        if self._now() - first > SLACK_MODAL_LIFETIME:
            self.forget(draft_id)
            return
        current = self._timers.get(draft_id)
        if current is not None and not current[0].done():
            if current[1] == when:
                return
            current[0].cancel()
        try:
            task = asyncio.get_running_loop().create_task(self._fire(draft_id, when))
        except RuntimeError:  # no loop (a synchronous caller): nothing to wake
            return
        self._timers[draft_id] = (task, when)

    async def _fire(self, draft_id: str, when: datetime) -> None:
        delay = max(0.0, (when - self._now()).total_seconds()) + self._grace
        await asyncio.sleep(delay)
        self._timers.pop(draft_id, None)  # the refresh schedules the next one; it must not cancel itself
        try:
            await self._refresh(draft_id)
        except Exception as exc:
            log.warning("could not refresh the form of draft %s at its deadline: %s", draft_id, type(exc).__name__)

    def forget(self, draft_id: str) -> None:
        timer = self._timers.pop(draft_id, None)
        if timer is not None and timer[0] is not asyncio.current_task():
            timer[0].cancel()
        self._first_seen.pop(draft_id, None)
        self.password_deadline.pop(draft_id, None)
        self.notices.pop(draft_id, None)
        self.expired.pop(draft_id, None)

    @staticmethod
    def slack_says_gone(error: str | None) -> bool:
        return error in _SLACK_GONE

    def close(self) -> None:
        for draft_id in list(self._timers):
            self.forget(draft_id)
