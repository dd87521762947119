"""Fleets end to end: the simulator, the fake Slack and signed requests over loopback, the real bot in between."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from bot.domain.fleet import FleetPhase, Rollout, ServerPhase
from bot.domain.request import RequestState
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.fake_slack import Message
from sandbox.devtools.stack import APPROVALS_CHANNEL, APPROVER, INCIDENT_CHANNEL, REQUESTER, LocalStack, StackOptions
from sandbox.simulator.faults import FaultSpec

pytestmark = pytest.mark.timeout(60)

TARGET = "ubuntu-22.04"
WEB_01 = "7a9f4d3b-0000-4f00-8000-000000000001"
FLEET = f"fleet web-* --image {TARGET} --key ops-key --waves 1,25%,rest --parallel 4 --reason monthly patching"


async def the_rollout(stack: LocalStack, *, phase: FleetPhase | None = None, timeout: float = 30.0) -> Rollout:
    async def found() -> Rollout | None:
        assert stack.rt is not None
        for r in await stack.rt.store.unfinished_rollouts():
            if r.message_ts and (phase is None or r.phase is phase):
                return r
        return None

    return await stack.slack.wait_until(found, timeout=timeout, what=f"a fleet message ({phase})")


async def ended(stack: LocalStack, rollout_id: str, timeout: float = 40.0) -> Rollout:
    async def done() -> Rollout | None:
        assert stack.rt is not None
        r = await stack.rt.store.get_rollout(rollout_id)
        return r if r is not None and r.finished else None

    return await stack.slack.wait_until(done, timeout=timeout, what=f"{rollout_id} ended")


async def request_fleet(stack: LocalStack, text: str) -> dict[str, Any]:
    response = await stack.command(text)
    assert response.status_code == 200, response.text
    return await stack.plan_view()


async def submit_fleet(stack: LocalStack, text: str = FLEET) -> Rollout:
    view = await request_fleet(stack, text)
    assert view["callback_id"] == "changeos_fleet_modal" and "submit" in view, view
    reply = await stack.submit(view)
    assert reply.status_code == 200 and reply.text == "", reply.text
    return await the_rollout(stack)


async def click(stack: LocalStack, action_id: str, rollout: Rollout, *, user: str = APPROVER):
    """Click a button as Slack would: only once the fleet message shows it (its edits are coalesced, so the store
    can be ahead of the message people see)."""
    assert stack.sender is not None and rollout.message_ts is not None

    def shown() -> Message | None:
        message = stack.slack.message(rollout.channel, rollout.message_ts)
        return message if f'"action_id": "{action_id}"' in json.dumps(message.as_payload()) else None

    message = await stack.slack.wait_until(shown, what=f"the {action_id} button on the fleet message")
    body = sr.block_actions(
        user_id=user,
        action_id=action_id,
        value=rollout.id,
        container="message",
        message=message.as_payload(),
        channel_id=rollout.channel,
        response_url=stack.slack.response_url(secrets.token_hex(6)),
    )
    response = await stack.sender.send(body)
    assert response.status_code == 200


def change_posts(stack: LocalStack) -> list[dict[str, Any]]:
    return [e for e in stack.sim.requests if e["route"] in ("change_os_v1", "change_os_v2") and e["status"] == 200]


@pytest.fixture
async def stack():
    async with LocalStack(StackOptions(speed=400.0)) as s:
        yield s


async def test_a_fleet_of_12_in_3_waves_succeeds_with_one_message_and_one_thread(stack: LocalStack) -> None:
    view = await request_fleet(stack, FLEET)
    text = str(view["blocks"])
    assert "12 resolved" in text and "1 → 3 → 8" in text
    assert (await stack.submit(view)).text == ""
    rollout = await the_rollout(stack)
    assert rollout.phase is FleetPhase.AWAITING_APPROVAL and [len(rollout.in_wave(w)) for w in range(3)] == [1, 3, 8]
    await click(stack, "fl_approve", rollout, user=REQUESTER)  # nobody approves their own fleet
    await stack.slack.wait_until(lambda: stack.slack.told(REQUESTER) or None, what="the refusal")
    await click(stack, "fl_approve", rollout)
    done = await ended(stack, rollout.id)

    assert done.phase is FleetPhase.DONE and done.counts()[ServerPhase.HEALTHY] == 12
    assert len(change_posts(stack)) == 12  # each server changed once
    assert stack.rt is not None
    children = [await stack.rt.store.child(f"{done.id}:{s.id}") for s in done.servers]
    assert all(c is not None and c.state is RequestState.SUCCEEDED for c in children)
    # One message in the approvals channel, edited in place; its thread holds only the end (and the full list).
    top = [m for m in stack.slack.messages(APPROVALS_CHANNEL) if m.thread_ts in (None, m.ts)]
    assert [m.ts for m in top] == [done.message_ts]
    thread = [m for m in stack.slack.thread(APPROVALS_CHANNEL, done.message_ts) if m.ts != done.message_ts]
    await stack.slack.wait_until(
        lambda: len(stack.slack.thread(APPROVALS_CHANNEL, done.message_ts)) >= 3 or None, what="the end replies"
    )
    thread = [m for m in stack.slack.thread(APPROVALS_CHANNEL, done.message_ts) if m.ts != done.message_ts]
    assert "approved" in thread[0].text and "12 changed, 0 failed" in thread[1].text, [m.text for m in thread]
    assert "every server" in thread[2].text
    # The notify channel hears the fleet twice: its start and its end.
    told = await stack.slack.wait_until(
        lambda: (lambda m: m if len(m) >= 2 else None)(stack.slack.messages(INCIDENT_CHANNEL)), what="start and end"
    )
    assert len(told) == 2 and "starts" in told[0].text and "12 of 12" in told[1].text
    audit = [e.action for e in await stack.rt.store.rollout_audit(done.id)]
    assert audit[0] == "requested" and "refused" in audit and "approved" in audit and audit[-1] == "done"


async def test_a_failure_in_wave_1_halts_until_resume(stack: LocalStack) -> None:
    stack.sim.faults.add(FaultSpec.model_validate({"fail_jobs": {"server_id": WEB_01, "fail_reason": "Disk trouble."}}))
    rollout = await submit_fleet(stack, FLEET.replace("--waves 1,25%,rest", "--waves 1,25%,rest --max-failures 1"))
    await click(stack, "fl_approve", rollout)
    halted = await the_rollout(stack, phase=FleetPhase.HALTED)
    assert [s.phase for s in halted.in_wave(0)] == [ServerPhase.FAILED]
    assert all(s.phase is ServerPhase.PENDING for s in halted.servers[1:])  # wave 2 never started
    assert len(change_posts(stack)) == 1 and "Disk trouble" in halted.servers[0].reason
    await click(stack, "fl_resume", halted)
    done = await ended(stack, rollout.id)
    assert done.phase is FleetPhase.DONE and done.failures == 1 and done.counts()[ServerPhase.HEALTHY] == 11


async def test_abort_lets_running_changes_finish_and_starts_none(stack: LocalStack) -> None:
    rollout = await submit_fleet(stack, FLEET.replace("--waves 1,25%,rest --parallel 4", "--waves 4,rest --parallel 2"))
    await click(stack, "fl_approve", rollout)

    async def running() -> Rollout | None:
        assert stack.rt is not None
        r = await stack.rt.store.get_rollout(rollout.id)
        return r if r is not None and r.counts()[ServerPhase.RUNNING] >= 1 else None

    await stack.slack.wait_until(running, what="a change running")
    await click(stack, "fl_abort", rollout)
    done = await ended(stack, rollout.id)
    assert done.phase is FleetPhase.ABORTED
    started = [s for s in done.servers if s.request_id]
    assert 1 <= len(started) <= 4 and all(s.phase is ServerPhase.HEALTHY for s in started)
    assert all(s.phase is ServerPhase.SKIPPED for s in done.servers if not s.request_id)
    assert len(change_posts(stack)) == len(started)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fleet --tag tier=front --image ubuntu-22.04 --reason r", "11 resolved"),
        ("fleet web-0[1-3] --image ubuntu-22.04 --reason r", "3 resolved"),
        ("fleet web-01 web-02 db-01 --image ubuntu-22.04 --reason r", "3 resolved"),
        ("fleet web-01 nosuch-9 --image ubuntu-22.04 --reason r", "1 left out"),
    ],
)
async def test_selectors(stack: LocalStack, text: str, expected: str) -> None:
    view = await request_fleet(stack, text)
    assert expected in str(view["blocks"]), view["blocks"]


async def test_an_empty_selector_says_so(stack: LocalStack) -> None:
    view = await request_fleet(stack, "fleet --tag role=nope --image ubuntu-22.04 --reason r")
    assert "No server matched servers tagged `role=nope`" in str(view["blocks"])
    assert not str(view.get("submit", "")).count("Request")


SPLIT_POLICY = f"""
approvals_channel = "{APPROVALS_CHANNEL}"
notify_channels = ["{INCIDENT_CHANNEL}"]

