"""Signed request builders: signatures Slack's own verifier accepts, and payloads in Slack's shapes."""

import json
import re
import time
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import pytest
from slack_sdk.signature import SignatureVerifier

from sandbox.devtools import slack_requests as sr

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def payload_of(body: bytes) -> dict[str, Any]:
    (raw,) = parse_qs(body.decode())["payload"]
    return json.loads(raw)


MODAL_VIEW: dict[str, Any] = {
    "id": "V01VIEW001",
    "type": "modal",
    "hash": "1718000010.Ab3dEf7h",
    "callback_id": "changeos_modal",
    "private_metadata": '{"channel_id":"C01CHAN001"}',
    "state": {"values": {}},
    "blocks": [
        {
            "type": "input",
            "block_id": "mode_b",
            "dispatch_action": True,
            "label": {"type": "plain_text", "text": "Mode"},
            "element": {
                "type": "radio_buttons",
                "action_id": "mode",
                "options": [
                    {"text": {"type": "plain_text", "text": "Reinstall"}, "value": "reinstall"},
                    {"text": {"type": "plain_text", "text": "Upgrade"}, "value": "upgrade"},
                ],
                "initial_option": {"text": {"type": "plain_text", "text": "Reinstall"}, "value": "reinstall"},
            },
        },
        {
            "type": "input",
            "block_id": "host_b",
            "label": {"type": "plain_text", "text": "Host"},
            "element": {"type": "plain_text_input", "action_id": "host", "initial_value": "host-42"},
        },
        {
            "type": "input",
            "block_id": "notify_b",
            "optional": True,
            "label": {"type": "plain_text", "text": "Notify"},
            "element": {"type": "multi_conversations_select", "action_id": "notify"},
        },
        {"type": "section", "block_id": "info", "text": {"type": "mrkdwn", "text": "plan"}},
    ],
}


def test_sign_is_accepted_by_slack_sdk_verifier() -> None:
    body = sr.slash_command("host-42", response_url="http://127.0.0.1:1/response/k")
    headers = sr.sign(SECRET, body)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert not verifier.is_valid(body + b"x", headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert not SignatureVerifier("other").is_valid_request(body, headers)


def test_sign_with_an_old_timestamp_is_rejected_as_stale() -> None:
    body = b"command=%2Fchangeos"
    stale = sr.sign(SECRET, body, timestamp=int(time.time()) - 600)
    verifier = SignatureVerifier(SECRET)
    assert (
        verifier.generate_signature(timestamp=stale["X-Slack-Request-Timestamp"], body=body)
        == (stale["X-Slack-Signature"])
    )
    assert not verifier.is_valid_request(body, stale)


def test_slash_command_body_has_slacks_fields() -> None:
    body = sr.slash_command(
        "host-42 <#C01CHAN001|change-requests>", response_url="http://127.0.0.1:9/response/a", user_id="U01ZED0001"
    )
    fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
    assert fields["command"] == "/changeos"
    assert fields["text"] == "host-42 <#C01CHAN001|change-requests>"
    assert fields["user_id"] == "U01ZED0001"
    assert fields["team_id"] == "T01ABCDE2F"
    assert fields["channel_id"] == "C01CHAN001"
    assert fields["is_enterprise_install"] == "false"
    assert fields["response_url"] == "http://127.0.0.1:9/response/a"
    assert re.fullmatch(r"\d+\.\d+\.[0-9a-f]{32}", fields["trigger_id"])
    again = dict(parse_qsl(sr.slash_command("", response_url="u").decode(), keep_blank_values=True))
    assert again["trigger_id"] != fields["trigger_id"]
    assert again["text"] == ""


def test_block_actions_in_a_message_copies_the_clicked_button() -> None:
    message = {
        "type": "message",
        "ts": "1718000000.000100",
        "text": "CR-17",
        "blocks": [
            {
                "type": "actions",
                "block_id": "cr_actions:CR-17",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "cr_approve",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "value": "CR-17",
                    }
                ],
            }
        ],
    }
    body = sr.block_actions(action_id="cr_approve", message=message, response_url="http://127.0.0.1:9/response/b")
    payload = payload_of(body)
    assert payload["type"] == "block_actions"
    assert payload["container"] == {
        "type": "message",
        "message_ts": "1718000000.000100",
        "channel_id": "C01CHAN001",
        "is_ephemeral": False,
    }
    assert payload["channel"]["id"] == "C01CHAN001"
    assert payload["message"] == message
    (action,) = payload["actions"]
    assert action["action_id"] == "cr_approve"
    assert action["block_id"] == "cr_actions:CR-17"
    assert (action["type"], action["value"], action["style"]) == ("button", "CR-17", "primary")
    assert payload["user"]["id"] == "U01APR0001"
    assert payload["response_url"] == "http://127.0.0.1:9/response/b"


