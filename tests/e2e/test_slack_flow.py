"""The Slack conversation, driven exactly as Slack would: commands, the plan modal, approvals, refusals."""

from __future__ import annotations

import json

from bot.domain.request import RequestState
from bot.slack import views
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.stack import (
    APPROVALS_CHANNEL,
    APPROVER,
    COMMAND_CHANNEL,
    GROUP_APPROVER,
    OUTSIDER,
    REQUESTER,
    LocalStack,
)
from sandbox.simulator.faults import FaultSpec
from tests.e2e.conftest import modal_action, open_plan, submit_plan, wait_state


def blocks_text(view: dict) -> str:
    return json.dumps(view["blocks"], ensure_ascii=False)


def ephemerals_for(stack: LocalStack, user: str) -> list[str]:
    return [m.text for m in stack.slack.ephemerals() if getattr(m, "user", user) == user]


async def test_command_acks_before_any_cloud_lookup(stack: LocalStack) -> None:
    stack.sim.faults.add(FaultSpec(route="show_server", latency_ms=1500))  # the first lookup; the rest wait on it
    response = await stack.command("web-01 ubuntu-22.04")
    assert response.status_code == 200 and response.text == ""
    assert not stack.slack.calls_to("views.open"), "the ack goes out before any other work"
    # The loading modal opens on the trigger while the cloud is still answering; the plan comes later.
    opened = (await stack.slack.wait_for("views.open")).body["view"]
    assert not stack.slack.calls_to("views.update")
    assert "Looking up" in blocks_text(opened)
    view = await stack.plan_view(timeout=20)
    update = stack.slack.calls_to("views.update")[0].body
    assert update["hash"], "views.update carries the loading view's hash"
    assert "Pre-flight checks" in blocks_text(view)


async def test_the_bots_slack_calls_share_connections(stack: LocalStack) -> None:
    for server in ("web-01", "web-02"):
        await stack.command(f"{server} ubuntu-22.04 --key ops-key")
    await stack.slack.wait_until(lambda: len(stack.slack.calls_to("views.update")) >= 2, what="both plans")
    calls = stack.slack.calls_to("views.open") + stack.slack.calls_to("views.update")
    assert len(calls) >= 4 and all(call.peer for call in calls)
    # slack_sdk alone opens a connection per call (and leaves the socket to the garbage collector)
    assert len({call.peer for call in calls}) < len(calls)


async def test_plan_card_shows_server_image_and_checks(stack: LocalStack) -> None:
    view = await open_plan(stack, "web-01 ubuntu-22.04 --key ops-key --reason patch --ticket INC-1")
    text = blocks_text(view)
    assert "web-01" in text and "ACTIVE" in text and "ubuntu-20.04" in text
    image = next(b for b in view["blocks"] if b.get("block_id") == views.IMAGE_BLOCK)
    assert image["element"]["initial_option"]["text"]["text"].startswith("ubuntu-22.04")
    assert any(b.get("block_id") == views.STOP_BLOCK for b in view["blocks"]), "a running server offers stop-first"
    assert "✅" in text and "⛔" not in text
    reason = next(b for b in view["blocks"] if b.get("block_id") == views.REASON_BLOCK)
    assert reason["element"]["initial_value"] == "patch"
    assert not stack.slack.errors()


async def test_unknown_server_names_the_closest_matches(stack: LocalStack) -> None:
    await stack.command("web-1 ubuntu-22.04")
    view = await stack.plan_view()
    assert "Server not found" in json.dumps(view["title"])
    assert "No server named `web-1`" in blocks_text(view) and "web-01" in blocks_text(view)
    assert not view.get("submit")
    assert not stack.slack.ephemerals(), "said once, in the modal already open on the trigger"


async def test_ambiguous_name_lets_the_person_choose(stack: LocalStack) -> None:
    view = await open_plan(stack, "app-01 ubuntu-22.04")
    chooser = next(b for b in view["blocks"] if b.get("block_id") == views.SERVER_BLOCK)
    options = chooser["element"]["options"]
    assert len(options) == 2 and view["submit"]["text"] == "Continue"
    early = (await stack.submit(view)).json()
    assert early["response_action"] == "errors" and "Choose" in json.dumps(early["errors"])
    chosen = options[1]["value"]
    rebuilt = await modal_action(stack, view, views.SERVER_ACTION, chosen)
    assert chosen in blocks_text(rebuilt)
    assert rebuilt["submit"]["text"] == "Request approval"


