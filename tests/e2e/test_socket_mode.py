"""Socket Mode, driven over a websocket as Slack drives it: the same edge as HTTP, reconnects, and a bot that tracks
its jobs whether or not Slack is there."""

from __future__ import annotations

import asyncio
import logging
import signal

import pytest

from bot.domain.request import RequestState
from bot.slack.socket_mode import Backoff
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.stack import COMMAND_CHANNEL, REQUESTER, LocalStack, StackOptions
from tests.support.bot_process import start_bot
from tests.support.requests import approved_request
from tests.support.sim_ids import DB_01

from .conftest import wait_state

pytestmark = pytest.mark.timeout(60)



@pytest.fixture
async def socket_stack():
    async with LocalStack(StackOptions(socket_mode=True)) as stack:
        await stack.slack.socket_mode.wait_connected()
        yield stack


def command_payload(text: str, *, trigger_id: str | None = None) -> dict:
    """A slash command as Socket Mode carries it: the same fields as the HTTP form, as a JSON object."""
    where = {"user_id": REQUESTER, "channel_id": COMMAND_CHANNEL}
    return sr.slash_command_fields(text, response_url="https://hooks.example/c/x", trigger_id=trigger_id, **where)


async def test_a_command_is_acked_with_its_answer(socket_stack: LocalStack) -> None:
    fake = socket_stack.slack.socket_mode
    envelope = await fake.send(command_payload("help"), kind="slash_commands")
    ack = await fake.wait_ack(envelope)
    assert ack["payload"]["response_type"] == "ephemeral"
    assert "/changeos" in ack["payload"]["text"]


async def test_a_command_that_says_payload_opens_the_form(socket_stack: LocalStack) -> None:
    fake = socket_stack.slack.socket_mode
    trigger = sr.new_trigger_id()
    text = "web-01 --reason payload rollout"
    envelope = await fake.send(command_payload(text, trigger_id=trigger), kind="slash_commands")
    ack = await fake.wait_ack(envelope)
    assert "payload" not in ack or not ack["payload"]  # an empty ack: the form opens instead
    await socket_stack.slack.wait_for("views.open", lambda c: c.body.get("trigger_id") == trigger)


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_actions", "user": {"id": REQUESTER}, "trigger_id": "1.2.3", "actions": "cr_approve"},
        {"type": "block_actions", "user": {"id": REQUESTER}, "trigger_id": "1.2.3", "actions": []},
        {"type": "view_submission", "user": {"id": REQUESTER}, "view": {"id": "V1"}},
        "not an object",
        [1, 2],
    ],
)
async def test_malformed_envelopes_are_acked_without_a_traceback(
    socket_stack: LocalStack, caplog: pytest.LogCaptureFixture, payload: object
) -> None:
    fake = socket_stack.slack.socket_mode
    envelope = await fake.send(payload)
    ack = await fake.wait_ack(envelope)
    assert ack["envelope_id"] == envelope
    assert "Traceback" not in caplog.text and all(r.exc_info is None for r in caplog.records)


async def test_a_frame_that_is_not_json_costs_one_line(
    socket_stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = socket_stack.slack.socket_mode
    await fake.send_raw("{not json")
    await fake.send_raw('{"no": "envelope id"}')
    envelope = await fake.send(command_payload("help"), kind="slash_commands")
    await fake.wait_ack(envelope)  # still serving
    lines = [r for r in caplog.records if r.name == "bot.slack.socket_mode" and r.levelno >= logging.WARNING]
    assert len(lines) == 2 and all(r.exc_info is None and "\n" not in r.getMessage() for r in lines)


@pytest.mark.parametrize("how", ["disconnect", "drop"])
async def test_reconnects_are_logged_once_and_serve_again(
    socket_stack: LocalStack, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    caplog.set_level(logging.INFO)
    fake = socket_stack.slack.socket_mode
    if how == "disconnect":
        await fake.disconnect("refresh_requested")
    else:
        await fake.drop()
    await fake.wait_connected(count=2)
    envelope = await fake.send(command_payload("help"), kind="slash_commands")
    assert (await fake.wait_ack(envelope))["payload"]["response_type"] == "ephemeral"
    reconnects = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reconnected to Slack")]
    assert len(reconnects) == 1, reconnects
    assert ("refresh_requested" in reconnects[0]) == (how == "disconnect")


async def test_the_tracker_runs_while_slack_is_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    stack = LocalStack(StackOptions(socket_mode=True))
    stack.slack.socket_mode.available = False
    async with stack:
        assert stack.rt is not None and stack.served is not None and stack.served.socket is not None
        stack.served.socket._backoff = Backoff(first=0.05, cap=0.2)
        request = await stack.rt.store.create(approved_request(DB_01, "db-01"), actor="test")
        stack.rt.tracker.wake()
        await wait_state(stack, request.id, RequestState.SUCCEEDED)
        assert stack.slack.socket_mode.open_calls >= 1 and not stack.served.socket.connected
        warnings = [r.getMessage() for r in caplog.records if r.name == "bot.slack.socket_mode"]
        assert warnings and all("retrying in" in w and "Jobs are still tracked" in w for w in warnings)
        stack.slack.socket_mode.available = True  # Slack comes back: the bot connects by itself
        await stack.slack.socket_mode.wait_connected()


async def _bot_process(stack: LocalStack, env_changes: dict[str, str]) -> asyncio.subprocess.Process:
    return await start_bot(stack.workdir, {**stack.settings().to_env(), **env_changes})


async def test_a_bad_app_token_is_one_sentence_and_exit_code_2() -> None:
    async with LocalStack(StackOptions(socket_mode=True)) as stack:
        await stack.stop_bot()  # the subprocess is the bot here
        proc = await _bot_process(stack, {"SLACK_APP_TOKEN": "xapp-1-A01APP0001-0-wrong"})
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        text = out.decode()
        assert proc.returncode == 2, text
        errors = [line for line in text.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "Slack refused SLACK_APP_TOKEN (invalid_auth)" in errors[0], text
        assert "Traceback" not in text
        assert "xapp-1-A01APP0001-0-wrong" not in text


async def test_sigterm_closes_the_socket_with_a_close_frame() -> None:
    async with LocalStack(StackOptions(socket_mode=True)) as stack:
        await stack.stop_bot()
        proc = await _bot_process(stack, {})
        fake = stack.slack.socket_mode
        record = await fake.wait_connected(timeout=20)
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        text = out.decode()
        await fake.wait_closed(record)
        assert record.close_code == 1000 and record.closed_by_bot, (record.close_code, text)
        assert proc.returncode == 0, text
        for noise in ("Unclosed client session", "Event loop is closed", "Traceback"):
            assert noise not in text, text
