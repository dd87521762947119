"""Backup before the change and one-click rollback, over loopback: the real bot, the simulator's IMS, fake Slack.

The rule's `images` patterns list only `ubuntu-*`: the rollback to the server's own backup (named `ecsbot-…`) must
still be allowed, because the image was made from that very server (its tags and IMS's `__data_origin` agree).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.domain.backup import image_tags
from bot.domain.request import ChangeRequest, RequestState
from bot.services.backups import Pruner
from bot.slack import views
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.stack import (
    APPROVALS_CHANNEL,
    APPROVER,
    GROUP_APPROVER,
    INCIDENT_CHANNEL,
    REQUESTER,
    LocalStack,
    StackOptions,
)
from tests.e2e.conftest import carded, modal_action, open_plan, submit_plan, wait_state
from tests.e2e.test_password_canary import CANARY, database_bytes, password_blocks
from tests.support.waiting import until

UBUNTU_20 = "2e9c6a51-2004-4b7e-9d3f-5a1b8c0d2004"  # what db-01 and web-01 run in the fixtures
CHANGE_ROUTES = ("change_os_v1", "change_os_v2")

POLICY = f"""
approvals_channel = "{APPROVALS_CHANNEL}"
notify_channels = ["{INCIDENT_CHANNEL}"]
request_expiry_minutes = 60
allow_password_in_modal = true

