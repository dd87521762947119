"""views.* on the fake (triggers, hashes, stacks) and Block Kit checks that reject what Slack would reject."""

import re
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.devtools.fake_slack import FakeSlack, validate_blocks, validate_view
from sandbox.devtools.slack_requests import new_trigger_id


def modal(title: str = "Change OS", *, blocks: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "changeos_modal",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Submit"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks
        if blocks is not None
        else [
            {
                "type": "input",
                "block_id": "host_b",
                "label": {"type": "plain_text", "text": "Host"},
                "element": {"type": "plain_text_input", "action_id": "host"},
            }
        ],
        **extra,
    }


def section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id:
        block["block_id"] = block_id
    return block


async def test_views_open_stores_the_view_with_id_and_hash(client: AsyncWebClient, fake: FakeSlack) -> None:
    resp = await client.views_open(trigger_id=new_trigger_id(), view=modal(private_metadata='{"c":"C01CHAN001"}'))
    view = resp["view"]
    assert re.fullmatch(r"V[A-Z0-9]+", view["id"])
    assert re.fullmatch(r"\d{10}\.[A-Za-z0-9]{8}", view["hash"])
    assert view["root_view_id"] == view["id"]
    assert view["previous_view_id"] is None
    assert view["state"] == {"values": {}}
    assert view["private_metadata"] == '{"c":"C01CHAN001"}'
    assert fake.views[view["id"]] == view


async def test_views_open_fills_missing_block_ids_like_slack(client: AsyncWebClient, fake: FakeSlack) -> None:
    resp = await client.views_open(trigger_id=new_trigger_id(), view=modal(blocks=[section("plan")]))
    assert resp["view"]["blocks"][0]["block_id"]


async def test_trigger_ids_are_one_shot_and_must_look_valid(client: AsyncWebClient, fake: FakeSlack) -> None:
    trigger = new_trigger_id()
    await client.views_open(trigger_id=trigger, view=modal())
    with pytest.raises(SlackApiError) as reused:
        await client.views_open(trigger_id=trigger, view=modal())
    assert reused.value.response["error"] == "exchanged_trigger_id"
    with pytest.raises(SlackApiError) as malformed:
        await client.views_open(trigger_id="not-a-trigger", view=modal())
    assert malformed.value.response["error"] == "invalid_trigger_id"
    assert len(fake.views) == 1


async def test_views_update_checks_the_hash_and_issues_a_new_one(client: AsyncWebClient, fake: FakeSlack) -> None:
    opened = (await client.views_open(trigger_id=new_trigger_id(), view=modal("Loading…")))["view"]
    updated = (await client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal("Change OS")))["view"]
    assert updated["id"] == opened["id"]
    assert updated["hash"] != opened["hash"]
    assert fake.views[opened["id"]]["title"]["text"] == "Change OS"

    with pytest.raises(SlackApiError) as stale:
        await client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal("Stale"))
    assert stale.value.response["error"] == "hash_conflict"
    assert fake.views[opened["id"]]["title"]["text"] == "Change OS"

    unhashed = await client.views_update(view_id=opened["id"], view=modal("No hash given"))
    assert unhashed["view"]["title"]["text"] == "No hash given"
    with pytest.raises(SlackApiError) as missing:
        await client.views_update(view_id="V09NOPE999", view=modal())
    assert missing.value.response["error"] == "not_found"


async def test_views_update_by_external_id_keeps_typed_input(client: AsyncWebClient, fake: FakeSlack) -> None:
    opened = (await client.views_open(trigger_id=new_trigger_id(), view=modal(external_id="cr-17")))["view"]
    typed = {"host_b": {"host": {"type": "plain_text_input", "value": "host-42"}}}
    fake.set_view_state(opened["id"], typed)
    resp = await client.views_update(external_id="cr-17", view=modal("Updated", external_id="cr-17"))
    assert resp["view"]["id"] == opened["id"]
    assert resp["view"]["state"]["values"] == typed  # same block_id + action_id: Slack keeps the entry


