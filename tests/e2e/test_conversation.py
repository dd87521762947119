"""What a new user meets in the conversation: refusals before lookups, typed fields kept, clear and safe messages."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

from bot.domain.request import LoginMethod, RequestState, StopType
from bot.slack import views
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.stack import (
    APPROVER,
    INCIDENT_CHANNEL,
    OPS_GROUP,
    OUTSIDER,
    REQUESTER,
    LocalStack,
    StackOptions,
)
from tests.e2e.conftest import carded, modal_action, open_plan, wait_state
from tests.support.sim_ids import WEB_01

APP_ACTIVE, APP_SHUTOFF = "7a9f4d3b-0000-4f00-8000-000000000008", "7a9f4d3b-0000-4f00-8000-000000000009"

# REQUESTER may change the web-* and app-* servers only; db-01 and the rest belong to someone else.
NARROW_POLICY = f"""
approvals_channel = "C01APPROVE1"
allow_password_in_modal = true

[[rules]]
name = "web and app"
servers = ["web-*", "app-*"]
requesters = ["{REQUESTER}"]
approvers = ["{APPROVER}", "{OPS_GROUP}"]
images = ["*"]

[[rules]]
name = "the rest"
servers = ["*"]
requesters = ["{APPROVER}"]
approvers = ["{REQUESTER}"]
images = ["*"]
"""


def blocks_text(view: dict) -> str:
    return json.dumps(view["blocks"], ensure_ascii=False)


def block(view: dict, block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def initial_option(view: dict, block_id: str) -> str | None:
    element = block(view, block_id)["element"]
    return (element.get("initial_option") or {}).get("value")


def everything_slack_saw(stack: LocalStack) -> str:
    """Every Web API call and response_url post the bot made, as text."""
    calls = [json.dumps(c.body, ensure_ascii=False) for c in stack.slack.calls]
    posts = [json.dumps(getattr(p, "body", None) or str(p), ensure_ascii=False) for p in stack.slack.responses]
    return "\n".join(calls + posts)


def server_routes(stack: LocalStack) -> list[str]:
    return [r["route"] for r in stack.sim.requests if r["route"] and "server" in r["route"]]


# ---------------------------------------------------------------------------------------------------- deny first


async def test_outsider_is_refused_before_any_cloud_lookup(stack: LocalStack) -> None:
    for text in ("--reason x", "db", "db-01 ubuntu-22.04 --reason x"):
        before = len(stack.slack.told(OUTSIDER))
        response = await stack.command(text, user=OUTSIDER)
        assert response.status_code == 200
        refusal = await stack.slack.wait_until(
            lambda before=before: stack.slack.told(OUTSIDER)[before:] or None, what="the refusal"
        )
        assert "not named in the bot's policy" in refusal[0].text and "admin" in refusal[0].text
    assert len(stack.slack.responses) == 3, "each refusal went to its command's response_url"
    assert not stack.slack.calls_to("chat.postEphemeral"), "which needs no membership of the channel"
    assert not stack.slack.calls_to("views.open"), "no modal, so no server list and no 'Did you mean'"
    assert server_routes(stack) == [], "nothing was looked up in the cloud"
    seen = everything_slack_saw(stack)
    assert not any(name in seen for name in ("db-01", "web-01", "app-01", "locked-01", "7a9f4d3b"))


async def test_a_form_changed_by_someone_else_looks_nothing_up(stack: LocalStack) -> None:
    view = await open_plan(stack, "app-01 --reason mine")
    updates, lookups = len(stack.slack.calls_to("views.update")), len(server_routes(stack))
    state = sr.state_from_view(view, {views.SERVER_BLOCK: sr.select_value(APP_ACTIVE)})
    body = sr.block_actions(
        user_id=OUTSIDER, action_id=views.SERVER_ACTION, container="view", view=view, value=APP_ACTIVE,
        state_values=state,
    )
    assert (await stack.sender.send(body)).status_code == 200
    await modal_action(stack, view, views.SERVER_ACTION, APP_SHUTOFF)  # the owner's own pick is answered
    assert len(stack.slack.calls_to("views.update")) == updates + 1
    assert len(server_routes(stack)) > lookups, "the owner's pick looked its server up"
    assert not [r for r in stack.sim.requests if APP_ACTIVE in r["path"]], "the other person's pick did not"


async def test_suggestions_and_the_chooser_only_name_servers_the_user_may_change() -> None:
    async with LocalStack(StackOptions(policy=NARROW_POLICY)) as stack:
        await stack.command("db")
        view = await stack.plan_view()
        assert "Server not found" in json.dumps(view["title"])
        assert "db-01" not in blocks_text(view), "db-01 exists, but is not this user's to change"
        assert not stack.slack.ephemerals(), "not found is said once, in the modal"

        stack.slack.clear_calls()
        await stack.command("wbe-01")
        view = await stack.plan_view()
        assert "web-01" in blocks_text(view), "a close name the user may change is suggested"

        stack.slack.clear_calls()
        view = await open_plan(stack, "--reason which one")
        labels = [o["text"]["text"] for o in block(view, views.SERVER_BLOCK)["element"]["options"]]
        assert sorted(label.split(" · ")[0] for label in labels) == ["app-01", "app-01", "web-01"]
        assert "No server was named" in blocks_text(view) and "Several servers" not in blocks_text(view)


async def test_a_large_account_gets_a_chooser_that_fits_and_says_so(stack: LocalStack) -> None:
    template = stack.sim.state.servers[WEB_01]
    for i in range(150):
        clone = dataclasses.replace(template, id=str(uuid.UUID(int=i + 1)), name=f"bulk-{i:03d}")
        stack.sim.state.servers[clone.id] = clone
    view = await open_plan(stack, "--reason many --key ops-key")
    assert not stack.slack.errors(), [c.response for c in stack.slack.errors()]
    options = block(view, views.SERVER_BLOCK)["element"]["options"]
    assert 10 < len(options) <= 100
    assert f"the first {len(options)} of {len(stack.sim.state.servers)}" in blocks_text(view)
    rebuilt = await modal_action(stack, view, views.SERVER_ACTION, options[-1]["value"])
    assert not stack.slack.errors() and initial_option(rebuilt, views.KEY_BLOCK) == "ops-key"


# ---------------------------------------------------------------------------------------------------- typed fields


async def test_ambiguous_name_carries_every_typed_field_through_the_chooser(stack: LocalStack) -> None:
    view = await open_plan(
        stack,
        f"app-01 ubuntu-22.04 --key ops-key --stop hard --reason patch the kernel --ticket INC-42 "
        f"--notify <#{INCIDENT_CHANNEL}|incidents>",
    )
    assert "Several servers you may change are named app-01" in blocks_text(view)
    assert block(view, views.REASON_BLOCK)["element"]["initial_value"] == "patch the kernel"
    assert block(view, views.TICKET_BLOCK)["element"]["initial_value"] == "INC-42"
    assert block(view, views.NOTIFY_BLOCK)["element"]["initial_conversations"] == [INCIDENT_CHANNEL]

    rebuilt = await modal_action(stack, view, views.SERVER_ACTION, APP_ACTIVE)
    assert initial_option(rebuilt, views.IMAGE_BLOCK) is not None
    assert "ubuntu-22.04" in json.dumps(block(rebuilt, views.IMAGE_BLOCK)["element"]["initial_option"])
    assert initial_option(rebuilt, views.KEY_BLOCK) == "ops-key", "the typed key, never the server's deploy-key"
    assert initial_option(rebuilt, views.STOP_BLOCK) == "HARD"
    assert block(rebuilt, views.REASON_BLOCK)["element"]["initial_value"] == "patch the kernel"
    assert block(rebuilt, views.TICKET_BLOCK)["element"]["initial_value"] == "INC-42"
    assert "⛔" not in blocks_text(rebuilt)

    # A later rebuild (switching login away and back) still keeps the typed key.
    as_password = await modal_action(stack, rebuilt, views.LOGIN_ACTION, "password")
    back = await modal_action(stack, as_password, views.LOGIN_ACTION, "keypair")
    assert initial_option(back, views.KEY_BLOCK) == "ops-key"

    reply = await stack.submit(back)
    assert reply.status_code == 200 and reply.text == "", reply.text
    [request] = await stack.slack.wait_until(stack.rt.store.live, what="the request")
    assert (request.server_id, request.keyname, request.stop_type) == (APP_ACTIVE, "ops-key", StopType.HARD)
    assert (request.target_image_name, request.reason, request.ticket) == ("ubuntu-22.04", "patch the kernel", "INC-42")
    assert INCIDENT_CHANNEL in request.notify_channels


async def test_no_server_given_keeps_the_typed_key_and_password_choice(stack: LocalStack) -> None:
    view = await open_plan(stack, "--image ubuntu-22.04 --key ops-key --reason r")
    assert "No server was named: choose the server" in blocks_text(view)
    rebuilt = await modal_action(stack, view, views.SERVER_ACTION, APP_SHUTOFF)
    assert initial_option(rebuilt, views.KEY_BLOCK) == "ops-key"

    stack.slack.clear_calls()
    view = await open_plan(stack, "--image ubuntu-22.04 --password --reason r")
    rebuilt = await modal_action(stack, view, views.SERVER_ACTION, APP_SHUTOFF)
    assert initial_option(rebuilt, views.LOGIN_BLOCK) == LoginMethod.PASSWORD.value
    assert not any(b.get("block_id") == views.KEY_BLOCK for b in rebuilt["blocks"])


async def test_a_typed_key_that_does_not_exist_is_a_check_not_a_swap(stack: LocalStack) -> None:
    chooser = await open_plan(stack, "app-01 ubuntu-22.04 --key no-such-key --reason r")
    view = await modal_action(stack, chooser, views.SERVER_ACTION, APP_SHUTOFF)
    assert initial_option(view, views.KEY_BLOCK) is None, "app-01's own deploy-key is not put in its place"
    checks = blocks_text(block_only(view, views.CHECKS_BLOCK))
    assert "Unknown key pair" in checks and "no-such-key" in checks


def block_only(view: dict, block_id: str) -> dict:
    return {"blocks": [block(view, block_id)]}


# ---------------------------------------------------------------------------------------------------- images


async def test_an_image_name_matching_several_images_names_them_once(stack: LocalStack) -> None:
    view = await open_plan(stack, "web-01 ubuntu --key ops-key --reason r")
    assert initial_option(view, views.IMAGE_BLOCK) is None, "several match: never a guess"
    checks = blocks_text(block_only(view, views.CHECKS_BLOCK))
    assert "Several images match" in checks and "matches 3 images" in checks
    assert "Image not found" not in checks
    said = await stack.slack.wait_until(lambda: stack.slack.told(REQUESTER) or None, what="the matches")
    for name in ("ubuntu-22.04", "ubuntu-24.04-cloudinit", "ubuntu-20.04"):
        assert name in said[0].text and name not in checks, "named once, in the channel, not in the form too"
    rebuilt = await modal_action(stack, view, views.LOGIN_ACTION, "password")
    assert "Several images match" in blocks_text(rebuilt)
    assert len(stack.slack.told(REQUESTER)) == 1, "a rebuild of the form does not say it again"


async def test_an_omitted_image_is_said_to_be_missing_not_unknown(stack: LocalStack) -> None:
    view = await open_plan(stack, "web-01 --key ops-key --reason r")
    checks = blocks_text(block_only(view, views.CHECKS_BLOCK))
    assert "No image chosen" in checks and "named none" in checks
    assert "Image not found" not in checks


# ---------------------------------------------------------------------------------------------------- notify


async def test_plain_text_notify_name_is_not_silently_ignored(stack: LocalStack) -> None:
    view = await open_plan(stack, "app-01 ubuntu-22.04 --key ops-key --reason r --notify #no-such-room")
    assert "Not told: #no-such-room" in blocks_text(view), "said in the chooser"
    rebuilt = await modal_action(stack, view, views.SERVER_ACTION, APP_SHUTOFF)
    text = blocks_text(rebuilt)
    assert "Not told: #no-such-room" in text and "autocomplete" in text, "and still after the pick"
    assert initial_option(rebuilt, views.KEY_BLOCK) == "ops-key"


# ---------------------------------------------------------------------------------------------------- escaping


async def test_server_names_and_reasons_cannot_ping_or_link_anywhere(stack: LocalStack) -> None:
    stack.sim.state.servers[WEB_01].name = "web <!channel> <https://evil.example|x>"
    view = await open_plan(stack, f"{WEB_01} ubuntu-22.04 --key ops-key --reason placeholder")
    reason = "urgent <!here> see <https://evil.example|the runbook> &amp; <@U01ADMIN01>"
    reply = await stack.submit(view, {views.REASON_BLOCK: {"value": reason}})
    assert reply.status_code == 200 and reply.text == "", reply.text
    request = await stack.slack.wait_until(
        lambda: carded(stack), what="the approval card"
    )
    assert request.reason == reason, "stored as typed; only what Slack displays is escaped"
    await stack.click(views.APPROVE_ACTION, request.id, user=OUTSIDER)  # refused, naming the server
    await stack.slack.wait_until(
        lambda: [c for c in stack.slack.calls_to("chat.postEphemeral") if c.body["user"] == OUTSIDER], what="refusal"
    )
    await stack.click(views.APPROVE_ACTION, request.id, user=APPROVER)
    await wait_state(stack, request.id, RequestState.SUCCEEDED)
    status = (await stack.command(f"status {request.id}")).text
    listing = (await stack.command("list")).text
    mention = (await stack.command("<!channel>")).text
    seen = "\n".join([everything_slack_saw(stack), status, listing, mention])
    for raw in ("<!channel>", "<!here>", "<https://evil", "<@U01ADMIN01>"):
        assert raw not in seen, raw
    assert "&lt;!channel&gt;" in seen and "&lt;!here&gt;" in seen


# ---------------------------------------------------------------------------------------------------- lengths


async def test_overlong_input_gets_a_short_message(stack: LocalStack) -> None:
    cases = {
        "s" * 300 + " ubuntu": "at most 64",
        "web-01 " + "i" * 200: "at most 128",
        "web-01 --key " + "k" * 65: "at most 64",
        "web-01 --ticket " + "t" * 101: "ticket",
        "s" * 5000: "4000",
        "web-01 --reason " + "r" * 600: "500",
        " ".join(["word"] * 790): "Too many words",
        "web-01 --reason " + "x" * 20_000: "4000",
    }
    for text, expected in cases.items():
        response = await stack.command(text)
        assert response.status_code == 200
        answer = response.json()["text"] if response.text.startswith("{") else response.text
        assert expected in answer, answer
        assert len(answer) < 1000, len(answer)
    assert not stack.slack.calls_to("views.open")