[[rules]]
name = "db"
servers = ["db-*"]
requesters = ["U01SOMEONE1"]
approvers = ["{APPROVER}"]
images = ["*"]

[[rules]]
name = "web"
servers = ["web-*"]
requesters = ["{REQUESTER}"]
approvers = ["{APPROVER}"]
images = ["*"]
"""


async def test_a_server_the_requester_may_not_change_is_left_out_of_the_plan() -> None:
    async with LocalStack(StackOptions(policy=SPLIT_POLICY)) as stack:
        view = await request_fleet(stack, "fleet web-01 web-02 db-01 --image ubuntu-22.04 --key ops-key --reason r")
        text = str(view["blocks"])
        assert "2 resolved" in text and "1 left out" in text and "db-01" in text
        assert "Request 2 changes" in str(view["submit"])
        assert (await stack.submit(view)).text == ""
        rollout = await the_rollout(stack)
        assert [s.name for s in rollout.servers] == ["web-01", "web-02"]
        assert [lo.name for lo in rollout.left_out] == ["db-01"]


async def test_pause_waits_for_continue_between_waves(stack: LocalStack) -> None:
    rollout = await submit_fleet(
        stack, "fleet web-0[1-4] --image ubuntu-22.04 --key ops-key --waves 1,rest --pause --reason r"
    )
    await click(stack, "fl_approve", rollout)
    waiting = await the_rollout(stack, phase=FleetPhase.WAITING)
    assert [s.phase for s in waiting.in_wave(0)] == [ServerPhase.HEALTHY]
    assert all(s.phase is ServerPhase.PENDING for s in waiting.in_wave(1))  # wave 2 waits for a person
    assert len(change_posts(stack)) == 1
    await click(stack, "fl_continue", waiting, user=REQUESTER)  # the requester may not wave their own fleet on
    await stack.slack.wait_until(lambda: stack.slack.told(REQUESTER) or None, what="the refusal")
    assert stack.rt is not None
    still = await stack.rt.store.get_rollout(rollout.id)
    assert still is not None and still.phase is FleetPhase.WAITING
    await click(stack, "fl_continue", waiting)
    done = await ended(stack, rollout.id)
    assert done.phase is FleetPhase.DONE and done.counts()[ServerPhase.HEALTHY] == 4
    audit = [(e.actor, e.action) for e in await stack.rt.store.rollout_audit(done.id)]
    assert ("bot", "waiting") in audit and (APPROVER, "continue") in audit and audit[-1] == ("bot", "done"), audit
    assert audit.index(("bot", "waiting")) < audit.index((APPROVER, "continue"))


BACKUP_POLICY = f"""
approvals_channel = "{APPROVALS_CHANNEL}"
notify_channels = ["{INCIDENT_CHANNEL}"]