async def test_missing_arguments_are_asked_for_in_the_modal(stack: LocalStack) -> None:
    view = await open_plan(stack, "db-01")
    reply = await stack.submit(view)
    body = reply.json()
    assert body["response_action"] == "errors"
    assert views.IMAGE_BLOCK in body["errors"] and views.REASON_BLOCK in body["errors"]
    assert not await stack.rt.store.live()


async def test_blocking_check_refuses_submit_inline(stack: LocalStack) -> None:
    view = await open_plan(stack, "locked-01 ubuntu-22.04 --key ops-key --reason test")
    assert "⛔" in blocks_text(view)
    reply = await stack.submit(view)
    body = reply.json()
    assert body["response_action"] == "errors"
    assert "lock" in json.dumps(body["errors"]).lower()
    assert not await stack.rt.store.live()


async def test_usage_error_is_ephemeral_and_helpful(stack: LocalStack) -> None:
    response = await stack.command("web-01 --key ops-key --password")
    assert response.status_code == 200
    assert "--key" in response.text and "/changeos" in response.text
    assert not stack.slack.calls_to("views.open")


async def test_help_shows_only_what_the_caller_may_do(stack: LocalStack) -> None:
    requester = (await stack.command("help", user=REQUESTER)).text
    outsider = (await stack.command("help", user=OUTSIDER)).text
    approver = (await stack.command("help", user=APPROVER)).text
    assert "/changeos SERVER" in requester and "cancel" in requester
    assert "/changeos SERVER" not in outsider and "not named in the bot's policy" in outsider
    assert "approve" in approver.lower() and "/changeos SERVER" not in approver


async def test_second_request_for_same_server_points_to_the_live_one(stack: LocalStack) -> None:
    first = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason one")
    view = await open_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason two")
    reply = await stack.submit(view)
    body = reply.json()
    assert body["response_action"] == "errors"
    assert first.id in json.dumps(body["errors"])
    assert len(await stack.rt.store.live()) == 1


async def test_outsider_and_requester_cannot_approve_and_are_audited(stack: LocalStack) -> None:
    request = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason audit me")
    await stack.click(views.APPROVE_ACTION, request.id, user=OUTSIDER)
    await stack.click(views.APPROVE_ACTION, request.id, user=REQUESTER)
    refusals = await stack.slack.wait_until(
        lambda: (
            [c for c in stack.slack.calls_to("chat.postEphemeral") if "⛔" in c.body.get("text", "")][1:]
            and [c for c in stack.slack.calls_to("chat.postEphemeral") if "⛔" in c.body.get("text", "")]
        ),
        what="two refusals",
    )
    assert {c.body["user"] for c in refusals} == {OUTSIDER, REQUESTER}
    assert (await stack.rt.store.get(request.id)).state is RequestState.PENDING_APPROVAL
    actions = [e.action for e in await stack.rt.store.audit(request.id)]
    assert actions.count("approve_refused") == 2
    card = stack.slack.message(APPROVALS_CHANNEL, request.approval_ts)
    assert any(b["type"] == "actions" for b in card.blocks), "the buttons stay for the real approvers"


async def test_group_member_approves_and_buttons_go(stack: LocalStack) -> None:
    request = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason group approval")
    await stack.click(views.APPROVE_ACTION, request.id, user=GROUP_APPROVER)
    await wait_state(stack, request.id, RequestState.SUCCEEDED)

    def card_decided():
        card = stack.slack.message(APPROVALS_CHANNEL, request.approval_ts)
        return card if "Approved by" in json.dumps(card.blocks) else None

    card = await stack.slack.wait_until(card_decided, what="the card to show the decision")
    assert not any(b["type"] == "actions" for b in card.blocks)
    assert f"<@{GROUP_APPROVER}>" in json.dumps(card.blocks)


