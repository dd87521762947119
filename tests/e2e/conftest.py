"""Shared drivers for end-to-end tests: a LocalStack per test and small waits on what people would see."""

from __future__ import annotations

from typing import Any

import pytest

from bot.domain.request import ChangeRequest, RequestState
from bot.slack import views
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.stack import APPROVER, REQUESTER, LocalStack


@pytest.fixture
async def stack():
    async with LocalStack() as s:
        yield s


async def wait_state(stack: LocalStack, request_id: str, *states: RequestState, timeout: float = 20.0) -> ChangeRequest:
    async def done() -> ChangeRequest | None:
        request = await stack.rt.store.get(request_id)
        return request if request is not None and request.state in states else None

    return await stack.slack.wait_until(done, timeout=timeout, what=f"{request_id} in {[s.value for s in states]}")


async def carded(stack: LocalStack) -> ChangeRequest | None:
    """The live request whose approval card is posted, once it is."""
    return next((r for r in await stack.rt.store.live() if r.approval_ts), None)


async def open_plan(stack: LocalStack, text: str, *, user: str = REQUESTER) -> dict[str, Any]:
    response = await stack.command(text, user=user)
    assert response.status_code == 200, response.text
    return await stack.plan_view()


async def submit_plan(stack: LocalStack, text: str) -> ChangeRequest:
    view = await open_plan(stack, text)
    reply = await stack.submit(view)
    assert reply.status_code == 200
    assert reply.text == "", reply.text  # the modal closed: no errors
    return await stack.slack.wait_until(
        lambda: carded(stack), what="the approval card"
    )


async def modal_action(stack: LocalStack, view: dict[str, Any], action_id: str, value: str) -> dict[str, Any]:
    """Change one dispatching input in the modal, as a person would, and return the rebuilt view."""
    before = len(stack.slack.calls_to("views.update"))
    block = next(b for b in view["blocks"] if (b.get("element") or {}).get("action_id") == action_id)
    kind = block["element"]["type"]
    chosen = sr.radio_value(value) if kind == "radio_buttons" else sr.select_value(value, kind=kind)
    state = sr.state_from_view(view, {block["block_id"]: chosen})  # Slack sends the whole current state
    body = sr.block_actions(
        user_id=REQUESTER, action_id=action_id, container="view", view=view, value=value, state_values=state
    )
    response = await stack.sender.send(body)
    assert response.status_code == 200
    call = await stack.slack.wait_until(
        lambda: stack.slack.calls_to("views.update")[before:] or None, what=f"the view rebuilt after {action_id}"
    )
    return stack.slack.views[call[0].body["view_id"]]


async def approve_through_slack(stack: LocalStack, text: str) -> ChangeRequest:
    """Command, plan, submit and one approval click, as people do it; the request as carded."""
    assert stack.rt is not None
    await stack.command(text)
    view = await stack.plan_view()
    reply = await stack.submit(view)
    assert reply.status_code == 200 and reply.text == "", reply.text
    request = await stack.slack.wait_until(lambda: carded(stack), what="the approval card")
    await stack.click(views.APPROVE_ACTION, request.id, user=APPROVER)
    return request
