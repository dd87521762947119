"""FakeSlack's Web API over real HTTP, driven by slack_sdk's AsyncWebClient: auth, chat.*, users, groups."""

import re

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.devtools.fake_slack import BOT_ID, BOT_USER_ID, FakeSlack

SECTION = {"type": "section", "block_id": "summary", "text": {"type": "mrkdwn", "text": "*CR-17* reinstall host-42"}}


async def test_start_gives_loopback_root_and_api_url_with_trailing_slash(fake: FakeSlack) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", fake.url)
    assert fake.api_url == fake.url + "/api/"


async def test_auth_test_returns_the_bot_identity(client: AsyncWebClient, fake: FakeSlack) -> None:
    resp = await client.auth_test()
    assert resp["user_id"] == BOT_USER_ID
    assert resp["bot_id"] == BOT_ID
    assert resp["team_id"] == "T01ABCDE2F"
    assert resp["url"] == "https://acme.slack.com/"
    assert fake.calls_to("auth.test")[0].ok


async def test_wrong_token_is_invalid_auth_and_missing_token_is_not_authed(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as wrong:
        await AsyncWebClient(token="xoxb-wrong", base_url=fake.api_url).auth_test()
    assert wrong.value.response.status_code == 200
    assert wrong.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as missing:
        await AsyncWebClient(base_url=fake.api_url).auth_test()
    assert missing.value.response["error"] == "not_authed"
    assert [c.error for c in fake.errors()] == ["invalid_auth", "not_authed"]


async def test_form_body_with_token_field_is_accepted(fake: FakeSlack) -> None:
    blocks = '[{"type":"section","text":{"type":"mrkdwn","text":"from a form"}}]'
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            fake.api_url + "chat.postMessage",
            data={"token": fake.bot_token, "channel": "C01CHAN001", "text": "hi", "blocks": blocks},
        )
    assert resp.json()["ok"] is True
    call = fake.calls_to("chat.postMessage")[0]
    assert "token" not in call.body
    assert fake.messages("C01CHAN001")[0].blocks[0]["text"]["text"] == "from a form"


