"""The fake Slack's client side, which the playground page plays: whose modal is open, closing and answering it as
Slack does after a submission, ephemeral acks, and the long-polled state a page reads."""

import asyncio
from typing import Any

import httpx
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.devtools.fake_slack import FakeSlack
from sandbox.devtools.slack_requests import new_trigger_id

from .test_fake_slack_views import modal

ALICE, BOB = "U01REQ0001", "U01APR0001"


async def open_for(client: AsyncWebClient, fake: FakeSlack, user: str, **extra: Any) -> dict[str, Any]:
    trigger = new_trigger_id()
    fake.bind_trigger(trigger, user)
    return (await client.views_open(trigger_id=trigger, view=modal(**extra)))["view"]


async def test_a_modal_belongs_to_whoever_the_trigger_was_minted_for(client: AsyncWebClient, fake: FakeSlack) -> None:
    view = await open_for(client, fake, ALICE)
    assert fake.open_modal(ALICE)["id"] == view["id"]
    assert fake.open_modal(BOB) is None
    pushed = (await client.views_push(trigger_id=_bound(fake, ALICE), view=modal("Second")))["view"]
    assert fake.open_modal(ALICE)["id"] == pushed["id"]  # the top of the stack

    fake.close_modal(pushed["id"])
    assert fake.open_modal(ALICE)["id"] == view["id"]  # the view under it shows again
    fake.close_modal(view["id"])
    assert fake.open_modal(ALICE) is None


def _bound(fake: FakeSlack, user: str) -> str:
    trigger = new_trigger_id()
    fake.bind_trigger(trigger, user)
    return trigger


async def test_response_action_update_keeps_typed_input_and_push_stacks(
    client: AsyncWebClient, fake: FakeSlack
) -> None:
    view = await open_for(client, fake, ALICE)
    fake.set_view_state(view["id"], {"host_b": {"host": {"type": "plain_text_input", "value": "web-01"}}})
    assert fake.answer_view(view["id"], "update", modal("Updated")) == []
    updated = fake.open_modal(ALICE)
    assert updated["id"] == view["id"] and updated["title"]["text"] == "Updated"
    assert updated["hash"] != view["hash"]
    assert updated["state"]["values"]["host_b"]["host"]["value"] == "web-01"

    assert fake.answer_view(view["id"], "push", modal("Pushed")) == []
    top = fake.open_modal(ALICE)
    assert top["title"]["text"] == "Pushed" and top["previous_view_id"] == view["id"]
    assert fake.errors() == []


async def test_a_view_slack_would_refuse_is_reported_not_shown(client: AsyncWebClient, fake: FakeSlack) -> None:
    view = await open_for(client, fake, ALICE)
    problems = fake.answer_view(view["id"], "update", modal("A title far longer than Slack allows"))
    assert problems and "less than 25 characters" in problems[0]
    assert fake.open_modal(ALICE)["title"]["text"] == "Change OS"
    assert [c.method for c in fake.errors()] == ["response_action.update"]


async def test_the_client_state_is_long_polled_per_user(client: AsyncWebClient, fake: FakeSlack) -> None:
    await client.chat_postMessage(channel="C01CHAN001", text="hello *all*")
    fake.show_ephemeral("C01CHAN001", ALICE, "only for alice")
    async with httpx.AsyncClient() as http:
        url = fake.url + "/_client/state"
        state = (await http.get(url, params={"user": ALICE})).json()
        assert [m["text"] for m in state["messages"]] == ["hello *all*"]
        assert [m["text"] for m in state["ephemerals"]] == ["only for alice"]
        assert (await http.get(url, params={"user": BOB})).json()["ephemerals"] == []

        waiting = asyncio.create_task(http.get(url, params={"user": BOB, "after": state["version"]}))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # nothing changed yet: the poll waits
        fake.show_in_channel("C01CHAN001", "news")
        answer = (await asyncio.wait_for(waiting, 5)).json()
        assert answer["version"] > state["version"]
        assert [m["text"] for m in answer["messages"]] == ["hello *all*", "news"]

        bad = await http.get(url, params={"user": "alice"})
        assert bad.status_code == 400 and "user ID" in bad.json()["error"]
        assert bad.headers["Access-Control-Allow-Origin"] == "*"
