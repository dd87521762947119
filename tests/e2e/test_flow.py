"""The whole flow over loopback: a signed slash command, the plan card, approval, stop, change OS, tracking."""

from __future__ import annotations

import pytest

from bot.devtools.stack import (
    APPROVALS_CHANNEL,
    APPROVER,
    INCIDENT_CHANNEL,
    LocalStack,
)
from bot.domain.request import RequestState
from bot.slack import views

WEB_01 = "web-01"


@pytest.fixture
async def stack():
    async with LocalStack() as s:
        yield s


async def wait_state(stack: LocalStack, request_id: str, *states: RequestState, timeout: float = 20.0):
    def done():
        request = stack.rt.store.get(request_id)
        return request if request is not None and request.state in states else None

    return await stack.slack.wait_until(done, timeout=timeout, what=f"{request_id} in {states}")


async def submit_plan(stack: LocalStack, text: str) -> str:
    response = await stack.command(text)
    assert response.status_code == 200
    view = await stack.plan_view()
    reply = await stack.submit(view)
    assert reply.status_code == 200
    assert reply.text == "", reply.text  # the modal closed: no errors
    request = next(iter(stack.rt.store.live()))
    return request.id


async def test_keypair_change_from_command_to_success(stack: LocalStack) -> None:
    request_id = await submit_plan(stack, f"{WEB_01} ubuntu-22.04 --key ops-key --reason 'kernel CVE'")
    request = stack.rt.store.get(request_id)
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
