"""The HTTP edge, driven from outside as Slack (and the rest of the internet) would: verify, then parse, never 5xx."""

from __future__ import annotations

import json
import logging
import secrets

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.command import ChangeCommand, parse_command
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.stack import COMMAND_CHANNEL, REQUESTER, SIGNING_SECRET, LocalStack

pytestmark = pytest.mark.timeout(90)

FORM = sr.FORM
MALFORMED_BODIES = [
    ("form payload that is not JSON", b"payload=%7Bnot-json", FORM),
    ("payload=[]", b"payload=%5B%5D", FORM),
    ("body {", b"{", "application/json"),
    ("non-UTF-8 bytes", b"\xff\xfe\xfdpayload=\x80", FORM),
    ("JSON nested 5,000 deep", b"[" * 5000 + b"]" * 5000, "application/json"),
    ("form payload nested 5,000 deep", ("payload=" + "%5B" * 5000 + "%5D" * 5000).encode(), FORM),
]


async def post(stack: LocalStack, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(stack.url + "/slack/events", content=body, headers=headers)


def signed(body: bytes, content_type: str = FORM, **extra: str) -> dict[str, str]:
    return {**sr.sign(SIGNING_SECRET, body, content_type=content_type), **extra}


def edge_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("case", "body", "content_type"), MALFORMED_BODIES)
async def test_a_bad_signature_is_refused_before_the_body_is_read(
    stack: LocalStack, caplog: pytest.LogCaptureFixture, case: str, body: bytes, content_type: str
) -> None:
    caplog.set_level(logging.INFO)
    headers = signed(body, content_type)
    headers["X-Slack-Signature"] = "v0=" + "0" * 64
    response = await post(stack, body, headers)
    assert response.status_code == 401, case
    records = edge_records(caplog)
    assert len(records) <= 1 and all(r.exc_info is None for r in records), [r.getMessage() for r in records]
    assert all(len(r.getMessage()) < 200 for r in records)
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("timestamp", ["", "abc", "1e9", "0x10", "-5"])
async def test_a_malformed_timestamp_is_a_401_not_a_500(
    stack: LocalStack, caplog: pytest.LogCaptureFixture, timestamp: str
) -> None:
    body = sr.slash_command("help", response_url="https://hooks.example/x")
    headers = signed(body)
    headers["X-Slack-Request-Timestamp"] = timestamp
    response = await post(stack, body, headers)
    assert response.status_code == 401
    assert "Traceback" not in caplog.text