async def test_reject_with_reason_updates_card_and_tells_the_thread(stack: LocalStack) -> None:
    request = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason reject me")
    await stack.click(views.REJECT_ACTION, request.id, user=APPROVER)
    opened = await stack.slack.wait_for(
        "views.open", lambda c: c.body["view"].get("callback_id") == views.REJECT_CALLBACK
    )
    modal = stack.slack.views[
        next(v for v, stored in stack.slack.views.items() if stored.get("callback_id") == views.REJECT_CALLBACK)
    ]
    assert opened
    values = sr.state_from_view(modal, {views.REJECT_REASON_BLOCK: sr.text_value("not during the freeze")})
    reply = await stack.sender.send(sr.view_submission(user_id=APPROVER, view=modal, values=values))
    assert reply.status_code == 200 and reply.text == ""
    rejected = await wait_state(stack, request.id, RequestState.REJECTED)
    assert rejected.decided_by == APPROVER and rejected.decision_note == "not during the freeze"

    def card_rejected():
        card = stack.slack.message(APPROVALS_CHANNEL, request.approval_ts)
        return card if "Rejected by" in json.dumps(card.blocks) else None

    card = await stack.slack.wait_until(card_rejected, what="the card to say rejected")
    assert "not during the freeze" in json.dumps(card.blocks)
    assert not [r for r in stack.sim.requests if r["route"] and "change_os" in r["route"]]


async def test_requester_cancels_from_the_card_and_with_the_command(stack: LocalStack) -> None:
    request = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason cancel me")
    await stack.click(views.CANCEL_ACTION, request.id, user=APPROVER)  # not the requester: refused
    await stack.click(views.CANCEL_ACTION, request.id, user=REQUESTER)
    cancelled = await wait_state(stack, request.id, RequestState.CANCELLED)
    assert cancelled.decided_by == REQUESTER
    assert "cancel_refused" in [e.action for e in await stack.rt.store.audit(request.id)]
    again = await stack.command(f"cancel {request.id}")
    assert "too late" in again.text


async def test_status_and_list_commands(stack: LocalStack) -> None:
    request = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason status please")
    listing = (await stack.command("list", user=OUTSIDER)).text
    assert request.id in listing and "db-01" in listing
    status = (await stack.command(f"status {request.id}", user=OUTSIDER)).text
    assert "Audit trail" in status and "created" in status
    by_server = (await stack.command("status db-01", user=OUTSIDER)).text
    assert request.id in by_server
    unknown = (await stack.command("status nothing-here", user=OUTSIDER)).text
    assert "No change request matches" in unknown


async def test_switching_login_rebuilds_the_modal_keeping_input(stack: LocalStack) -> None:
    view = await open_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason keep me")
    rebuilt = await modal_action(stack, view, views.LOGIN_ACTION, "password")
    text = blocks_text(rebuilt)
    assert "visible while you type" in text, "the in-modal fallback warns (no public URL in this stack)"
    assert any(b.get("block_id", "").startswith(views.PASSWORD_BLOCK_PREFIX) for b in rebuilt["blocks"])
    reason = next(b for b in rebuilt["blocks"] if b.get("block_id") == views.REASON_BLOCK)
    assert reason["element"].get("initial_value") == "keep me"


async def test_self_service_rule_skips_approval(tmp_path) -> None:
    from sandbox.devtools.stack import DEFAULT_POLICY, StackOptions

    policy = DEFAULT_POLICY.replace("approvals_required = 1", "self_service = true")
    async with LocalStack(StackOptions(policy=policy)) as stack:
        request = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason self service")
        final = await wait_state(stack, request.id, RequestState.SUCCEEDED, RequestState.FAILED)
        assert final.state is RequestState.SUCCEEDED, final.result
        assert final.decided_by == REQUESTER
        told = await stack.slack.wait_until(
            lambda: [m for m in stack.slack.told(REQUESTER) if "self-service" in m.text] or None, what="the start"
        )
        assert told[0].channel == COMMAND_CHANNEL


async def test_key_pair_login_needs_the_iam_user_id() -> None:
    from sandbox.devtools.stack import StackOptions

    async with LocalStack(StackOptions(extra_settings={"huaweicloud_user_id": None})) as stack:
        view = await open_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason no user id")
        assert "HUAWEICLOUD_USER_ID" in blocks_text(view)
        reply = (await stack.submit(view)).json()
        assert reply["response_action"] == "errors" and "HUAWEICLOUD_USER_ID" in json.dumps(reply["errors"])
        assert not await stack.rt.store.live()


async def test_a_broken_submission_gets_a_message_not_a_stack_trace(stack: LocalStack) -> None:
    view = await open_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason broken")
    metadata = json.loads(view["private_metadata"])
    del metadata["d"]  # a payload the bot never produced
    reply = await stack.submit(dict(view, private_metadata=json.dumps(metadata)))
    assert reply.status_code == 200
    body = reply.json()
    assert body["response_action"] == "errors"
    assert "nothing was changed" in json.dumps(body["errors"])
    assert "Traceback" not in reply.text and not await stack.rt.store.live()
