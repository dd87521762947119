"""Slack user-group membership, for policies that name groups (S…) instead of people.

Memberships are cached briefly: a click must be answered in well under 3 s, and a group changes rarely. A group
that cannot be read counts as empty, so an outage of usergroups.users.list can only deny, never allow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)


class Directory:
    def __init__(
        self,
        client: AsyncWebClient,
        group_ids: Iterable[str],
        *,
        ttl: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._groups = sorted(set(group_ids))
        self._ttl = ttl
        self._clock = clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    async def groups_of(self, user_id: str) -> set[str]:
        if not self._groups:
            return set()
        members = await asyncio.gather(*(self._members_of(group) for group in self._groups))
        return {group for group, users in zip(self._groups, members, strict=True) if user_id in users}

    async def _members_of(self, group: str) -> frozenset[str]:
        cached = self._members.get(group)
        if cached and self._clock() - cached[0] < self._ttl:
            return cached[1]
        try:
            response = await self._client.usergroups_users_list(usergroup=group)
            users = frozenset(response.get("users") or [])
        except SlackApiError as exc:
            log.warning("cannot read user group %s: %s", group, exc.response.get("error"))
            return cached[1] if cached else frozenset()
        self._members[group] = (self._clock(), users)
        return users