async def test_views_push_stacks_up_to_three(client: AsyncWebClient, fake: FakeSlack) -> None:
    root = (await client.views_open(trigger_id=new_trigger_id(), view=modal()))["view"]
    second = (await client.views_push(trigger_id=new_trigger_id(), view=modal("Confirm")))["view"]
    assert second["root_view_id"] == root["id"]
    assert second["previous_view_id"] == root["id"]
    third = (await client.views_push(trigger_id=new_trigger_id(), view=modal("Really?")))["view"]
    assert third["previous_view_id"] == second["id"]
    with pytest.raises(SlackApiError) as exc:
        await client.views_push(trigger_id=new_trigger_id(), view=modal("Too deep"))
    assert exc.value.response["error"] == "push_limit_reached"


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        (modal("A title that is far too long"), "/view/title"),
        (modal(private_metadata="x" * 3001), "/view/private_metadata"),
        (modal(blocks=[section(f"row {i}") for i in range(101)]), "no more than 100 items"),
        (modal(blocks=[section("x" * 3001)]), "3000 characters [json-pointer:/view/blocks/0]"),
        ({**modal(), "submit": None}, "submit is required"),
        (modal(blocks=[{"type": "bogus"}]), "unknown block type"),
    ],
    ids=["title", "private_metadata", "too_many_blocks", "section_text", "submit_missing", "unknown_block"],
)
async def test_invalid_views_are_refused_and_recorded(
    client: AsyncWebClient, fake: FakeSlack, view: dict[str, Any], expected: str
) -> None:
    with pytest.raises(SlackApiError) as exc:
        await client.views_open(trigger_id=new_trigger_id(), view=view)
    assert exc.value.response["error"] == "invalid_arguments"
    messages = exc.value.response["response_metadata"]["messages"]
    assert any(expected in m for m in messages), messages
    (error,) = fake.errors()
    assert error.method == "views.open"
    assert error.error == "invalid_arguments"
    assert error.messages == messages
    assert fake.views == {}


async def test_invalid_message_blocks_are_refused_and_recorded(client: AsyncWebClient, fake: FakeSlack) -> None:
    button = {
        "type": "actions",
        "elements": [{"type": "button", "action_id": "cr_approve", "text": {"type": "plain_text", "text": "A" * 80}}],
    }
    with pytest.raises(SlackApiError) as exc:
        await client.chat_postMessage(channel="C01CHAN001", text="x", blocks=[section("ok"), button])
    assert exc.value.response["error"] == "invalid_blocks"
    assert "[json-pointer:/blocks/1]" in exc.value.response["response_metadata"]["messages"][0]
    assert "75 characters" in exc.value.response["errors"][0]

    with pytest.raises(SlackApiError) as too_many:
        await client.chat_postMessage(channel="C01CHAN001", text="x", blocks=[section(str(i)) for i in range(51)])
    assert too_many.value.response["error"] == "invalid_blocks"

    posted = await client.chat_postMessage(channel="C01CHAN001", text="x", blocks=[section("fine")])
    with pytest.raises(SlackApiError) as on_update:
        await client.chat_update(
            channel="C01CHAN001", ts=posted["ts"], text="y", blocks=[section("a", "dup"), section("b", "dup")]
        )
    assert on_update.value.response["error"] == "invalid_blocks"
    assert [c.method for c in fake.errors()] == ["chat.postMessage", "chat.postMessage", "chat.update"]
    assert [m.text for m in fake.messages()] == ["x"]
    assert fake.message("C01CHAN001", posted["ts"]).history == []


def test_validators_accept_what_slack_accepts() -> None:
    assert validate_view(modal()) == []
    assert validate_blocks([section("a"), {"type": "divider"}], max_blocks=50, pointer="/blocks") == []
    assert validate_blocks("not a list", max_blocks=50, pointer="/blocks") == [
        "[ERROR] must be an array [json-pointer:/blocks]"
    ]
