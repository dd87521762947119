"""Fleets in the store, on both engines: a rollout is one document saved only over the version read, with its audit
lines; a fleet's child request is found again by its key, so a repeated start never makes a second one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.domain.fleet import Audit, FleetApproval, FleetSpec, new_rollout
from bot.domain.request import RequestState as S
from bot.store import ServerBusyError

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def a_rollout():
    step = new_rollout(
        requester="U01REQ0001",
        channel="C01APPROVE1",
        image_id="img-2",
        image_name="ubuntu-24.04",
        waves=[[("srv-1", "web-01")], [("srv-2", "web-02"), ("srv-3", "web-03")]],
        approval=FleetApproval(1, (("U01APR0001",),), ("web",)),
        now=NOW,
        spec=FleetSpec(keyname="ops-key", reason="patching"),
    )
    return step.rollout


async def test_a_rollout_is_saved_only_over_the_version_it_was_read_at(store):
    rollout = a_rollout()
    await store.create_rollout(rollout, [Audit("U01REQ0001", "requested", "3 servers")])
    read = await store.get_rollout(rollout.id)
    assert read == rollout and read.spec.keyname == "ops-key"

    first = read.model_copy(update={"version": read.version + 1, "wave": 1})
    assert await store.save_rollout(first, expected_version=read.version, audit=[Audit("U01APR0001", "approved")])
    stale = read.model_copy(update={"version": read.version + 1, "selector": "lost"})
    assert not await store.save_rollout(stale, expected_version=read.version, audit=[Audit("x", "lost")])

    again = await store.get_rollout(rollout.id)
    assert again.wave == 1 and again.selector == ""
    await store.record_rollout(rollout.id, [Audit("U01OUT0001", "refused", "not an approver")])
    actions = [(e.actor, e.action) for e in await store.rollout_audit(rollout.id)]
    assert actions == [("U01REQ0001", "requested"), ("U01APR0001", "approved"), ("U01OUT0001", "refused")]
    assert await store.get_rollout("FL-NONE00") is None


async def test_unfinished_rollouts_are_those_not_ended(store):
    running, ended = a_rollout(), a_rollout()
    await store.create_rollout(running)
    await store.create_rollout(ended)
    done = ended.model_copy(update={"version": ended.version + 1, "ended_at": NOW})
    assert await store.save_rollout(done, expected_version=ended.version)
    assert [r.id for r in await store.unfinished_rollouts()] == [running.id]


async def test_a_child_request_is_made_once_per_key(store, new_request):
    key = "FL-ABCDEF:srv-1"
    child = new_request(state=S.APPROVED, fleet_key=key, approvals_required=1)
    made, created = await store.create_child(child, actor="bot")
    assert created and made.fleet_key == key and made.state is S.APPROVED
    again, created = await store.create_child(new_request(state=S.APPROVED, fleet_key=key), actor="bot")
    assert not created and again.id == made.id
    assert (await store.child(key)).id == made.id
    assert await store.child("FL-ABCDEF:srv-2") is None


async def test_one_live_change_per_server_holds_across_fleets_and_single_changes(store, new_request):
    single = await store.create(new_request(), actor="u")
    with pytest.raises(ServerBusyError) as busy:
        await store.create_child(new_request(state=S.APPROVED, fleet_key="FL-ABCDEF:srv-1"), actor="bot")
    assert busy.value.live_request_id == single.id
    assert await store.child("FL-ABCDEF:srv-1") is None
