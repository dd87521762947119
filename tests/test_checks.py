"""`ecsbot check` on good and broken configurations, offline and --online against the simulator and fake Slack."""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.checks import EXAMPLE_POLICY_IDS, run_checks
from bot.domain.command import USAGE
from bot.secretbox import SecretBox
from sandbox.devtools.fake_slack import FakeSlack
from sandbox.simulator.server import SimulatorServer

ROOT = Path(__file__).resolve().parents[1]
CANARY_TOKEN = "xoxb-CANARY-bot-token-5f1e2d"
CANARY_APP_TOKEN = "xapp-CANARY-app-token-9c8b7a"
CANARY_SIGNING = "c0ffee00c0ffee00c0ffee00c0ffee00"
CANARY_SK = "CANARY-secret-key-3a4b5c6d7e8f"
CANARY_KEY = SecretBox.generate_key()
CANARY_CLIENT_SECRET = "CANARY-client-secret-77aa88bb"
CANARIES = (CANARY_TOKEN[5:], CANARY_APP_TOKEN[5:], CANARY_SIGNING, CANARY_SK, CANARY_KEY, CANARY_CLIENT_SECRET)
PROJECT_ID = "0605767ef600d5762f23c013c6e7ad23"
EXAMPLE_POLICY = ROOT / "config" / "policy.example.toml"


def filled_in_example() -> str:
    """The example policy as an admin leaves it: every placeholder ID replaced by one of the workspace's."""
    text = EXAMPLE_POLICY.read_text()
    for n, placeholder in enumerate(sorted(EXAMPLE_POLICY_IDS)):
        text = text.replace(placeholder, f"{placeholder[0]}0{n:02d}REALID{n:02d}")
    return text


@pytest.fixture
def good_env(tmp_path: Path) -> dict[str, str]:
    policy = tmp_path / "policy.toml"
    policy.write_text(filled_in_example())
    (tmp_path / "data").mkdir()
    return {
        "SLACK_BOT_TOKEN": CANARY_TOKEN,
        "SLACK_SIGNING_SECRET": CANARY_SIGNING,
        "HUAWEICLOUD_SDK_AK": "HPUAEXAMPLEAK0000001",
        "HUAWEICLOUD_SDK_SK": CANARY_SK,
        "HUAWEICLOUD_PROJECT_ID": PROJECT_ID,
        "HUAWEICLOUD_REGION": "my-kualalumpur-1",
        "HUAWEICLOUD_USER_ID": "7e25b1da389f4697a79df3a0e5bd494e",
        "ECSBOT_DB": str(tmp_path / "data" / "ecsbot.db"),
        "ECSBOT_POLICY": str(policy),
        "ECSBOT_SECRET_KEY": CANARY_KEY,
        "ECSBOT_PUBLIC_URL": "https://ecsbot.example.com",
        "SLACK_CLIENT_ID": "1111111111.2222222222",
        "SLACK_CLIENT_SECRET": CANARY_CLIENT_SECRET,
    }


async def check(env: dict[str, str], *, online: bool = False) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_checks(online=online, out=out, env=env)
    text = out.getvalue()
    for canary in CANARIES:
        assert canary not in text, f"a secret value was printed:\n{text}"
    return code, text


def changed(env: dict[str, str], **changes: str | None) -> dict[str, str]:
    result = dict(env)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


async def test_a_filled_in_example_policy_and_a_complete_environment_pass(good_env: dict[str, str]) -> None:
    code, text = await check(good_env)
    assert code == 0, text
    assert "⛔" not in text and "⚠️" not in text, text
    assert "Mode: HTTP" in text
    assert "SLACK_BOT_TOKEN is set (xoxb-…)" in text
    assert "loads: 2 rules" in text
    assert "Endpoints (Huawei Cloud): ECS https://ecs.my-kualalumpur-1.myhuaweicloud.com" in text
    assert "password logins are on" in text
    assert "✅ Ready to run" in text


async def test_socket_mode_needs_no_signing_secret(good_env: dict[str, str]) -> None:
    code, text = await check(changed(good_env, SLACK_APP_TOKEN=CANARY_APP_TOKEN, SLACK_SIGNING_SECRET=None))
    assert code == 0, text
    assert "Mode: Socket Mode" in text and "exactly one process" in text
    assert "SLACK_APP_TOKEN is set (xapp-…)" in text