async def test_a_flood_of_unsigned_requests_costs_at_most_one_line_each(
    stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(50):
        response = await post(stack, b"payload=%7B", {"Content-Type": FORM, "X-Slack-Signature": "v0=00"})
        assert response.status_code == 401
    assert 1 <= len(edge_records(caplog)) <= 50
    assert sum(len(r.getMessage()) for r in caplog.records) < 50 * 200


@pytest.mark.parametrize(("case", "body", "content_type"), MALFORMED_BODIES)
async def test_signed_malformed_bodies_get_a_400(
    stack: LocalStack, caplog: pytest.LogCaptureFixture, case: str, body: bytes, content_type: str
) -> None:
    response = await post(stack, body, signed(body, content_type))
    assert response.status_code == 400, (case, response.text)
    assert "Traceback" not in caplog.text


def _click(**changes: object) -> dict:
    body = {
        "type": "block_actions",
        "user": {"id": REQUESTER, "username": "alice", "team_id": sr.TEAM_ID},
        "team": {"id": sr.TEAM_ID, "domain": "acme"},
        "api_app_id": sr.APP_ID,
        "trigger_id": sr.new_trigger_id(),
        "container": {"type": "message", "message_ts": "1718000000.000100", "channel_id": COMMAND_CHANNEL},
        "channel": {"id": COMMAND_CHANNEL, "name": "change-requests"},
        "message": {"ts": "1718000000.000100", "text": "card"},
        "actions": [
            {"action_id": "cr_approve", "block_id": "cr_actions:CR-AAAAAA", "type": "button", "value": "CR-AAAAAA"}
        ],
    }
    body.update(changes)
    return body


def _view(**changes: object) -> dict:
    view = {
        "id": "V01VIEW001",
        "type": "modal",
        "callback_id": "changeos_modal",
        "private_metadata": "{}",
        "state": {"values": {}},
        "hash": "1.a",
        "blocks": [],
    }
    view.update(changes)
    return view


def _submission(**changes: object) -> dict:
    body = {"type": "view_submission", "user": {"id": REQUESTER}, "team": {"id": sr.TEAM_ID}, "view": _view()}
    body.update(changes)
    return body


# Each of these reached a listener or a Bolt matcher and ended in a 500 before the edge checked shapes.
MALFORMED_PAYLOADS: list[tuple[str, object]] = [
    ("payload is a string", "block_actions"),
    ("payload is a number", 5),
    ("payload is null", None),
    ("payload is a list of objects", [{"type": "block_actions"}]),
    ("no type", {k: v for k, v in _click().items() if k != "type"}),
    ("unknown type", _click(type="workflow_step_edit")),
    ("actions empty", _click(actions=[])),
    ("actions a string", _click(actions="cr_approve")),
    ("actions a list of strings", _click(actions=["cr_approve"])),
    ("action without action_id", _click(actions=[{"type": "button", "value": "CR-AAAAAA"}])),
    ("action_id a number", _click(actions=[{"type": "button", "action_id": 7}])),
    ("actions an object", _click(actions={"action_id": "cr_approve"})),
    ("user a string", _click(user=REQUESTER)),
    ("user without id", _click(user={"name": "alice"})),
    ("no trigger_id", {k: v for k, v in _click().items() if k != "trigger_id"}),
    ("channel a string", _click(channel=COMMAND_CHANNEL)),
    ("message ts a number", _click(message={"ts": 1.5})),
    ("view a string", _click(view="V01VIEW001")),
    ("view without type", _submission(view={k: v for k, v in _view().items() if k != "type"})),
    ("view without id", _submission(view={k: v for k, v in _view().items() if k != "id"})),
    ("view state values a list", _submission(view=_view(state={"values": []}))),
    ("view state values wrong depth", _submission(view=_view(state={"values": {"b": {"a": "x"}}}))),
    ("private_metadata an object", _submission(view=_view(private_metadata={"d": "x"}))),
    ("blocks a string", _submission(view=_view(blocks="none"))),
    ("submission without view", {"type": "view_submission", "user": {"id": REQUESTER}}),
    ("submission without user", {"type": "view_submission", "view": _view()}),
    ("view_closed without view", {"type": "view_closed", "user": {"id": REQUESTER}}),
    ("suggestion without value", {"type": "block_suggestion", "user": {"id": REQUESTER}, "action_id": "a"}),
    ("a submission's channel a bool (Bolt's context reader)", _submission(channel=True)),
    ("team a list", _click(team=[1])),
    ("authorizations a string", _click(authorizations="x")),
    ("slash command without user", {"command": "/changeos", "channel_id": COMMAND_CHANNEL, "trigger_id": "1.2.3"}),
]


@pytest.mark.parametrize(("case", "payload"), MALFORMED_PAYLOADS, ids=[c for c, _ in MALFORMED_PAYLOADS])
async def test_signed_malformed_payloads_are_answered_never_500(
    stack: LocalStack, caplog: pytest.LogCaptureFixture, case: str, payload: object
) -> None:
    body = sr.interaction_body(payload)
    response = await post(stack, body, signed(body))
    assert response.status_code in (200, 400), (case, response.status_code, response.text)
    assert "Traceback" not in caplog.text, case


async def test_a_malformed_click_tells_the_person_who_clicked(stack: LocalStack) -> None:
    body = sr.interaction_body(_click(actions="cr_approve"))
    response = await post(stack, body, signed(body))
    assert response.status_code == 400
    ephemeral = await stack.slack.wait_for("chat.postEphemeral", lambda c: c.body.get("user") == REQUESTER)
    assert ephemeral.body["channel"] == COMMAND_CHANNEL
    assert "could not read" in ephemeral.body["text"] and "nothing was done" in ephemeral.body["text"]


async def test_a_malformed_json_command_is_answered_ephemerally(stack: LocalStack) -> None:
    body = json.dumps({"command": "/changeos", "user_id": REQUESTER, "channel_id": COMMAND_CHANNEL}).encode()
    response = await post(stack, body, signed(body, "application/json"))
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral"
    assert "could not read" in response.json()["text"]


async def test_a_command_whose_text_says_payload_opens_the_form(stack: LocalStack) -> None:
    response = await stack.command("web-01 --reason payload rollout")
    assert response.status_code == 200, response.text
    view = await stack.plan_view()
    assert view["type"] == "modal"
    reasons = [b for b in view["blocks"] if b.get("block_id") == "reason_b"]
    assert reasons and reasons[0]["element"].get("initial_value") == "payload rollout"


async def test_another_slash_command_gets_a_clear_answer_not_dispatch_failed(stack: LocalStack) -> None:
    body = sr.slash_command("hello", response_url="https://hooks.example/x", command="/deploy")
    response = await post(stack, body, signed(body))
    assert response.status_code == 200
    assert "only answers /changeos" in response.json()["text"]


async def test_ssl_check_is_answered(stack: LocalStack) -> None:
    body = b"ssl_check=1&token=abc"
    response = await post(stack, body, signed(body))
    assert response.status_code == 200


async def test_an_oversized_body_is_refused_unread(stack: LocalStack) -> None:
    body = b"x=" + b"a" * (1024 * 1024 + 10)
    response = await post(stack, body, signed(body))
    assert response.status_code == 413


WORDS = ["web-01", "payload", "--reason", "--key", "ops-key", "--ticket", "INC-1", "--stop", "soft", "ubuntu-22.04"]
command_texts = st.one_of(
    st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join),
    st.text(max_size=60),
    st.text(alphabet="<>&\"'#@|=-payload ", max_size=40),
)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=command_texts)
async def test_fuzzed_commands_are_never_lost(stack: LocalStack, text: str) -> None:
    trigger = sr.new_trigger_id()
    told_before = len(stack.slack.calls_to("chat.postEphemeral"))
    body = sr.slash_command(text, response_url=stack.slack.response_url(secrets.token_hex(6)), trigger_id=trigger)
    response = await post(stack, body, signed(body))
    assert response.status_code == 200, (text, response.status_code, response.text)
    if response.text:
        answer = response.json()
        assert answer.get("response_type") == "ephemeral" and answer.get("text"), text
    if isinstance(parse_command(text), ChangeCommand) and not response.text:
        # Acked empty: the form must open on this very trigger, or the person must be told why not.
        await stack.slack.wait_until(
            lambda: any(c.body.get("trigger_id") == trigger for c in stack.slack.calls_to("views.open"))
            or any(c.body.get("user") == REQUESTER for c in stack.slack.calls_to("chat.postEphemeral")[told_before:]),
            timeout=10,
            what=f"the form for {text!r}",
        )


payload_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.sampled_from(["click", "submission"]),
    changes=st.dictionaries(
        st.sampled_from(["type", "user", "actions", "view", "trigger_id", "channel", "message", "container"]),
        payload_values,
        max_size=3,
    ),
)
async def test_fuzzed_payloads_never_get_a_5xx(stack: LocalStack, base: str, changes: dict) -> None:
    payload = (_click if base == "click" else _submission)(**changes)
    body = sr.interaction_body(payload)
    response = await post(stack, body, signed(body))
    assert response.status_code in (200, 400), (payload, response.status_code, response.text)
