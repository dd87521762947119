"""The Slack edge's pure parts: signature and timestamp checks on raw bytes, the body parser, the shape check."""

from __future__ import annotations

import contextlib
import time
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.slack.edge import MalformedRequest, _SlashCommand, check_shape, is_plain_command, parse_body, verify
from sandbox.devtools import slack_requests as sr

SECRET = "edge-secret-0000"
NOW = 1_700_000_000
FORM = sr.FORM


def signed(body: bytes, ts: int | str = NOW) -> dict[str, str]:
    headers = sr.sign(SECRET, body, int(ts) if str(ts).isdigit() else NOW)
    headers["X-Slack-Request-Timestamp"] = str(ts)
    return headers


def test_a_good_signature_passes() -> None:
    body = b"command=%2Fchangeos&text=x"
    assert verify(body, signed(body), SECRET, now=NOW) is None


@pytest.mark.parametrize("ts", ["", "abc", "1e9", "-1", " 1700000000", "1700000000.5", "9" * 40])
def test_malformed_timestamps_are_refused_without_int(ts: str) -> None:
    body = b"x=1"
    headers = signed(body)
    headers["X-Slack-Request-Timestamp"] = ts
    assert verify(body, headers, SECRET, now=NOW) == "missing or malformed X-Slack-Request-Timestamp"


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_a_timestamp_outside_five_minutes_is_refused(skew: int) -> None:
    body = b"x=1"
    assert verify(body, signed(body, NOW + skew), SECRET, now=NOW) == "timestamp outside the 5-minute window"


def test_the_signature_covers_the_raw_bytes() -> None:
    body = b"text=hello"
    headers = signed(body)
    assert verify(body + b" ", headers, SECRET, now=NOW) == "signature mismatch"
    assert verify(body, {**headers, "X-Slack-Signature": "v0=" + "0" * 64}, SECRET, now=NOW) == "signature mismatch"
    assert verify(body, {**headers, "X-Slack-Signature": "v1=abc"}, SECRET, now=NOW).startswith("missing or malformed")
    assert verify(body, {}, SECRET, now=NOW).startswith("missing or malformed")


def test_non_utf8_bytes_are_checked_not_decoded_first() -> None:
    body = b"\xff\xfe\x00payload"
    assert verify(body, signed(body), SECRET, now=NOW) is None  # signed garbage is still signed...
    with pytest.raises(MalformedRequest, match="not UTF-8"):
        parse_body(body, FORM)  # ...and then refused by the parser, politely


def test_a_command_that_says_payload_stays_a_command() -> None:
    body = sr.slash_command("web-01 --reason payload rollout", response_url="https://hooks.example/x")
    parsed = parse_body(body, FORM)
    assert parsed["command"] == "/changeos"
    assert parsed["text"] == "web-01 --reason payload rollout"


