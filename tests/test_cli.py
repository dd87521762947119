"""`ecsbot` as a person runs it, in a subprocess: every start-up problem is one sentence and exit code 2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.secretbox import SecretBox
from tests.support.bot_process import ecsbot


def one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


STARTUP_ERRORS = {
    "log level": (
        {"ECSBOT_LOG_LEVEL": "LOUD"},
        "ecsbot: cannot start: ECSBOT_LOG_LEVEL is 'LOUD', which is not a log level: use one of DEBUG, INFO, "
        "WARNING, ERROR, CRITICAL. Run `ecsbot check` to see every setting explained.",
    ),
    "port": (
        {"PORT": "abc"},
        "ecsbot: cannot start: PORT is 'abc', not a port number: set it to a whole number from 1 to 65535.",
    ),
    "endpoint with a path": (
        {"ECS_ENDPOINT": "https://ecs.example.com/v1/"},
        "ecsbot: cannot start: ECS_ENDPOINT is https://ecs.example.com/v1/, which has a path (/v1/): set only the "
        "scheme and host, https://ecs.example.com, because the bot adds /v1/{project_id}/… itself. Run `ecsbot "
        "check` to see every setting explained.",
    ),
    "secret file missing": (
        {"SLACK_BOT_TOKEN_FILE": "/nonexistent-ecsbot/token"},
        "ecsbot: cannot start: SLACK_BOT_TOKEN_FILE names /nonexistent-ecsbot/token, which does not exist: fix the "
        "path or mount the secret there. Run `ecsbot check` to see every setting explained.",
    ),
    "secret and file both set": (
        {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_BOT_TOKEN_FILE": "/etc/hostname"},
        "ecsbot: cannot start: SLACK_BOT_TOKEN and SLACK_BOT_TOKEN_FILE are both set: keep one of the two. Run "
        "`ecsbot check` to see every setting explained.",
    ),
}


@pytest.mark.parametrize("case", list(STARTUP_ERRORS))
def test_run_explains_a_bad_setting_in_one_sentence(tmp_path: Path, case: str) -> None:
    env, sentence = STARTUP_ERRORS[case]
    assert one_sentence(ecsbot(tmp_path, "run", **env)) == sentence


def test_run_refuses_a_port_option_that_is_not_a_number(tmp_path: Path) -> None:
    result = ecsbot(tmp_path, "run", "--port", "abc")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("argument --port: 'abc' is not a port number: give one from 1 to 65535.")


def test_check_names_the_log_level_too(tmp_path: Path) -> None:
    result = ecsbot(tmp_path, "check", ECSBOT_LOG_LEVEL="LOUD")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "⛔ ECSBOT_LOG_LEVEL is 'LOUD', which is not a log level" in result.stdout


def test_gen_key_prints_a_key_the_bot_accepts(tmp_path: Path) -> None:
    result = ecsbot(tmp_path, "gen-key")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert len(key) == 44 and result.stdout.count("\n") == 1
    Fernet(key.encode())  # a real Fernet key, used as is (no passphrase derivation)
    assert SecretBox(key).decrypt(SecretBox(key).encrypt("x")).get_secret_value() == "x"
    assert ecsbot(tmp_path, "gen-key").stdout.strip() != key


def test_run_logs_json_lines_when_asked(tmp_path: Path) -> None:
    result = ecsbot(tmp_path, "run", ECSBOT_LOG_FORMAT="json", SLACK_BOT_TOKEN="xoxb-json-canary-5f1e")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "bot.app"
    assert entry["message"].startswith("cannot start: Missing settings: HUAWEICLOUD_SDK_AK")
    assert "json-canary" not in result.stderr