BROKEN = {
    "no bot token": ({"SLACK_BOT_TOKEN": None}, "SLACK_BOT_TOKEN is not set"),
    "user token": ({"SLACK_BOT_TOKEN": "xoxp-CANARY-bot-token-5f1e2d"}, "starts with xoxp-… (a user token)"),
    "bot token as app token": ({"SLACK_APP_TOKEN": CANARY_TOKEN}, "Socket Mode needs an app-level token (xapp-…"),
    "empty app token": ({"SLACK_APP_TOKEN": ""}, "SLACK_APP_TOKEN is set but empty"),
    "http mode without signing secret": ({"SLACK_SIGNING_SECRET": None}, "SLACK_SIGNING_SECRET is not set"),
    "slack api url not a url": ({"SLACK_API_URL": "slack"}, "SLACK_API_URL 'slack' is not a URL"),
    "no access key": ({"HUAWEICLOUD_SDK_AK": None}, "HUAWEICLOUD_SDK_AK is not set"),
    "no secret key": ({"HUAWEICLOUD_SDK_SK": None}, "HUAWEICLOUD_SDK_SK is not set"),
    "no project": ({"HUAWEICLOUD_PROJECT_ID": None}, "HUAWEICLOUD_PROJECT_ID is not set"),
    "project not hex": ({"HUAWEICLOUD_PROJECT_ID": "my-project"}, "32 lower-case hexadecimal characters"),
    "no region": ({"HUAWEICLOUD_REGION": ""}, "HUAWEICLOUD_REGION is empty"),
    "endpoint not http": ({"ECS_ENDPOINT": "ftp://ecs.example.com"}, "ECS_ENDPOINT is 'ftp://ecs.example.com'"),
    "endpoint with a path": (
        {"ECS_ENDPOINT": "https://ecs.example.com/v1/"},
        "ECS_ENDPOINT is https://ecs.example.com/v1/, which has a path (/v1/): set only the scheme and host, "
        "https://ecs.example.com,",
    ),
    "log level unknown": (
        {"ECSBOT_LOG_LEVEL": "LOUD"},
        "ECSBOT_LOG_LEVEL is 'LOUD', which is not a log level: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL.",
    ),
    "log format unknown": ({"ECSBOT_LOG_FORMAT": "xml"}, "ECSBOT_LOG_FORMAT: Input should be 'text' or 'json'."),
    "port not a number": ({"PORT": "abc"}, "PORT is 'abc', not a port number"),
    "old keys without a current key": (
        {"ECSBOT_SECRET_KEY": None, "ECSBOT_SECRET_KEYS_OLD": CANARY_KEY},
        "ECSBOT_SECRET_KEYS_OLD is set but ECSBOT_SECRET_KEY is not",
    ),
    "an old key too short": ({"ECSBOT_SECRET_KEYS_OLD": "short"}, "ECSBOT_SECRET_KEYS_OLD (key 1) is too short"),
    "database folder missing": ({"ECSBOT_DB": "/nonexistent-ecsbot/ecsbot.db"}, "does not exist: create it"),
    "policy missing": ({"ECSBOT_POLICY": "/nonexistent-ecsbot/policy.toml"}, "No policy file at"),
    "database url not postgresql": ({"ECSBOT_DATABASE_URL": "mysql://db/ecsbot"}, "must be a PostgreSQL URL"),
    "lease too short": ({"ECSBOT_LEASE_SECONDS": "1"}, "ECSBOT_LEASE_SECONDS: Input should be greater than or equal"),
    "secret key too short": ({"ECSBOT_SECRET_KEY": "short"}, "ECSBOT_SECRET_KEY is too short"),
    "public url not a url": ({"ECSBOT_PUBLIC_URL": "ecsbot.example.com"}, "ECSBOT_PUBLIC_URL 'ecsbot.example.com'"),
    "poll interval negative": ({"ECSBOT_POLL_INTERVAL": "-1"}, "ECSBOT_POLL_INTERVAL: Input should be greater than 0"),
    "rate not a number": ({"ECSBOT_ECS_RATE": "fast"}, "ECSBOT_ECS_RATE: Input should be a valid number"),
}