def test_block_actions_in_a_view_carries_full_state_and_selected_option() -> None:
    state = sr.state_from_view(MODAL_VIEW, {"mode_b": sr.radio_value("upgrade", "Upgrade")})
    body = sr.block_actions(
        action_id="mode", value="upgrade", container="view", view=MODAL_VIEW, user_id="U01REQ0001", state_values=state
    )
    payload = payload_of(body)
    assert payload["container"] == {"type": "view", "view_id": "V01VIEW001"}
    assert "response_url" not in payload
    assert "channel" not in payload
    assert payload["view"]["state"]["values"] == state
    assert payload["view"]["hash"] == MODAL_VIEW["hash"]
    (action,) = payload["actions"]
    assert action["type"] == "radio_buttons"
    assert action["selected_option"]["value"] == "upgrade"
    assert action["block_id"] == "mode_b"


def test_block_actions_refuses_unknown_actions_and_missing_context() -> None:
    with pytest.raises(ValueError, match="no element with action_id 'nope'"):
        sr.block_actions(action_id="nope", container="view", view=MODAL_VIEW)
    with pytest.raises(ValueError, match="needs message="):
        sr.block_actions(action_id="cr_approve", response_url="u")


def test_state_from_view_keeps_initial_values_and_applies_overrides() -> None:
    state = sr.state_from_view(MODAL_VIEW, {"notify_b": sr.multi_conversations_value(["C01CHAN001"])})
    assert state == {
        "mode_b": {
            "mode": {
                "type": "radio_buttons",
                "selected_option": {"text": {"type": "plain_text", "text": "Reinstall"}, "value": "reinstall"},
            }
        },
        "host_b": {"host": {"type": "plain_text_input", "value": "host-42"}},
        "notify_b": {"notify": {"type": "multi_conversations_select", "selected_conversations": ["C01CHAN001"]}},
    }
    untouched = sr.state_from_view(MODAL_VIEW, {})
    assert untouched["notify_b"]["notify"]["selected_conversations"] == []


def test_state_from_view_rejects_overrides_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="'info' holds no input"):
        sr.state_from_view(MODAL_VIEW, {"info": sr.text_value("x")})
    with pytest.raises(ValueError, match="needs 'value'"):
        sr.state_from_view(MODAL_VIEW, {"host_b": sr.select_value("x")})


def test_view_submission_shape() -> None:
    values = sr.state_from_view(MODAL_VIEW, {"host_b": sr.text_value("host-7")})
    payload = payload_of(sr.view_submission(view=MODAL_VIEW, values=values))
    assert payload["type"] == "view_submission"
    assert payload["user"]["id"] == "U01REQ0001"
    assert payload["team"]["id"] == "T01ABCDE2F"
    assert payload["view"]["type"] == "modal"
    assert payload["view"]["callback_id"] == "changeos_modal"
    assert payload["view"]["private_metadata"] == MODAL_VIEW["private_metadata"]
    assert payload["view"]["state"]["values"]["host_b"]["host"]["value"] == "host-7"
    assert payload["response_urls"] == []
    assert MODAL_VIEW["state"] == {"values": {}}  # the caller's view is not mutated


def test_value_helpers() -> None:
    assert sr.text_value(None) == {"type": "plain_text_input", "value": None}
    assert sr.select_value("img-1", "Ubuntu", kind="external_select")["selected_option"]["text"]["text"] == "Ubuntu"
    assert sr.select_value(None)["selected_option"] is None
    assert sr.checkboxes_value(["keep_data", ("stop", "Stop first")])["selected_options"][1] == {
        "text": {"type": "plain_text", "text": "Stop first", "emoji": True},
        "value": "stop",
    }
    assert sr.conversations_value("C01CHAN001") == {
        "type": "conversations_select",
        "selected_conversation": "C01CHAN001",
    }
