"""Restart safety of a fleet: the bot process is SIGKILLed while wave 2 runs, and started again.

The rollout must resume exactly: every server changed once (one change-OS POST each in the simulator's log), none
forgotten (every server ends healthy on the new image), one fleet message, and one end post per notify channel.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.domain.fleet import FleetPhase, Rollout, ServerPhase
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.stack import (
    APPROVALS_CHANNEL,
    APPROVER,
    INCIDENT_CHANNEL,
    REQUESTER,
    StackOptions,
)
from tests.e2e.test_restart import CHANGE_ROUTES, SPEED, TIMING, Rig, running_rig
from tests.support.waiting import until

pytestmark = pytest.mark.timeout(90)

FLEET = "fleet web-0[1-6] --image ubuntu-22.04 --key ops-key --waves 1,2,rest --parallel 3 --reason restart test"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running_rig(tmp_path, StackOptions(speed=SPEED, poll_interval=0.5, ecs_rate=50.0), TIMING) as rig:
        yield rig


async def rollout_where(rig: Rig, check, what: str, timeout: float = 30.0) -> Rollout:
    async def probe() -> Rollout | None:
        for r in await rig.store.unfinished_rollouts():
            if check(r):
                return r
        return None

    try:
        return await until(probe, timeout=timeout, what=what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{rig.bot.tail()}") from None


async def request_fleet(rig: Rig) -> Rollout:
    fake = rig.stack.slack
    body = sr.slash_command(FLEET, user_id=REQUESTER, response_url=fake.response_url(secrets.token_hex(6)))
    assert (await rig.sender.send(body)).status_code == 200
    call = await fake.wait_for("views.update", lambda c: c.ok, timeout=15)
    view = fake.views[call.body["view_id"]]
    assert view["callback_id"] == "changeos_fleet_modal" and "submit" in view, view
    reply = await rig.sender.send(sr.view_submission(user_id=REQUESTER, view=view, values=sr.state_from_view(view, {})))
    assert reply.status_code == 200 and reply.text == "", reply.text
    return await rollout_where(rig, lambda r: r.message_ts is not None, "the fleet message")


async def approve(rig: Rig, rollout: Rollout) -> None:
    assert rollout.message_ts is not None
    card = rig.stack.slack.message(rollout.channel, rollout.message_ts)
    body = sr.block_actions(
        user_id=APPROVER,
        action_id="fl_approve",
        value=rollout.id,
        container="message",
        message=card.as_payload(),
        channel_id=rollout.channel,
        response_url=rig.stack.slack.response_url(secrets.token_hex(6)),
    )
    assert (await rig.sender.send(body)).status_code == 200


def in_wave_2(r: Rollout) -> bool:
    return r.wave == 1 and any(s.phase is ServerPhase.RUNNING for s in r.in_wave(1))


async def test_kill_mid_wave_resumes_the_rollout_exactly(rig: Rig) -> None:
    rollout = await request_fleet(rig)
    assert [len(rollout.in_wave(w)) for w in range(3)] == [1, 2, 3]
    await approve(rig, rollout)
    mid = await rollout_where(rig, lambda r: r.id == rollout.id and in_wave_2(r), "wave 2 running", timeout=40)
    await rig.bot.kill()
    assert all(s.phase is ServerPhase.HEALTHY for s in mid.in_wave(0))
    assert all(s.phase is ServerPhase.PENDING for s in mid.in_wave(2))  # killed mid-wave: wave 3 not begun
    await rig.restart()

    async def finished() -> Rollout | None:
        r = await rig.store.get_rollout(rollout.id)
        return r if r is not None and r.finished else None

    try:
        done = await until(finished, timeout=60, what="the rollout ended")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{rig.bot.tail()}") from None
    assert done.phase is FleetPhase.DONE, done
    phases = [(s.name, s.phase, s.reason) for s in done.servers]
    assert all(s.phase is ServerPhase.HEALTHY for s in done.servers), phases
    for s in done.servers:  # none forgotten: each runs the new image
        assert rig.sim.state.servers[s.id].image_id == done.image_id
    posts = Counter(e["path"].split("/")[-2] for e in rig.sim.requests if e["route"] in CHANGE_ROUTES)
    assert posts == Counter({s.id: 1 for s in done.servers}), posts  # none changed twice

    fake = rig.stack.slack

    def ends() -> list[str]:
        return [m.text for m in fake.messages(INCIDENT_CHANNEL) if done.id in m.text and "starts" not in m.text]

    await until(ends, timeout=10, what="the end in the notify channel")
    top = [m for m in fake.messages(APPROVALS_CHANNEL) if m.thread_ts in (None, m.ts)]
    assert [m.ts for m in top] == [done.message_ts]  # one fleet message, before and after the kill
    starts = [m.text for m in fake.messages(INCIDENT_CHANNEL) if done.id in m.text and "starts" in m.text]
    assert len(starts) == 1 and len(ends()) == 1, fake.messages(INCIDENT_CHANNEL)
    assert "6 of 6" in ends()[0]
