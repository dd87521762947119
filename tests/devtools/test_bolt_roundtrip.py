"""A real Bolt AsyncApp behind aiohttp, fed by SlackSender, talking to FakeSlack: the pieces fit together."""

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.devtools import slack_requests as sr
from sandbox.devtools.fake_slack import FakeSlack

SECRET = "test-signing-secret-0000"

MODAL = {
    "type": "modal",
    "callback_id": "changeos_modal",
    "title": {"type": "plain_text", "text": "Change OS"},
    "submit": {"type": "plain_text", "text": "Submit"},
    "private_metadata": json.dumps({"channel_id": "C01CHAN001"}),
    "blocks": [
        {
            "type": "input",
            "block_id": "host_b",
            "label": {"type": "plain_text", "text": "Host"},
            "element": {"type": "plain_text_input", "action_id": "host", "initial_value": "host-1"},
        }
    ],
}
APPROVAL_BLOCKS = [
    {
        "type": "actions",
        "block_id": "cr_actions",
        "elements": [
            {
                "type": "button",
                "action_id": "cr_approve",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": "CR-1",
            }
        ],
    }
]


def build_app(fake: FakeSlack) -> AsyncApp:
    app = AsyncApp(client=AsyncWebClient(token=fake.bot_token, base_url=fake.api_url), signing_secret=SECRET)

    @app.command("/changeos")
    async def on_command(ack: Any, body: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=MODAL)
        await respond(text=f"Opening the change form for {body['text']}")

    @app.view("changeos_modal")
    async def on_submit(ack: Any, view: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        host = view["state"]["values"]["host_b"]["host"]["value"]
        channel = json.loads(view["private_metadata"])["channel_id"]
        await client.chat_postMessage(channel=channel, text=f"CR-1 for {host}", blocks=APPROVAL_BLOCKS)

    @app.action("cr_approve")
    async def on_approve(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        await respond(replace_original=True, text=f"{body['actions'][0]['value']} approved by <@{body['user']['id']}>")

    return app


@pytest.fixture
async def events_url(fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    for name in ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    bolt = build_app(fake)

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    server = web.Application()
    server.router.add_post("/slack/events", events)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/slack/events"
    await runner.cleanup()


@pytest.fixture
async def sender(events_url: str) -> AsyncIterator[sr.SlackSender]:
    async with sr.SlackSender(events_url, SECRET) as s:
        yield s


async def test_slash_command_opens_the_modal_and_responds(fake: FakeSlack, sender: sr.SlackSender) -> None:
    body = sr.slash_command("host-42", response_url=fake.response_url("cmd-1", channel="C01CHAN001"))
    trigger = dict(p.split("=", 1) for p in body.decode().split("&"))["trigger_id"]
    resp = await sender.send(body)
    assert resp.status_code == 200
    opened = await fake.wait_for("views.open")
    assert opened.body["trigger_id"] == trigger
    posted = await fake.wait_for_response("cmd-1")
    assert posted.body["text"] == "Opening the change form for host-42"
    assert fake.errors() == []


async def test_modal_submit_and_approve_click_round_trip(fake: FakeSlack, sender: sr.SlackSender) -> None:
    await sender.send(sr.slash_command("host-42", response_url=fake.response_url("cmd-2")))
    opened = await fake.wait_for("views.open", predicate=lambda c: c.ok)
    view = fake.views[opened.response["view"]["id"]]  # type: ignore[index]

    values = sr.state_from_view(view, {"host_b": sr.text_value("host-42")})
    resp = await sender.send(sr.view_submission(view=view, values=values))
    assert (resp.status_code, resp.text) == (200, "")
    post = await fake.wait_for("chat.postMessage")
    assert post.body["text"] == "CR-1 for host-42"

    card = fake.messages("C01CHAN001")[0]
    click = sr.block_actions(
        action_id="cr_approve",
        message=card.as_payload(),
        response_url=fake.response_url("act-1", channel="C01CHAN001", message_ts=card.ts),
    )
    assert (await sender.send(click)).status_code == 200
    await fake.wait_for_response("act-1")
    assert fake.message("C01CHAN001", card.ts).text == "CR-1 approved by <@U01APR0001>"
    assert fake.errors() == []


async def test_bad_signature_is_refused_by_bolt(fake: FakeSlack, events_url: str) -> None:
    async with sr.SlackSender(events_url, "wrong-secret") as wrong:
        resp = await wrong.send(sr.slash_command("host-42", response_url=fake.response_url("cmd-3")))
    assert resp.status_code == 401
    assert fake.calls_to("views.open") == []