[[rules]]
name = "backed up"
servers = ["*"]
requesters = ["{REQUESTER}"]
approvers = ["{APPROVER}", "{GROUP_APPROVER}"]
approvals_required = 2
rollback_approvals_required = 1
images = ["ubuntu-*"]
backup = "required"
backup_keep_days = 7
backup_keep_count = 1
"""


@pytest.fixture
async def stack():
    async with LocalStack(StackOptions(policy=POLICY, speed=400.0)) as s:
        yield s


def posts(stack: LocalStack, *routes: str) -> list[dict[str, Any]]:
    return [r for r in stack.sim.requests if r["route"] in routes and r["method"] == "POST"]


async def sim(stack: LocalStack, path: str, payload: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=stack.sim.base_url) as client:
        response = await client.post(path, json=payload)
        assert response.status_code < 300, response.text


async def approve(stack: LocalStack, request: ChangeRequest) -> ChangeRequest:
    """Every approval the request needs (a change 2, a rollback 1 under this rule)."""
    for user in (APPROVER, GROUP_APPROVER)[: request.approvals_required]:
        await stack.click(views.APPROVE_ACTION, request.id, user=user)

        async def counted(who: str = user) -> bool | None:
            current = await stack.rt.store.get(request.id)
            return (
                current is not None and (who in current.approvals or current.state.value != "pending_approval")
            ) or None

        await stack.slack.wait_until(counted, what=f"{user}'s approval")
    return await wait_state(stack, request.id, RequestState.SUCCEEDED, RequestState.FAILED, timeout=30)


def rollback_buttons(stack: LocalStack, request: ChangeRequest) -> list[dict[str, Any]]:
    assert request.status_ts is not None
    message = stack.slack.message(APPROVALS_CHANNEL, request.status_ts)
    return [
        e
        for b in message.blocks or []
        if b.get("type") == "actions"
        for e in b["elements"]
        if e.get("action_id") == views.ROLLBACK_ACTION
    ]


async def synced(stack: LocalStack, request_id: str) -> ChangeRequest:
    async def done() -> ChangeRequest | None:
        r = await stack.rt.store.get(request_id)
        return r if r is not None and r.notified_state is r.state and r.status_ts else None

    return await stack.slack.wait_until(done, what=f"{request_id} told in Slack")


async def test_required_backup_then_change_then_one_roll_back_button(stack: LocalStack) -> None:
    request = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason 'kernel CVE'")
    assert request.backup_wanted and request.rollback_of is None
    card = stack.slack.message(APPROVALS_CHANNEL, request.approval_ts)
    assert "image of the system disk first" in str(card.blocks) and "Backup first" in str(card.blocks)
    policy = stack.rt.policy
    rule = policy.rule_for("db-01", request.server_id)
    assert policy.approvals_needed(rule) == 2

    final = await approve(stack, request)
    assert final.state is RequestState.SUCCEEDED, final.result
    assert len(posts(stack, "create_image")) == 1
    assert len([r for r in stack.sim.requests if r["route"] in CHANGE_ROUTES]) == 1
    backup = stack.sim.state.images[final.backup_image_id]
    assert backup.status == "active" and backup.name == final.backup_image_name
    assert f"ecsbot-request={request.id}" in backup.tags and backup.data_origin == f"instance,{final.server_id}"
    audit = [e.to_state for e in await stack.rt.store.audit(request.id) if e.to_state]
    assert audit.index(RequestState.BACKING_UP) < audit.index(RequestState.SUBMITTING)

    final = await synced(stack, request.id)
    buttons = rollback_buttons(stack, final)
    assert len(buttons) == 1 and buttons[0]["text"]["text"] == f"Roll back to {final.backup_image_name}"
    assert "backup" in str(stack.slack.message(APPROVALS_CHANNEL, final.status_ts).blocks)
    thread = [m.text for m in stack.slack.thread(APPROVALS_CHANNEL, final.approval_ts)]
    assert any("Backing up" in t for t in thread), thread
    assert not stack.slack.errors()


async def test_backup_failure_changes_nothing_and_starts_the_server_again(stack: LocalStack) -> None:
    request = await submit_plan(stack, "web-01 ubuntu-22.04 --key ops-key --reason 'backup fails'")
    assert request.stop_first and request.backup_wanted
    await sim(stack, "/_sim/faults", {"fail_image_jobs": {"server_id": request.server_id}})

    final = await approve(stack, request)
    assert final.state is RequestState.FAILED
    assert [r for r in stack.sim.requests if r["route"] in CHANGE_ROUTES] == []
    assert final.result and "Nothing was changed" in final.result and "started web-01 again" in final.result
    assert final.backup_image_id is None

    def started() -> bool:
        stack.sim.state.advance()  # the simulator applies due transitions when asked
        return stack.sim.state.servers[final.server_id].status == "ACTIVE"

    await until(started, timeout=10, what="web-01 running again")
    final = await synced(stack, request.id)
    assert rollback_buttons(stack, final) == []  # no backup, no way back to offer
    status = stack.slack.message(APPROVALS_CHANNEL, final.status_ts)
    assert "IMS failed the backup" in str(status.blocks)


async def test_rollback_round_trip_restores_the_original_os(stack: LocalStack) -> None:
    request = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason 'upgrade'")
    first = await synced(stack, (await approve(stack, request)).id)
    assert first.state is RequestState.SUCCEEDED
    server = stack.sim.state.servers[first.server_id]
    assert server.os_image_id != UBUNTU_20

    # The Roll back button, as a person clicks it on the final message.
    status = stack.slack.message(APPROVALS_CHANNEL, first.status_ts)
    before = len(stack.slack.calls_to("views.update"))
    body = sr.block_actions(
        user_id=REQUESTER,
        action_id=views.ROLLBACK_ACTION,
        value=first.id,
        container="message",
        message=status.as_payload(),
        channel_id=APPROVALS_CHANNEL,
        response_url=stack.slack.response_url(secrets.token_hex(6)),
    )
    assert (await stack.sender.send(body)).status_code == 200
    call = await stack.slack.wait_until(
        lambda: stack.slack.calls_to("views.update")[before:] or None, what="the rollback form"
    )
    view = stack.slack.views[call[0].body["view_id"]]
    text = str(view["blocks"])
    assert f"Rollback of {first.id}" in text and first.backup_image_name in text
    assert f"rollback of {first.id}" in text  # the reason, pre-filled
    assert "⛔" not in text, text  # allowed although `images` lists only ubuntu-*
    reply = await stack.submit(view)
    assert reply.status_code == 200 and reply.text == "", reply.text

    async def rollback() -> ChangeRequest | None:
        return next((r for r in await stack.rt.store.live() if r.rollback_of == first.id and r.approval_ts), None)

    second = await stack.slack.wait_until(rollback, what="the rollback's approval card")
    assert second.target_image_id == first.backup_image_id and second.approvals_required == 1  # the rollback rule
    final = await approve(stack, second)
    assert final.state is RequestState.SUCCEEDED, final.result
    assert stack.sim.state.servers[first.server_id].os_image_id == UBUNTU_20  # back on its original OS

    assert any(e.action == "rollback_requested" and second.id in e.detail for e in await stack.rt.store.audit(first.id))
    assert any(e.action == "rollback_of" and first.id in e.detail for e in await stack.rt.store.audit(second.id))

    def linked() -> bool | None:
        old = [m.text for m in stack.slack.thread(APPROVALS_CHANNEL, first.approval_ts)]
        new = [m.text for m in stack.slack.thread(APPROVALS_CHANNEL, second.approval_ts)]
        return (any(second.id in t for t in old) and any(first.id in t for t in new)) or None

    await stack.slack.wait_until(linked, what="both threads name the other request")


async def test_rollback_command_refuses_a_request_without_backup(stack: LocalStack) -> None:
    response = await stack.command("rollback CR-22222Z")
    assert response.status_code == 200

    def told() -> list[str] | None:
        return [m.text for m in stack.slack.ephemerals() if "no change request CR-22222Z" in m.text] or None

    await stack.slack.wait_until(told, what="the refusal")


async def test_quota_full_is_refused_before_approval(stack: LocalStack) -> None:
    await sim(stack, "/_sim/switches", {"image_quota": 0})
    view = await open_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason 'no room'")
    assert "Backup does not fit the image quota" in str(view["blocks"])
    reply = await stack.submit(view)
    errors = reply.json()["errors"]
    message = " ".join(errors.values())
    assert "quota is full" in message and "0 of 0 used" in message, errors
    assert await carded(stack) is None and posts(stack, "create_image") == []


async def test_retention_deletes_only_its_own_images_and_never_the_last_good_one(stack: LocalStack) -> None:
    store, cloud = stack.rt.store, stack.rt.cloud
    await sim(stack, "/_sim/switches", {"image_from_running": "allow"})
    done = await store.create(
        ChangeRequest(
            requester=REQUESTER,
            origin_channel="C1",
            server_id=_server(stack, "db-01"),
            server_name="db-01",
            target_image_id=UBUNTU_20,
            reason="old",
            keyname="ops-key",
            approvals_channel=APPROVALS_CHANNEL,
        ),
        actor=REQUESTER,
    )
    await store.transition(done.id, to=RequestState.CANCELLED, expected=RequestState.PENDING_APPROVAL, actor="t")
    failed = await store.create(
        ChangeRequest(
            requester=REQUESTER,
            origin_channel="C1",
            server_id=_server(stack, "web-01"),
            server_name="web-01",
            target_image_id=UBUNTU_20,
            reason="broke",
            keyname="ops-key",
            approvals_channel=APPROVALS_CHANNEL,
        ),
        actor=REQUESTER,
    )
    await store.transition(failed.id, to=RequestState.APPROVED, expected=RequestState.PENDING_APPROVAL, actor="t")
    await store.transition(failed.id, to=RequestState.FAILED, expected=RequestState.APPROVED, actor="t")

    async def backup(request: ChangeRequest, name: str, tags: dict[str, str]) -> str:
        await cloud.create_image(request.server_id, name, tags=tags)

        async def active() -> str | None:
            found = await cloud.find_images(name=name)
            return found[0].id if found and found[0].status == "active" else None

        return await until(active, timeout=10, what=f"image {name}")

    now = datetime.now(UTC)
    db_old = await backup(done, "ecsbot-db-01-a", image_tags(done.id, done.server_id, now))
    db_new = await backup(done, "ecsbot-db-01-b", image_tags(done.id, done.server_id, now))
    web_old = await backup(failed, "ecsbot-web-01-a", image_tags(failed.id, failed.server_id, now))
    web_last = await backup(failed, "ecsbot-web-01-b", image_tags(failed.id, failed.server_id, now))
    foreign = await backup(done, "ecsbot-db-01-foreign", {"ecsbot": "backup", "ecsbot-server": done.server_id})
    stranger = await backup(done, "ecsbot-db-01-x", image_tags("CR-XXXXXX", done.server_id, now))

    pruner = Pruner(store, cloud, stack.rt.policy, confirm_timeout=10)
    deleted = await pruner.prune(now + timedelta(days=30))  # every backup is past the 7 days
    assert {d.image_id for d in deleted} == {db_old, db_new, web_old}
    assert all(d.confirmed and d.error is None for d in deleted)
    for image_id in (web_last, foreign, stranger):
        assert image_id in stack.sim.state.images
    for image_id in (db_old, db_new, web_old):
        assert image_id not in stack.sim.state.images
    audit = [e for e in await store.audit(done.id) if e.action == "backup_deleted"]
    assert len(audit) == 2 and all("gone" in e.detail for e in audit)
    assert len([e for e in await store.audit(failed.id) if e.action == "backup_deleted"]) == 1
    assert len([r for r in stack.sim.requests if r["route"] == "delete_image"]) == 3
    assert await pruner.prune(now + timedelta(days=30)) == []  # nothing left to delete: web-01 keeps its last


def _server(stack: LocalStack, name: str) -> str:
    return next(s.id for s in stack.sim.state.servers.values() if s.name == name)


async def test_rollback_with_a_canary_password_reaches_the_cloud_and_nothing_else(
    stack: LocalStack, caplog, json_logs
) -> None:
    """The rollback asks the login again; a password typed for it travels like any other, and is kept nowhere."""
    caplog.set_level(logging.DEBUG)
    request = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason 'before a rollback'")
    first = await approve(stack, request)
    assert first.state is RequestState.SUCCEEDED, first.result

    before = len(stack.slack.calls_to("views.update"))
    await stack.command(f"rollback {first.id}")
    call = await stack.slack.wait_until(
        lambda: stack.slack.calls_to("views.update")[before:] or None, what="the rollback form"
    )
    view = stack.slack.views[call[0].body["view_id"]]
    assert f"Rollback of {first.id}" in str(view["blocks"])
    view = await modal_action(stack, view, views.LOGIN_ACTION, "password")
    one, two = password_blocks(view)
    reply = await stack.submit(view, {one: sr.text_value(CANARY), two: sr.text_value(CANARY)})
    assert reply.status_code == 200 and reply.text == "", reply.text

    async def rollback() -> ChangeRequest | None:
        return next((r for r in await stack.rt.store.live() if r.rollback_of == first.id and r.approval_ts), None)

    second = await stack.slack.wait_until(rollback, what="the rollback's approval card")
    assert second.has_password and second.keyname is None
    final = await approve(stack, second)
    assert final.state is RequestState.SUCCEEDED, final.result
    server = stack.sim.state.servers[final.server_id]
    assert server.login_password_sha256 == hashlib.sha256(CANARY.encode()).hexdigest()
    assert server.os_image_id == UBUNTU_20

    assert CANARY not in caplog.text and CANARY not in json_logs.text
    assert await stack.rt.workflow.password_for(final.id) is None
    assert CANARY.encode() not in database_bytes(stack)
    assert CANARY.encode() not in stack.slack.raw_traffic()