async def test_post_message_assigns_increasing_ts_and_stores_the_message(
    client: AsyncWebClient, fake: FakeSlack
) -> None:
    first = await client.chat_postMessage(channel="C01CHAN001", text="CR-17 for host-42", blocks=[SECTION])
    second = await client.chat_postMessage(channel="C01CHAN001", text="second")
    assert first["ts"] == "1718000000.000100"
    assert re.fullmatch(r"\d{10}\.\d{6}", second["ts"])
    assert float(second["ts"]) > float(first["ts"])
    assert first["channel"] == "C01CHAN001"
    assert first["message"]["blocks"][0]["block_id"] == "summary"
    assert first["message"]["bot_id"] == BOT_ID
    stored = fake.message("C01CHAN001", first["ts"])
    assert stored.text == "CR-17 for host-42"
    assert stored.blocks == [SECTION]
    assert [m.ts for m in fake.messages("C01CHAN001")] == [first["ts"], second["ts"]]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_post_message_without_text_or_blocks_is_no_text(client: AsyncWebClient, fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as exc:
        await client.chat_postMessage(channel="C01CHAN001")
    assert exc.value.response["error"] == "no_text"
    assert fake.messages() == []


async def test_post_message_to_a_user_lands_in_a_dm(client: AsyncWebClient, fake: FakeSlack) -> None:
    resp = await client.chat_postMessage(channel="U01REQ0001", text="your change succeeded")
    assert resp["channel"].startswith("D")
    assert fake.messages(resp["channel"])[0].text == "your change succeeded"


async def test_update_edits_in_place_and_keeps_history(client: AsyncWebClient, fake: FakeSlack) -> None:
    posted = await client.chat_postMessage(channel="C01CHAN001", text="pending", blocks=[SECTION])
    new_block = {"type": "section", "block_id": "summary", "text": {"type": "mrkdwn", "text": "running"}}
    updated = await client.chat_update(channel="C01CHAN001", ts=posted["ts"], text="running", blocks=[new_block])
    await client.chat_update(channel="C01CHAN001", ts=posted["ts"], text="succeeded")
    assert updated["ts"] == posted["ts"]
    assert updated["message"]["edited"]["user"] == BOT_ID
    message = fake.message("C01CHAN001", posted["ts"])
    assert message.text == "succeeded"
    assert message.blocks == [new_block]  # blocks are kept when an update omits them, as Slack does
    assert [v.text for v in message.history] == ["pending", "running"]
    assert message.history[0].blocks == [SECTION]
    assert len(fake.messages()) == 1


async def test_update_of_unknown_message_is_message_not_found(client: AsyncWebClient, fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as exc:
        await client.chat_update(channel="C01CHAN001", ts="1700000000.000001", text="x")
    assert exc.value.response["error"] == "message_not_found"
    assert fake.errors()[0].method == "chat.update"


async def test_thread_replies_and_permalinks(client: AsyncWebClient, fake: FakeSlack) -> None:
    parent = await client.chat_postMessage(channel="C01CHAN001", text="status")
    reply = await client.chat_postMessage(channel="C01CHAN001", text="stopping", thread_ts=parent["ts"])
    assert [m.text for m in fake.thread("C01CHAN001", parent["ts"])] == ["stopping"]

    top = await client.chat_getPermalink(channel="C01CHAN001", message_ts=parent["ts"])
    assert top["permalink"] == "https://acme.slack.com/archives/C01CHAN001/p1718000000000100"
    in_thread = await client.chat_getPermalink(channel="C01CHAN001", message_ts=reply["ts"])
    assert in_thread["permalink"] == (
        f"https://acme.slack.com/archives/C01CHAN001/p{reply['ts'].replace('.', '')}"
        f"?thread_ts={parent['ts']}&cid=C01CHAN001"
    )
    with pytest.raises(SlackApiError) as exc:
        await client.chat_getPermalink(channel="C01CHAN001", message_ts="1700000000.000001")
    assert exc.value.response["error"] == "message_not_found"


async def test_post_ephemeral_returns_message_ts(client: AsyncWebClient, fake: FakeSlack) -> None:
    resp = await client.chat_postEphemeral(channel="C01CHAN001", user="U01REQ0001", text="only you")
    assert re.fullmatch(r"\d{10}\.\d{6}", resp["message_ts"])
    assert fake.ephemerals("C01CHAN001")[0].ephemeral_user == "U01REQ0001"
    assert fake.messages() == []


async def test_usergroup_users_are_configurable(client: AsyncWebClient, fake: FakeSlack) -> None:
    fake.set_usergroup("S01GRP0001", ["U01APR0001", "W01APR0002"])
    resp = await client.usergroups_users_list(usergroup="S01GRP0001")
    assert resp["users"] == ["U01APR0001", "W01APR0002"]
    with pytest.raises(SlackApiError) as exc:
        await client.usergroups_users_list(usergroup="S09NOPE0009")
    assert exc.value.response["error"] == "no_such_subteam"


async def test_users_info_and_conversations_open(client: AsyncWebClient, fake: FakeSlack) -> None:
    bob = await client.users_info(user="U01APR0001")
    assert bob["user"]["id"] == "U01APR0001"
    assert bob["user"]["name"] == "bob"
    assert bob["user"]["is_bot"] is False
    fake.set_user("U01ZED0001", name="zed", tz="Europe/Berlin")
    assert (await client.users_info(user="U01ZED0001"))["user"]["tz"] == "Europe/Berlin"
    with pytest.raises(SlackApiError) as exc:
        await client.users_info(user="not-a-user")
    assert exc.value.response["error"] == "user_not_found"

    dm = await client.conversations_open(users="U01APR0001")
    assert re.fullmatch(r"D[A-Z0-9]+", dm["channel"]["id"])


async def test_other_methods_answer_ok_and_are_recorded(client: AsyncWebClient, fake: FakeSlack) -> None:
    resp = await client.api_call("reactions.add", json={"channel": "C01CHAN001", "name": "white_check_mark"})
    assert resp["ok"] is True
    assert fake.calls_to("reactions.add")[0].body == {"channel": "C01CHAN001", "name": "white_check_mark"}


async def test_raw_traffic_holds_every_body_and_query(client: AsyncWebClient, fake: FakeSlack) -> None:
    canary = "Canary-Pa55word-7f3e"
    await client.chat_postMessage(channel="C01CHAN001", text=f"leak {canary}")
    await client.users_info(user="U01APR0001")
    traffic = fake.raw_traffic()
    assert canary.encode() in traffic
    assert b"U01APR0001" in traffic  # GET query strings are captured too


async def test_call_repr_hides_headers_with_the_token(client: AsyncWebClient, fake: FakeSlack) -> None:
    await client.auth_test()
    call = fake.calls[0]
    assert fake.bot_token in call.headers["Authorization"]
    assert fake.bot_token not in repr(call)
