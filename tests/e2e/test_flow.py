"""The whole flow over loopback: a signed slash command, the plan card, approval, stop, change OS, tracking."""

from __future__ import annotations

from bot.domain.request import RequestState
from bot.slack import views
from sandbox.devtools.stack import (
    APPROVALS_CHANNEL,
    APPROVER,
    INCIDENT_CHANNEL,
    LocalStack,
)
from tests.e2e.conftest import submit_plan, wait_state

WEB_01 = "web-01"


async def test_keypair_change_from_command_to_success(stack: LocalStack) -> None:
    request = await submit_plan(stack, f"{WEB_01} ubuntu-22.04 --key ops-key --reason 'kernel CVE'")
    request_id = request.id
    assert request.state is RequestState.PENDING_APPROVAL
    assert request.stop_first is True and request.keyname == "ops-key"
    card = stack.slack.message(APPROVALS_CHANNEL, request.approval_ts)
    assert request.fingerprint() in str(card.blocks)

    await stack.click(views.APPROVE_ACTION, request_id, user=APPROVER)
    final = await wait_state(stack, request_id, RequestState.SUCCEEDED, RequestState.FAILED)
    assert final.state is RequestState.SUCCEEDED, final.result

    server = stack.sim.state.servers[final.server_id]
    assert server.image_id == final.target_image_id
    posts = [r for r in stack.sim.requests if r["route"] in ("change_os", "change_os_v1", "change_os_v2")]
    assert len(posts) == 1

    def ended():
        texts = [m.text for m in stack.slack.messages(INCIDENT_CHANNEL)]
        return any("now runs" in t for t in texts) or None

    await stack.slack.wait_until(ended, timeout=10, what="the end posted in the incident channel")
    thread = stack.slack.thread(APPROVALS_CHANNEL, request.approval_ts)
    assert any("Succeeded" in m.text for m in thread), [m.text for m in thread]
    assert not stack.slack.errors()
