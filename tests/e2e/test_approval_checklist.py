"""Approvers see the plan's checklist on the card, and keep seeing it after every re-render of the card."""

from __future__ import annotations

import json

import pytest

from bot.domain.request import RequestState
from bot.slack import views
from sandbox.devtools.stack import APPROVER, LocalStack

from .conftest import submit_plan, wait_state

pytestmark = pytest.mark.timeout(40)


def checklist_text(stack: LocalStack, channel: str, ts: str) -> str:
    blocks = stack.slack.message(channel, ts).blocks
    return json.dumps([b for b in blocks if b.get("block_id") == views.CHECKS_BLOCK])


async def test_the_card_keeps_its_checklist_through_approval(stack: LocalStack) -> None:
    request = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason checklist")
    assert request.approval_ts is not None
    posted = checklist_text(stack, request.approvals_channel, request.approval_ts)
    assert "Server is stopped" in posted and "Key pair login" in posted
    assert [line.split("\t")[1] for line in request.checklist][:1] == ["Server is stopped"]
    await stack.click(views.APPROVE_ACTION, request.id, user=APPROVER)
    await wait_state(stack, request.id, RequestState.SUCCEEDED)
    updates = stack.slack.calls_to("chat.update")
    edited_card = [c for c in updates if c.body.get("ts") == request.approval_ts]
    assert edited_card, "the card was re-rendered after the decision"
    assert checklist_text(stack, request.approvals_channel, request.approval_ts) == posted


async def test_a_submission_from_outside_the_policy_looks_nothing_up(stack: LocalStack) -> None:
    from sandbox.devtools.stack import OUTSIDER

    from .conftest import open_plan

    view = await open_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason outsider")
    meta = json.loads(view["private_metadata"])
    forged = {**view, "private_metadata": json.dumps({**meta, "u": OUTSIDER})}  # as if the form were theirs
    before = len(stack.sim.requests)
    reply = await stack.submit(forged, user=OUTSIDER)
    assert reply.status_code == 200 and reply.json()["response_action"] == "errors"
    assert "not named in the bot's policy" in json.dumps(reply.json()["errors"])
    assert len(stack.sim.requests) == before
