"""`ecsbot run` start-up as an operator meets it: a bad setting or a busy port is one sentence and exit code 2."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings, problems
from bot.slack.app import BOLT_ENVIRONMENT, build_bolt_app
from tests.support.bot_process import run_bot

BOT_TOKEN = "xoxb-1234567890-0987654321-StartUpCanaryToken"
POLICY = """
approvals_channel = "C01APPROVE1"

[[rules]]
name = "all"
servers = ["*"]
requesters = ["U01REQ0001"]
approvers = ["U01APR0001"]
images = ["*"]
"""


def good_env(workdir: Path) -> dict[str, str]:
    """Every setting the bot needs; nothing reachable behind them (the tests end before any call)."""
    policy = workdir / "policy.toml"
    policy.write_text(POLICY)
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": "startup-signing-secret-000000",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "SLACK_CLIENT_ID": "1234567890.0987654321",
        "SLACK_CLIENT_SECRET": "startup-client-secret-000000",
        "HUAWEICLOUD_SDK_AK": "STARTUPAK00000000000",
        "HUAWEICLOUD_SDK_SK": "startup-secret-key-00000000000000000000",
        "HUAWEICLOUD_PROJECT_ID": "0605767ef600d5762f23c013c6e7ad23",
        "ECS_ENDPOINT": "http://127.0.0.1:9",
        "IMS_ENDPOINT": "http://127.0.0.1:9",
        "EVS_ENDPOINT": "http://127.0.0.1:9",
        "ECSBOT_DB": str(workdir / "ecsbot.db"),
        "ECSBOT_POLICY": str(policy),
    }


def one_error(text: str) -> str:
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert len(errors) == 1, text
    assert "Traceback" not in text and BOT_TOKEN not in text
    return errors[0]


async def test_a_bad_setting_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    code, text = await run_bot(tmp_path, {**good_env(tmp_path), "ECSBOT_POLL_INTERVAL": "abc"}, port=0)
    assert code == 2, text
    (line,) = text.strip().splitlines()  # the CLI's one sentence, not a log record
    assert "Traceback" not in text and BOT_TOKEN not in text
    assert (
        line.startswith("ecsbot: cannot start: ECSBOT_POLL_INTERVAL: Input should be a valid number")
        and "ecsbot check" in line
    )
    assert "abc" not in line, "the value is never echoed (it may be a secret)"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("ECSBOT_ECS_RATE", "-1", "ECSBOT_ECS_RATE: Input should be greater than 0."),
        ("HUAWEICLOUD_CREDENTIALS", "vault", "HUAWEICLOUD_CREDENTIALS: Input should be 'env' or 'agency'."),
        ("ECSBOT_PASSWORD_LINK_MINUTES", "60", "is longer than ECSBOT_DRAFT_PASSWORD_MINUTES"),
    ],
)
def test_setting_errors_name_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **{name: value})  # type: ignore[call-arg]
    (problem,) = problems(caught.value)
    assert says in problem and "-1" not in problem and "vault" not in problem


async def test_a_port_in_use_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, text = await run_bot(tmp_path, good_env(tmp_path), port=port)
    assert code == 2, text
    line = one_error(text)
    assert f"port {port} is in use: stop the other process or set PORT" in line, line
    assert "will be unused" not in text, "Bolt never sees the token beside our client"


async def test_bolt_does_not_read_the_slack_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With real tokens in the environment, Bolt neither warns that its token goes unused nor turns on its own OAuth
    installation flow (SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are for Sign in with Slack); the environment is left
    as it was."""
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
        monkeypatch.setenv(name, f"{name.lower()}-value-0000")
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    before = {name: os.environ.get(name) for name in BOLT_ENVIRONMENT}
    caplog.set_level(logging.DEBUG, logger="slack_bolt")
    app = build_bolt_app(AsyncWebClient(token=BOT_TOKEN, base_url="http://127.0.0.1:9/api/"))
    assert app.oauth_flow is None and app.installation_store is None
    assert app.client.token == BOT_TOKEN
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert {name: os.environ.get(name) for name in BOLT_ENVIRONMENT} == before