[[rules]]
name = "backed up"
servers = ["*"]
requesters = ["{REQUESTER}"]
approvers = ["{APPROVER}"]
images = ["ubuntu-*"]
backup = "required"
"""


async def test_roll_back_failed_returns_the_failed_server_to_its_backup() -> None:
    async with LocalStack(StackOptions(speed=400.0, policy=BACKUP_POLICY)) as stack:
        before = stack.sim.state.servers[WEB_01].image_id
        stack.sim.faults.add(
            FaultSpec.model_validate({"fail_jobs": {"server_id": WEB_01, "fail_reason": "Disk trouble."}})
        )
        rollout = await submit_fleet(
            stack, "fleet web-0[1-3] --image ubuntu-22.04 --key ops-key --waves 1,rest --reason r"
        )
        await click(stack, "fl_approve", rollout)
        halted = await the_rollout(stack, phase=FleetPhase.HALTED)
        failed = halted.servers[0]
        assert failed.id == WEB_01 and failed.phase is ServerPhase.FAILED and failed.backup_image_id is not None
        await click(stack, "fl_rollback", halted)

        async def rolled_back() -> Rollout | None:
            assert stack.rt is not None
            r = await stack.rt.store.get_rollout(rollout.id)
            return r if r is not None and r.servers[0].phase is ServerPhase.ROLLED_BACK else None

        back = await stack.slack.wait_until(rolled_back, timeout=30, what="web-01 rolled back")
        assert stack.sim.state.servers[WEB_01].image_id == failed.backup_image_id != before
        assert all(s.phase is ServerPhase.PENDING for s in back.servers[1:])  # still halted: nothing else started
        assert stack.rt is not None
        child = await stack.rt.store.child(f"{rollout.id}:{WEB_01}:rollback")
        assert child is not None and child.state is RequestState.SUCCEEDED and child.rollback_of == failed.request_id
        audit = [(e.actor, e.action) for e in await stack.rt.store.rollout_audit(rollout.id)]
        assert (APPROVER, "rollback") in audit, audit