@pytest.mark.parametrize("case", list(BROKEN))
async def test_each_broken_configuration_fails_with_the_right_words(good_env: dict[str, str], case: str) -> None:
    changes, words = BROKEN[case]
    code, text = await check(changed(good_env, **changes))
    assert code == 1, text
    assert words in text, text
    assert "⛔" in text and "Traceback" not in text


async def test_a_broken_policy_says_where(good_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\nname = "x"\nservers = ["*"]\napprovals_required = "two"\n')
    code, text = await check(changed(good_env, ECSBOT_POLICY=str(bad)))
    assert code == 1, text
    assert "approvals_required" in text


async def test_a_postgresql_url_replaces_the_file_and_its_password_is_never_shown(good_env: dict[str, str]) -> None:
    url = "postgresql://ecsbot:CANARY-db-password-77@db.internal:5433/ecsbot"
    code, text = await check(changed(good_env, ECSBOT_DATABASE_URL=url, ECSBOT_DB="/nonexistent-ecsbot/ecsbot.db"))
    assert code == 0, text
    assert "PostgreSQL at postgresql://db.internal:5433/ecsbot" in text
    assert "CANARY-db-password-77" not in text


async def test_an_unwritable_database_folder_blocks(good_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        try:
            (folder / "probe").touch()
        except OSError:
            pass
        else:  # root writes anywhere: /proc refuses new files even to root
            folder = Path("/proc")
            if not folder.is_dir():
                pytest.skip("no read-only folder available to this user")
        code, text = await check(changed(good_env, ECSBOT_DB=str(folder / "ecsbot.db")))
        assert code == 1, text
        assert f"cannot write in {folder}" in text
    finally:
        (tmp_path / "ro").chmod(0o700)


WARNINGS = {
    "no secret key": ({"ECSBOT_SECRET_KEY": None}, "password logins are off"),
    "public url over http": ({"ECSBOT_PUBLIC_URL": "http://ecsbot.example.com"}, "uses plain http"),
    "no user id": ({"HUAWEICLOUD_USER_ID": None}, "HUAWEICLOUD_USER_ID is not set"),
    "odd region": ({"HUAWEICLOUD_REGION": "Kuala Lumpur"}, "does not look like a region ID"),
    "signing secret odd": ({"SLACK_SIGNING_SECRET": "not-a-signing-secret"}, "does not look like Slack's"),
    "bearer links": (
        {"SLACK_CLIENT_ID": None, "SLACK_CLIENT_SECRET": None},
        "Sign in with Slack is off (no SLACK_CLIENT_ID / SLACK_CLIENT_SECRET): a password link is a bearer",
    ),
}


async def test_sign_in_with_slack_names_the_redirect_url_and_the_lifetimes(good_env: dict[str, str]) -> None:
    code, text = await check(changed(good_env, ECSBOT_PASSWORD_LINK_MINUTES="5", ECSBOT_DRAFT_PASSWORD_MINUTES="20"))
    assert code == 0, text
    assert "Sign in with Slack is on" in text and "https://ecsbot.example.com/password/signin/callback" in text
    assert "works 5 minutes" in text and "kept 20 minutes" in text


PASSWORD_BLOCKS = {
    "link outlives the draft": (
        {"ECSBOT_PASSWORD_LINK_MINUTES": "30", "ECSBOT_DRAFT_PASSWORD_MINUTES": "20"},
        "a link must not outlive the password it sets",
    ),
    "link too short": ({"ECSBOT_PASSWORD_LINK_MINUTES": "1"}, "ECSBOT_PASSWORD_LINK_MINUTES"),
    "draft too long": ({"ECSBOT_DRAFT_PASSWORD_MINUTES": "1000"}, "ECSBOT_DRAFT_PASSWORD_MINUTES"),
    "client id alone": ({"SLACK_CLIENT_SECRET": None}, "needs both SLACK_CLIENT_ID and SLACK_CLIENT_SECRET"),
}


@pytest.mark.parametrize("case", list(PASSWORD_BLOCKS))
async def test_password_page_settings_out_of_bounds_block(good_env: dict[str, str], case: str) -> None:
    changes, words = PASSWORD_BLOCKS[case]
    code, text = await check(changed(good_env, **changes))
    assert code == 1, text
    assert "⛔" in text and words in text, text


@pytest.mark.parametrize("case", list(WARNINGS))
async def test_warnings_do_not_fail_the_check(good_env: dict[str, str], case: str) -> None:
    changes, words = WARNINGS[case]
    code, text = await check(changed(good_env, **changes))
    assert code == 0, text
    assert "⚠️" in text and words in text, text


async def test_public_url_on_localhost_may_be_http(good_env: dict[str, str]) -> None:
    code, text = await check(changed(good_env, ECSBOT_PUBLIC_URL="http://localhost:3000"))
    assert code == 0 and "⚠️" not in text, text


# ----------------------------------------------------------------------------------------------------------------
# --online


@pytest.fixture
async def services() -> AsyncIterator[tuple[SimulatorServer, FakeSlack]]:
    sim = SimulatorServer()
    slack = FakeSlack(bot_token=CANARY_TOKEN)
    await sim.start()
    await slack.start()
    try:
        yield sim, slack
    finally:
        await slack.stop()
        await sim.stop()


def online_env(env: dict[str, str], sim: SimulatorServer, slack: FakeSlack) -> dict[str, str]:
    return changed(
        env,
        SLACK_API_URL=slack.api_url,
        HUAWEICLOUD_SDK_AK=sim.access_key,
        HUAWEICLOUD_SDK_SK=sim.secret_key.get_secret_value(),
        HUAWEICLOUD_PROJECT_ID=sim.project_id,
        HUAWEICLOUD_USER_ID=sim.user_id,
        ECS_ENDPOINT=sim.base_url,
        IMS_ENDPOINT=sim.base_url,
        EVS_ENDPOINT=sim.base_url,
    )


async def test_online_against_the_simulator_and_fake_slack(good_env: dict[str, str], services) -> None:
    sim, slack = services
    code, text = await check(online_env(good_env, sim, slack), online=True)
    assert code == 0, text
    assert "✅ Huawei Cloud answered list servers (limit 1)" in text
    assert "✅ Slack auth.test: the token works" in text
    assert "Endpoints (a local simulator)" in text
    listed = [r for r in sim.requests if r["route"] == "list_servers"]
    assert len(listed) == 1, listed
    assert [c.method for c in slack.calls] == ["auth.test"]


async def test_online_reports_rejected_credentials_with_hints(good_env: dict[str, str], services) -> None:
    sim, slack = services
    env = changed(online_env(good_env, sim, slack), HUAWEICLOUD_SDK_SK=CANARY_SK, SLACK_BOT_TOKEN="xoxb-CANARY-wrong")
    code, text = await check(env, online=True)
    assert code == 1, text
    listing = f"GET {sim.base_url}/v1/{sim.project_id}/cloudservers/detail"
    assert f"⛔ Huawei Cloud: list servers ({listing}) failed. HTTP 401 APIGW.0301" in text
    assert "Check HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK" in text
    assert "⛔ Slack auth.test failed: invalid_auth. Slack rejected the token" in text


async def test_online_reports_an_unreachable_cloud(good_env: dict[str, str], services) -> None:
    sim, slack = services
    base = sim.base_url
    await sim.stop()  # nothing listens there any more
    env = changed(online_env(good_env, sim, slack), ECS_ENDPOINT=base, IMS_ENDPOINT=base, EVS_ENDPOINT=base)
    code, text = await check(env, online=True)
    assert code == 1, text
    listing = f"GET {base}/v1/{sim.project_id}/cloudservers/detail"
    assert f"⛔ Huawei Cloud: list servers ({listing}) failed. Could not reach the cloud" in text
    assert "✅ Slack auth.test" in text


async def test_online_names_the_slack_url_it_could_not_reach(good_env: dict[str, str], services) -> None:
    sim, slack = services
    env, api = online_env(good_env, sim, slack), slack.api_url
    await slack.stop()  # nothing listens there any more
    code, text = await check(env, online=True)
    assert code == 1, text
    assert f"⛔ Slack auth.test could not reach {api.rstrip('/')}/auth.test (" in text, text


async def test_online_skips_a_call_that_cannot_work(good_env: dict[str, str]) -> None:
    code, text = await check(changed(good_env, HUAWEICLOUD_SDK_AK=None, SLACK_BOT_TOKEN=None), online=True)
    assert code == 1
    assert "Huawei Cloud: not called" in text and "auth.test not called" in text


def test_manifest_asks_only_for_the_scopes_the_bot_uses() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((ROOT / "config" / "slack-manifest.yml").read_text())
    assert manifest["oauth_config"]["scopes"]["bot"] == [
        "commands",
        "chat:write",
        "chat:write.public",
        "usergroups:read",
    ]
    assert manifest["oauth_config"]["scopes"]["user"] == ["openid"]  # Sign in with Slack, nothing more
    (redirect,) = manifest["oauth_config"]["redirect_urls"]
    assert redirect.startswith("https://") and redirect.endswith("/password/signin/callback")
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/changeos" and command["should_escape"] is True
    flags = set(re.findall(r"--[a-z]+", USAGE))
    assert flags and flags <= set(re.findall(r"--[a-z]+", command["usage_hint"])), command["usage_hint"]
    for form in ("status", "list", "cancel", "help"):
        assert form in command["usage_hint"]
    assert command["url"].endswith("/slack/events")
    assert manifest["settings"]["interactivity"] == {"is_enabled": True, "request_url": command["url"]}


def test_procfile_has_one_http_and_one_socket_mode_process() -> None:
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines == ["web: ecsbot run --port $PORT", "worker: ecsbot run"]


async def test_check_names_the_credential_source(good_env: dict[str, str]) -> None:
    _, text = await check(good_env)
    assert "Credentials: permanent AK/SK" in text
    code, text = await check(changed(good_env, HUAWEICLOUD_SDK_SECURITY_TOKEN="CANARY-token-0000"))
    assert code == 0 and "temporary AK/SK with a security token" in text and "CANARY-token-0000" not in text
    agency = changed(
        good_env,
        HUAWEICLOUD_CREDENTIALS="agency",
        ECSBOT_METADATA_URL="http://127.0.0.1:9",
        HUAWEICLOUD_SDK_AK=None,
        HUAWEICLOUD_SDK_SK=None,
    )
    code, text = await check(agency)
    assert code == 0, text
    assert "ECS agency keys from the metadata service at http://127.0.0.1:9" in text
    assert "HUAWEICLOUD_SDK_AK is not set" not in text


# ----------------------------------------------------------------------------------------------------------------
# What a new user gets wrong first


def test_the_placeholder_list_covers_every_id_in_the_example_policy() -> None:
    ids = set(re.findall(r"\b[UWSCG]0[0-9A-Z]{7,}\b", EXAMPLE_POLICY.read_text()))
    assert ids and ids <= EXAMPLE_POLICY_IDS, ids - EXAMPLE_POLICY_IDS


async def test_the_example_policy_copied_unchanged_is_refused(good_env: dict[str, str]) -> None:
    policy = Path(good_env["ECSBOT_POLICY"])
    shutil.copy(EXAMPLE_POLICY, policy)
    code, text = await check(good_env)
    assert code == 1, text
    assert f"⛔ {policy} still names the example's placeholder IDs (C01APPROVE1, " in text
    assert "Replace them with your workspace's member, user-group and channel IDs." in text
    assert "Ready to run" not in text


async def test_an_empty_region_is_one_clear_line(good_env: dict[str, str]) -> None:
    code, text = await check(changed(good_env, HUAWEICLOUD_REGION="", HUAWEICLOUD_PROJECT_ID=None))
    assert code == 1, text
    cloud = text.split("\nHuawei Cloud\n", 1)[1].split("\nStorage\n", 1)[0]
    region_lines = [line for line in cloud.splitlines() if "REGION" in line]
    assert region_lines == [
        "  ⛔ HUAWEICLOUD_REGION is empty: set it to your region's ID, e.g. my-kualalumpur-1 (Kuala Lumpur); the "
        "endpoints are made from it."
    ], cloud
    assert "project  " not in text and "ID of your region's project" in text


async def test_every_policy_error_is_shown_not_only_the_first(good_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'approvals_chanel = "C01ABC"\nrequest_expiry_minutes = 0\n'
        '[[rules]]\nname = "a"\nservers = ["*"]\napprovals_required = "two"\napprovers = ["U0REAL0001"]\n'
        '[[rules]]\nname = "b"\nservers = ["db-*"]\nrequesters = ["@alice"]\napprovers = ["U0REAL0001"]\n'
    )
    code, text = await check(changed(good_env, ECSBOT_POLICY=str(bad)))
    assert code == 1, text
    policy_lines = [line for line in text.splitlines() if line.startswith("  ⛔") and str(bad) in line]
    assert len(policy_lines) == 4, text
    for words in ('unknown key "approvals_chanel"', "request_expiry_minutes", "approvals_required", '"@alice"'):
        assert any(words in line for line in policy_lines), (words, text)


async def test_the_key_hint_is_an_ecsbot_command(good_env: dict[str, str]) -> None:
    _, text = await check(changed(good_env, ECSBOT_SECRET_KEY=None))
    assert "a key from `ecsbot gen-key`" in text and "python -c" not in text


async def test_check_says_private_answers_need_no_membership(good_env: dict[str, str]) -> None:
    _, text = await check(good_env)
    assert "private answers to whoever types /changeos go to the command's response_url" in text
    assert "Logs: level INFO (ECSBOT_LOG_LEVEL), format text (ECSBOT_LOG_FORMAT)" in text


# ----------------------------------------------------------------------------------------------------------------
# Secrets from files, and key rotation


async def test_every_secret_can_come_from_a_file(good_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(good_env)
    for name in (
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "HUAWEICLOUD_SDK_SK",
        "ECSBOT_SECRET_KEY",
        "SLACK_CLIENT_SECRET",
    ):
        path = tmp_path / name.lower()
        path.write_text(env.pop(name) + "\n")  # a trailing newline, as editors and `echo` leave it
        env[f"{name}_FILE"] = str(path)
    code, text = await check(env)
    assert code == 0, text
    assert "SLACK_BOT_TOKEN is set (xoxb-…)" in text and "password logins are on" in text
    assert "Read from *_FILE: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_CLIENT_SECRET, HUAWEICLOUD_SDK_SK, " in text


def _empty_file(folder: Path) -> Path:
    path = folder / "empty"
    path.write_text("\n")
    return path


FILE_PROBLEMS = {
    "missing": (lambda tmp: tmp / "absent", "which does not exist: fix the path or mount the secret there"),
    "a folder": (lambda tmp: tmp, "which is a folder: name the file that holds the secret"),
    "empty": (_empty_file, "which is empty: put the secret in it"),
}


@pytest.mark.parametrize("case", list(FILE_PROBLEMS))
async def test_a_secret_file_that_cannot_be_used_is_one_clear_line(
    good_env: dict[str, str], tmp_path: Path, case: str
) -> None:
    make, words = FILE_PROBLEMS[case]
    path = make(tmp_path)
    code, text = await check(changed(good_env, SLACK_BOT_TOKEN=None, SLACK_BOT_TOKEN_FILE=str(path)))
    assert code == 1, text
    assert f"⛔ SLACK_BOT_TOKEN_FILE names {path}, {words}" in text, text


async def test_a_secret_and_its_file_both_set_is_refused(good_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(CANARY_TOKEN)
    code, text = await check(changed(good_env, SLACK_BOT_TOKEN_FILE=str(path)))
    assert code == 1, text
    assert "⛔ SLACK_BOT_TOKEN and SLACK_BOT_TOKEN_FILE are both set: keep one of the two." in text


async def test_old_secret_keys_are_counted(good_env: dict[str, str]) -> None:
    olds = f"{SecretBox.generate_key()}, {SecretBox.generate_key()}"
    code, text = await check(changed(good_env, ECSBOT_SECRET_KEYS_OLD=olds))
    assert code == 0, text
    assert "2 earlier key(s) in ECSBOT_SECRET_KEYS_OLD still decrypt" in text
    assert olds.split(",")[0] not in text
