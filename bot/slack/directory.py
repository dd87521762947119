"""Slack user-group membership, for policies that name groups (S…) instead of people.

Memberships are cached briefly: a click must be answered in well under 3 s, and a group changes rarely. A group
that cannot be read counts as empty, so an outage of usergroups.users.list can only deny, never allow. The failure
is remembered for a short while too: a policy naming a group the bot may not read would otherwise cost a Slack call
(and its CPU) on every request. Lookups of one group that overlap share one call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

NOBODY: frozenset[str] = frozenset()


class Directory:
    def __init__(
        self,
        client: AsyncWebClient,
        group_ids: Iterable[str],
        *,
        ttl: float = 120.0,
        failure_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl > 0 or not failure_ttl > 0:
            raise ValueError(f"Directory: ttl and failure_ttl must be positive seconds, got {ttl!r}, {failure_ttl!r}")
        self._client = client
        self._groups = sorted(set(group_ids))
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._clock = clock
        # group -> (until when the answer holds, members); a failure is stored as NOBODY with the shorter TTL
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._lookups: dict[str, asyncio.Task[frozenset[str]]] = {}

    async def groups_of(self, user_id: str) -> set[str]:
        if not self._groups:
            return set()
        members = await asyncio.gather(*(self._members_of(group) for group in self._groups))
        return {group for group, users in zip(self._groups, members, strict=True) if user_id in users}

    async def _members_of(self, group: str) -> frozenset[str]:
        cached = self._members.get(group)
        if cached is not None and self._clock() < cached[0]:
            return cached[1]
        task = self._lookups.get(group)
        if task is None:
            task = self._lookups[group] = asyncio.create_task(self._look_up(group))
            task.add_done_callback(lambda _: self._lookups.pop(group, None))
        return await asyncio.shield(task)  # one caller giving up does not cancel the others' lookup

    async def _look_up(self, group: str) -> frozenset[str]:
        try:
            response = await self._client.usergroups_users_list(usergroup=group)
            users = frozenset(response.get("users") or [])
        except SlackApiError as exc:
            # Never the previous answer: an expired membership must not outlive a group Slack will not show us.
            log.warning(
                "cannot read user group %s: %s (counted as empty for %g s)",
                group,
                exc.response.get("error"),
                self._failure_ttl,
            )
            self._members[group] = (self._clock() + self._failure_ttl, NOBODY)
            return NOBODY
        self._members[group] = (self._clock() + self._ttl, users)
        return users
