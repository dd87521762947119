"""A canary password through the whole flow: it reaches the cloud and appears nowhere else."""

from __future__ import annotations

import hashlib
import logging
import sqlite3

import pytest

from bot.devtools import slack_requests as sr
from bot.devtools.stack import APPROVER, LocalStack
from bot.domain.request import RequestState
from bot.slack import views
from tests.e2e.conftest import modal_action, open_plan, wait_state

CANARY = "Canary-Pw-7391!x"


def password_blocks(view: dict) -> tuple[str, str]:
    ids = [b["block_id"] for b in view["blocks"] if b.get("type") == "input"]
    first = next(i for i in ids if i.startswith(views.PASSWORD_BLOCK_PREFIX + ":"))
    second = next(i for i in ids if i.startswith(views.PASSWORD_CONFIRM_PREFIX + ":"))
    return first, second


def database_bytes(stack: LocalStack) -> bytes:
    path = stack.rt.settings.db_path
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


async def test_canary_password_reaches_the_cloud_and_nothing_else(stack: LocalStack, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    view = await open_plan(stack, "db-01 ubuntu-22.04 --reason canary run")
    view = await modal_action(stack, view, views.LOGIN_ACTION, "password")
    first, second = password_blocks(view)

    # A mismatch is refused, and the rebuilt view has new, empty password inputs.
    mismatch = await stack.submit(view, {first: sr.text_value(CANARY), second: sr.text_value(CANARY + "x")})
    answer = mismatch.json()
    assert answer["response_action"] == "update"
    assert "differ" in str(answer["view"]["blocks"])
    assert CANARY not in mismatch.text
    new_first, new_second = password_blocks(answer["view"])
    assert (new_first, new_second) != (first, second), "new block ids clear what was typed"

    stored_view = dict(view, blocks=answer["view"]["blocks"])
    ok = await stack.submit(stored_view, {new_first: sr.text_value(CANARY), new_second: sr.text_value(CANARY)})
    assert ok.status_code == 200 and ok.text == "", ok.text
    request = await stack.slack.wait_until(
        lambda: next((r for r in stack.rt.store.live() if r.approval_ts), None), what="the approval card"
    )
    assert request.has_password
    card = stack.slack.message(request.approvals_channel, request.approval_ts)
    assert "set ✓" in str(card.blocks)

    await stack.click(views.APPROVE_ACTION, request.id, user=APPROVER)
    final = await wait_state(stack, request.id, RequestState.SUCCEEDED, RequestState.FAILED)
    assert final.state is RequestState.SUCCEEDED, final.result

    # It reached the cloud: the simulator accepted exactly this password for the server.
    server = stack.sim.state.servers[final.server_id]
    assert server.login_password_sha256 == hashlib.sha256(CANARY.encode()).hexdigest()

    # And nowhere else: not in logs, not in the database after the change, not in Slack traffic (except the
    # modal's own two submissions, which Slack sends to the bot, not the other way round), not in any reprs.
    assert CANARY not in caplog.text
    assert stack.rt.workflow.password_for(final.id) is None, "deleted once submitted"
    assert CANARY.encode() not in database_bytes(stack)
    assert CANARY.encode() not in stack.slack.raw_traffic()
    assert CANARY not in repr(stack.rt.store.get(final.id))
    for event in stack.rt.store.audit(final.id):
        assert CANARY not in event.detail


@pytest.mark.parametrize("weak", ["short1!", "alllowercaseletters"])
async def test_weak_password_is_refused_and_cleared(stack: LocalStack, weak: str) -> None:
    view = await open_plan(stack, "db-01 ubuntu-22.04 --reason weak")
    view = await modal_action(stack, view, views.LOGIN_ACTION, "password")
    first, second = password_blocks(view)
    reply = (await stack.submit(view, {first: sr.text_value(weak), second: sr.text_value(weak)})).json()
    assert reply["response_action"] == "update"
    assert weak not in str(reply)
    assert not stack.rt.store.live()


async def test_without_secret_key_password_logins_are_refused_but_keys_work() -> None:
    from bot.devtools.stack import StackOptions

    async with LocalStack(StackOptions(secret_key=False)) as stack:
        view = await open_plan(stack, "db-01 ubuntu-22.04 --reason nokey")
        rebuilt = await modal_action(stack, view, views.LOGIN_ACTION, "password")
        assert "ECSBOT_SECRET_KEY" in str(rebuilt["blocks"])
        reply = (await stack.submit(rebuilt)).json()
        assert reply["response_action"] == "errors"
        assert "ECSBOT_SECRET_KEY" in str(reply["errors"]) or "off" in str(reply["errors"])


async def test_secure_page_path_sets_the_password_outside_slack(caplog) -> None:
    import httpx

    from bot.devtools.stack import StackOptions

    caplog.set_level(logging.DEBUG)
    async with LocalStack(StackOptions(public_url=True)) as stack:
        view = await open_plan(stack, "db-01 ubuntu-22.04 --reason secure page")
        view = await modal_action(stack, view, views.LOGIN_ACTION, "password")
        link_block = next(b for b in view["blocks"] if b.get("block_id") == views.PASSWORD_LINK_BLOCK)
        link = link_block["accessory"]["url"]
        assert link.startswith(stack.url + "/password#"), link
        fragment = dict(part.split("=", 1) for part in link.split("#", 1)[1].split("&"))
        updates = len(stack.slack.calls_to("views.update"))
        async with httpx.AsyncClient(base_url=stack.url, headers={"X-Requested-With": "ecsbot"}) as http:
            answer = await http.post(
                "/password/api/set",
                json={"u": fragment["u"], "t": fragment["t"], "password": CANARY, "confirm": CANARY},
            )
            assert answer.status_code == 200, answer.text
            again = await http.post(
                "/password/api/set",
                json={"u": fragment["u"], "t": fragment["t"], "password": CANARY, "confirm": CANARY},
            )
            assert again.status_code == 410
        refreshed = await stack.slack.wait_until(
            lambda: stack.slack.calls_to("views.update")[updates:] or None, what="the modal refreshed"
        )
        shown = stack.slack.views[refreshed[-1].body["view_id"]]
        assert "Password set" in str(shown["blocks"])
        reply = await stack.submit(shown)
        assert reply.text == "", reply.text
        request = await stack.slack.wait_until(
            lambda: next((r for r in stack.rt.store.live() if r.approval_ts), None), what="the approval card"
        )
        await stack.click(views.APPROVE_ACTION, request.id, user=APPROVER)
        final = await wait_state(stack, request.id, RequestState.SUCCEEDED, RequestState.FAILED)
        assert final.state is RequestState.SUCCEEDED, final.result
        server = stack.sim.state.servers[final.server_id]
        assert server.login_password_sha256 == hashlib.sha256(CANARY.encode()).hexdigest()
        assert CANARY not in caplog.text
        assert CANARY.encode() not in stack.slack.raw_traffic()
        assert CANARY.encode() not in database_bytes(stack)