def test_an_interactive_payload_is_its_json_object() -> None:
    body = sr.interaction_body({"type": "block_actions", "a": 1})
    assert parse_body(body, FORM) == {"type": "block_actions", "a": 1}


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"payload=not-json", FORM, "not valid JSON"),
        (b"payload=%5B%5D", FORM, "not a JSON object"),
        (b"{", "application/json", "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "application/json", "not valid JSON|not a JSON object"),
        (("payload=" + "%5B" * 5000).encode(), FORM, "not valid JSON"),
        (b"a=1&a=2", FORM, "repeated"),
        (b"a=1&&&=", FORM, "not url-encoded"),
    ],
)
def test_malformed_bodies_raise_one_clear_error(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(MalformedRequest, match=message):
        parse_body(body, content_type)


def test_deep_json_objects_do_not_recurse_to_death() -> None:
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    with pytest.raises(MalformedRequest):
        parse_body(urlencode({"payload": deep}).encode(), FORM)


def _actions(**changes: object) -> dict:
    body = {
        "type": "block_actions",
        "user": {"id": "U1"},
        "trigger_id": "1.2.3",
        "actions": [{"action_id": "cr_approve", "block_id": "b", "type": "button", "value": "CR-1"}],
        "channel": {"id": "C1"},
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "changes",
    [
        {"actions": []},
        {"actions": "cr_approve"},
        {"actions": ["cr_approve"]},
        {"actions": [{"block_id": "b"}]},
        {"actions": [{"action_id": 5, "type": "button"}]},
        {"user": "U1"},
        {"user": {}},
        {"trigger_id": None},
        {"view": "V1"},
        {"view": {"id": "V1"}},  # no type
        {"view": {"id": "V1", "type": "modal", "state": {"values": []}}},
        {"view": {"id": "V1", "type": "modal", "state": {"values": {"b": {"a": "x"}}}}},
        {"view": {"id": "V1", "type": "modal", "private_metadata": {"d": 1}}},
        {"channel": "C1"},
        {"message": {"ts": 5}},
        {"type": "nonsense"},
        {"type": None},
    ],
)
def test_wrongly_shaped_interactions_are_refused_with_whom_to_tell(changes: dict) -> None:
    with pytest.raises(MalformedRequest) as info:
        check_shape(_actions(**changes))
    assert len(str(info.value)) <= 200
    if isinstance(changes.get("user"), dict) or "user" not in changes:
        assert info.value.user in ("U1", None)


def test_whom_to_tell_is_read_loosely() -> None:
    with pytest.raises(MalformedRequest) as info:
        check_shape(_actions(actions=[]))
    assert (info.value.user, info.value.channel, info.value.inline) == ("U1", "C1", False)


def test_a_well_shaped_interaction_passes() -> None:
    check_shape(_actions())
    check_shape(
        {
            "type": "view_submission",
            "user": {"id": "U1"},
            "view": {"id": "V1", "type": "modal", "callback_id": "c", "state": {"values": {"b": {"a": {}}}}},
        }
    )
    check_shape({"type": "block_suggestion", "user": {"id": "U1"}, "action_id": "a", "block_id": "b", "value": ""})


def test_slash_commands_need_their_fields() -> None:
    good = parse_body(sr.slash_command("x", response_url="https://hooks.example/x"), FORM)
    check_shape(good)
    for field in ("user_id", "channel_id", "trigger_id"):
        with pytest.raises(MalformedRequest) as info:
            check_shape({k: v for k, v in good.items() if k != field})
        assert info.value.inline
    with pytest.raises(MalformedRequest):
        check_shape({**good, "command": "changeos"})


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)
_keys = st.sampled_from(["type", "user", "actions", "view", "trigger_id", "channel", "action_id", "block_id", "value"])


@settings(derandomize=True, max_examples=300)
@given(st.dictionaries(_keys, _json, max_size=6), st.sampled_from(["block_actions", "view_submission", None]))
def test_check_shape_raises_nothing_but_malformed(body: dict, kind: str | None) -> None:
    if kind is not None:
        body = {**body, "type": kind}
    try:
        check_shape(body)
    except MalformedRequest as exc:
        assert 0 < len(str(exc)) <= 200


@settings(derandomize=True, max_examples=300)
@given(st.binary(max_size=300))
def test_parse_body_raises_nothing_but_malformed(raw: bytes) -> None:
    for content_type in (FORM, "application/json"):
        with contextlib.suppress(MalformedRequest):
            assert isinstance(parse_body(raw, content_type), dict)


def test_verify_uses_the_wall_clock_by_default() -> None:
    body = b"x=1"
    now = int(time.time())
    assert verify(body, sr.sign(SECRET, body, now), SECRET) is None


def test_slacks_own_command_form_takes_the_cheap_check() -> None:
    good = parse_body(sr.slash_command("web-01 --key k", response_url="https://hooks.example/x"), FORM)
    assert is_plain_command(good)
    assert not is_plain_command({**good, "team": {"id": "T1"}})  # an odd shape: the model decides


_command_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=4),
    st.text(min_size=250, max_size=260),
    st.sampled_from(["/changeos", "/x", "/a b", "changeos", "/\u00a0", "/\x1c", "/" + "c" * 33, "U1", ""]),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
_command_keys = st.sampled_from(
    [
        *("command", "user_id", "channel_id", "trigger_id", "text", "team_id", "response_url", "is_enterprise_install"),
        *("team", "channel", "message", "event", "authorizations", "enterprise"),
    ]
)


@settings(derandomize=True, max_examples=1500)
@given(st.dictionaries(_command_keys, _command_values, max_size=10))
def test_the_cheap_command_check_never_passes_what_the_model_refuses(fields: dict) -> None:
    body = {"command": "/changeos", "user_id": "U1", "channel_id": "C1", "trigger_id": "t.1", **fields}
    if is_plain_command(body):
        _SlashCommand.model_validate(body)  # raises if the cheap check let through a shape the model refuses
