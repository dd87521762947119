"""User-group lookups against the fake Slack over loopback: cached answers, remembered failures that only ever deny."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.directory import Directory
from sandbox.devtools.fake_slack import FakeSlack
from tests.support.clocks import SecondsClock as ManualClock

OPS, HIDDEN = "S01OPS0001", "S09HIDDEN9"
ALICE = "U01APR0001"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        server.set_usergroup(OPS, [ALICE])
        yield server


def directory(fake: FakeSlack, clock: ManualClock, groups: list[str]) -> Directory:
    client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url, retry_handlers=[])
    return Directory(client, groups, ttl=120.0, failure_ttl=30.0, clock=clock)


def lookups(fake: FakeSlack, group: str) -> int:
    return sum(1 for call in fake.calls_to("usergroups.users.list") if call.body.get("usergroup") == group)


async def test_a_group_slack_will_not_show_is_asked_once_per_failure_ttl_and_never_grants(fake: FakeSlack) -> None:
    clock = ManualClock()
    found = directory(fake, clock, [OPS, HIDDEN])
    for _ in range(20):
        assert await found.groups_of(ALICE) == {OPS}
    assert lookups(fake, HIDDEN) == 1 and lookups(fake, OPS) == 1
    clock.now += 29.9
    assert await found.groups_of(ALICE) == {OPS}
    assert lookups(fake, HIDDEN) == 1
    clock.now += 0.2  # the failure has aged out: Slack is asked again, and now it answers
    fake.set_usergroup(HIDDEN, [ALICE])
    assert await found.groups_of(ALICE) == {OPS, HIDDEN}
    assert lookups(fake, HIDDEN) == 2


async def test_a_failed_refresh_forgets_the_old_membership_instead_of_granting_it(fake: FakeSlack) -> None:
    clock = ManualClock()
    found = directory(fake, clock, [OPS])
    assert await found.groups_of(ALICE) == {OPS}
    clock.now += 121  # the membership expired; the refresh fails
    fake.fail_next("usergroups.users.list", status=200, error="missing_scope")
    assert await found.groups_of(ALICE) == set()
    assert await found.groups_of(ALICE) == set()  # remembered as empty, not asked again
    assert lookups(fake, OPS) == 2
    clock.now += 31
    assert await found.groups_of(ALICE) == {OPS}
    assert lookups(fake, OPS) == 3


async def test_a_burst_of_lookups_shares_one_call_per_group(fake: FakeSlack) -> None:
    found = directory(fake, ManualClock(), [OPS, HIDDEN])
    answers = await asyncio.gather(*(found.groups_of(ALICE) for _ in range(50)), found.groups_of("U09OTHER9"))
    assert answers == [{OPS}] * 50 + [set()]
    assert lookups(fake, OPS) == 1 and lookups(fake, HIDDEN) == 1


async def test_no_groups_in_the_policy_means_no_calls(fake: FakeSlack) -> None:
    assert await directory(fake, ManualClock(), []).groups_of(ALICE) == set()
    assert fake.calls_to("usergroups.users.list") == []


def test_bad_ttls_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="failure_ttl must be positive"):
        Directory(AsyncWebClient(token="xoxb-test"), [OPS], failure_ttl=0)
