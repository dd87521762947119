"""`ecsbot check`: what is wrong with this deployment's configuration, in plain words, before anyone runs the bot.

Offline it reads the settings (environment and `.env`), the policy file, the database folder and the keys; with
`--online` it also makes one cheap call to the cloud (list servers, limit 1) and Slack's `auth.test`. It never
prints a secret: tokens show their first five characters, other secrets only "set".
"""

from __future__ import annotations

import enum
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from bot.cloud.client import Endpoints
from bot.config import SECRET_FILES, Settings, env_name, port_number, problems
from bot.domain.policy import Policy

SLACK_DEFAULT_API = "https://slack.com/api/"
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_AK = re.compile(r"^[A-Z0-9]{16,40}$")
_SIGNING_SECRET = re.compile(r"^[0-9a-f]{32}$")
# Huawei Cloud region IDs: ap-southeast-1, cn-north-4, my-kualalumpur-1, la-south-2, ru-moscow-1 ...
_REGION = re.compile(r"^[a-z]{2,3}(?:-[a-z]+)+-\d{1,2}$")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# The IDs config/policy.example.toml uses (and its comments show): a policy that still names one was copied unchanged.
EXAMPLE_POLICY_IDS = frozenset(
    {
        "U01REQ0001",
        "S01GRP0001",
        "U01APR0001",
        "U01APR0002",
        "S01DEVS0001",
        "C01APPROVE1",
        "C01INCIDNT1",
        "C01WEBAPPR1",
        "U01ABCDE23",
        "S01ABCDE23",
        "C01ABCDE23",
        "C01ABCDEF23",
    }
)
_SLACK_HINTS = {
    "invalid_auth": "Slack rejected the token: copy the Bot User OAuth Token (xoxb-…) again from OAuth & Permissions.",
    "not_authed": "No token reached Slack: set SLACK_BOT_TOKEN.",
    "account_inactive": "The token belongs to an uninstalled app or a deleted user: reinstall the app.",
    "token_revoked": "The token was revoked: reinstall the app and copy the new Bot User OAuth Token.",
    "token_expired": "The token expired (token rotation is on): turn rotation off for this bot or refresh the token.",
    "no_permission": "The token lacks a scope: compare the app with config/slack-manifest.yml and reinstall.",
    "ratelimited": "Slack is rate-limiting this token: wait a minute and run the check again.",
}


class Level(enum.Enum):
    OK = "✅"
    WARN = "⚠️"
    BLOCK = "⛔"


@dataclass(frozen=True, slots=True)
class Finding:
    section: str
    level: Level
    text: str


# ----------------------------------------------------------------------------------------------------------------
# Settings from a mapping (tests) or from the environment (the command)


class _MappingSettings(Settings):
    """Settings from the given values only: no process environment, no `.env`, so a test sees exactly its input."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _setting_errors(exc: ValidationError) -> list[Finding]:
    """One line per bad variable, naming it and what is wrong, never echoing a secret's value."""
    return [Finding("Settings", Level.BLOCK, problem) for problem in problems(exc)]


def load_settings(env: Mapping[str, str] | None) -> Settings:
    if env is None:
        return Settings()
    return _MappingSettings(**dict(env))  # type: ignore[arg-type]  # strings, validated like the environment


# ----------------------------------------------------------------------------------------------------------------
# Offline checks (pure except the database folder and the policy file)


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value().strip() if value is not None else ""


def token_preview(token: str) -> str:
    return f"{token[:5]}…"


def _is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOOPBACK_HOSTS


def slack_findings(s: Settings) -> list[Finding]:
    section = "Slack"
    out: list[Finding] = []
    bot = _secret(s.slack_bot_token)
    app = _secret(s.slack_app_token)
    signing = _secret(s.slack_signing_secret)
    socket_mode = s.slack_app_token is not None  # as the bot decides: set, even empty, means Socket Mode
    if socket_mode:
        out.append(
            Finding(
                section,
                Level.OK,
                "Mode: Socket Mode (SLACK_APP_TOKEN is set). Run exactly one process per app: the Procfile's "
                "`worker`. No public URL needed.",
            )
        )
    else:
        out.append(
            Finding(
                section,
                Level.OK,
                "Mode: HTTP (no SLACK_APP_TOKEN). Slack must reach https://YOUR-HOST/slack/events: the Procfile's "
                "`web`, one process.",
            )
        )
    if not bot:
        out.append(
            Finding(
                section,
                Level.BLOCK,
                "SLACK_BOT_TOKEN is not set. Install the app (config/slack-manifest.yml), then copy the Bot User "
                "OAuth Token (xoxb-…) from OAuth & Permissions.",
            )
        )
    elif not bot.startswith("xoxb-"):
        kind = " (a user token)" if bot.startswith("xoxp-") else ""
        out.append(
            Finding(
                section,
                Level.BLOCK,
                f"SLACK_BOT_TOKEN starts with {token_preview(bot)}{kind}, but the bot needs the Bot User OAuth "
                "Token, which starts with xoxb-.",
            )
        )
    else:
        out.append(Finding(section, Level.OK, f"SLACK_BOT_TOKEN is set ({token_preview(bot)})."))
    if socket_mode:
        if not app:
            out.append(
                Finding(
                    section,
                    Level.BLOCK,
                    "SLACK_APP_TOKEN is set but empty, which selects Socket Mode without a token. Unset it for HTTP "
                    "mode, or set the app-level token (xapp-…).",
                )
            )
        elif not app.startswith("xapp-"):
            out.append(
                Finding(
                    section,
                    Level.BLOCK,
                    f"SLACK_APP_TOKEN starts with {token_preview(app)}, but Socket Mode needs an app-level token "
                    "(xapp-…, scope connections:write) from Basic Information → App-Level Tokens.",
                )
            )
        else:
            out.append(Finding(section, Level.OK, f"SLACK_APP_TOKEN is set ({token_preview(app)})."))
    if not signing:
        if socket_mode:
            out.append(Finding(section, Level.OK, "SLACK_SIGNING_SECRET is not needed in Socket Mode."))
        else:
            out.append(
                Finding(
                    section,
                    Level.BLOCK,
                    "SLACK_SIGNING_SECRET is not set: in HTTP mode the bot must verify that requests come from Slack. "
                    "Copy it from Basic Information → App Credentials (or set SLACK_APP_TOKEN for Socket Mode).",
                )
            )
    elif not _SIGNING_SECRET.match(signing):
        out.append(
            Finding(
                section,
                Level.WARN,
                "SLACK_SIGNING_SECRET is set but does not look like Slack's (32 hexadecimal characters). Copy the "
                "Signing Secret from Basic Information → App Credentials, not the Client Secret or a token.",
            )
        )
    else:
        out.append(Finding(section, Level.OK, "SLACK_SIGNING_SECRET is set."))
    out.append(
        Finding(
            section,
            Level.OK,
            "Channels: invite the bot (/invite @ChangeOS) to the approvals channels and private notify channels. "
            "Its private answers to whoever types /changeos go to the command's response_url and need no "
            "membership; only the start and end notes it posts in a private channel where /changeos was typed "
            "need the bot there.",
        )
    )
    api = s.slack_api_url.strip()
    parts = urlsplit(api)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        out.append(
            Finding(section, Level.BLOCK, f"SLACK_API_URL {api!r} is not a URL; leave it unset ({SLACK_DEFAULT_API}).")
        )
    elif api.rstrip("/") != SLACK_DEFAULT_API.rstrip("/"):
        out.append(
            Finding(
                section,
                Level.WARN,
                f"SLACK_API_URL points at {api}, not Slack: right for tests and the demo only. Unset it for a real "
                "workspace.",
            )
        )
    return out


def cloud_findings(s: Settings) -> list[Finding]:
    section = "Huawei Cloud"
    out: list[Finding] = []
    ak = (s.huaweicloud_ak or "").strip()
    sk = _secret(s.huaweicloud_sk)
    project = (s.huaweicloud_project_id or "").strip()
    where = "My Credentials → API Credentials in the Huawei Cloud console"
    if s.huaweicloud_credentials == "agency":
        out.append(
            Finding(
                section,
                Level.OK,
                f"Credentials: ECS agency keys from the metadata service at {s.metadata_url}, refreshed before they "
                "expire (HUAWEICLOUD_CREDENTIALS=agency). --online fetches them and shows when they expire.",
            )
        )
    elif s.huaweicloud_security_token is not None:
        out.append(
            Finding(
                section,
                Level.WARN,
                "Credentials: temporary AK/SK with a security token (HUAWEICLOUD_SDK_SECURITY_TOKEN). They expire "
                "(15 min to 24 h) and nothing renews them: a long-running bot should use an ECS agency "
                "(HUAWEICLOUD_CREDENTIALS=agency) or a permanent access key.",
            )
        )
    else:
        out.append(Finding(section, Level.OK, "Credentials: permanent AK/SK (HUAWEICLOUD_SDK_AK/SK)."))
    if s.huaweicloud_credentials != "agency":
        out.extend(_key_findings(section, ak, sk))
    region = s.huaweicloud_region.strip()
    of_region = f"project {region}" if region else "your region's project"
    if not project:
        out.append(
            Finding(
                section,
                Level.BLOCK,
                f"HUAWEICLOUD_PROJECT_ID is not set: copy the ID of {of_region} from {where}.",
            )
        )
    elif not _HEX32.match(project):
        out.append(
            Finding(
                section,
                Level.BLOCK,
                f"HUAWEICLOUD_PROJECT_ID {project!r} is not a project ID (32 lower-case hexadecimal characters). "
                f"Copy the one listed for {of_region} under {where}.",
            )
        )
    else:
        out.append(Finding(section, Level.OK, f"HUAWEICLOUD_PROJECT_ID is {project}."))
    overridden = all((s.ecs_endpoint, s.ims_endpoint, s.evs_endpoint))
    if not region and not overridden:
        out.append(
            Finding(
                section,
                Level.BLOCK,
                "HUAWEICLOUD_REGION is empty: set it to your region's ID, e.g. my-kualalumpur-1 (Kuala Lumpur); "
                "the endpoints are made from it.",
            )
        )
    elif region and not _REGION.match(region):
        out.append(
            Finding(
                section,
                Level.WARN,
                f"HUAWEICLOUD_REGION {region!r} does not look like a region ID such as my-kualalumpur-1 or "
                "ap-southeast-1 (the console's region list shows them).",
            )
        )
    elif region:
        out.append(Finding(section, Level.OK, f"HUAWEICLOUD_REGION is {region}."))
    if region or overridden:
        out.extend(_endpoint_findings(s))
    user = (s.huaweicloud_user_id or "").strip()
    if not user:
        out.append(
            Finding(
                section,
                Level.WARN,
                "HUAWEICLOUD_USER_ID is not set: key pair logins are sent to the changeos API without `userid`. "
                f"Copy the IAM User ID from {where}.",
            )
        )
    elif not _HEX32.match(user):
        out.append(
            Finding(
                section,
                Level.WARN,
                f"HUAWEICLOUD_USER_ID {user!r} does not look like an IAM user ID (32 hexadecimal characters); "
                f"copy it from {where}.",
            )
        )
    else:
        out.append(Finding(section, Level.OK, f"HUAWEICLOUD_USER_ID is {user}."))
    return out


def _key_findings(section: str, ak: str, sk: str) -> list[Finding]:
    out: list[Finding] = []
    if not ak:
        out.append(
            Finding(
                section,
                Level.BLOCK,
                "HUAWEICLOUD_SDK_AK is not set: create an access key for the bot's IAM user (My Credentials → "
                "Access Keys) and set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK.",
            )
        )
    elif not _AK.match(ak):
        out.append(
            Finding(
                section,
                Level.WARN,
                f"HUAWEICLOUD_SDK_AK ({token_preview(ak)}) does not look like an access key ID (upper-case letters "
                "and digits, about 20). Check you did not swap the AK and the SK.",
            )
        )
    else:
        out.append(Finding(section, Level.OK, f"HUAWEICLOUD_SDK_AK is set ({token_preview(ak)})."))
    if not sk:
        out.append(
            Finding(
                section,
                Level.BLOCK,
                "HUAWEICLOUD_SDK_SK is not set: it comes with the access key (the credentials.csv you downloaded).",
            )
        )
    else:
        out.append(Finding(section, Level.OK, "HUAWEICLOUD_SDK_SK is set."))
    return out


def _endpoint_findings(s: Settings) -> list[Finding]:
    """The endpoints in use (Settings has already refused one that is not a bare scheme and host)."""
    section = "Huawei Cloud"
    out: list[Finding] = []
    try:
        endpoints = Endpoints.for_region(
            s.huaweicloud_region, ecs=s.ecs_endpoint, ims=s.ims_endpoint, evs=s.evs_endpoint
        )
    except ValueError as exc:
        return [Finding(section, Level.BLOCK, str(exc))]
    urls = (endpoints.ecs, endpoints.ims, endpoints.evs)
    local = all(_is_loopback(u) for u in urls)
    kind = "a local simulator" if local else "Huawei Cloud"
    out.append(
        Finding(
            section, Level.OK, f"Endpoints ({kind}): ECS {endpoints.ecs}, IMS {endpoints.ims}, EVS {endpoints.evs}."
        )
    )
    plain = [u for u in urls if u.startswith("http://") and not _is_loopback(u)]
    if plain:
        out.append(
            Finding(
                section,
                Level.WARN,
                f"{', '.join(plain)} uses plain http: requests and answers cross the network unencrypted. Use https.",
            )
        )
    return out


def storage_findings(s: Settings) -> list[Finding]:
    section = "Storage"
    if s.database_url is not None:
        from bot.store import describe_database

        where = describe_database(s.database_url.get_secret_value())
        return [
            Finding(
                section,
                Level.OK,
                f"ECSBOT_DATABASE_URL: PostgreSQL at {where}, shared by every replica (ECSBOT_DB is not used); "
                f"tracker lease {s.lease_seconds:g} s.",
            )
        ]
    db = Path(s.db_path).expanduser()
    folder = db.parent if str(db.parent) else Path(".")
    if not folder.is_dir():
        return [
            Finding(
                section,
                Level.BLOCK,
                f"ECSBOT_DB is {db}, but the folder {folder} does not exist: create it or choose another path.",
            )
        ]
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ecsbot-check-"):
            pass
    except OSError as exc:
        return [
            Finding(
                section,
                Level.BLOCK,
                f"ECSBOT_DB is {db}, but the bot cannot write in {folder} ({exc.strerror or exc}). SQLite needs to "
                "create files next to the database: use a writable folder (a mounted volume in a container).",
            )
        ]
    if db.exists() and not db.is_file():
        return [Finding(section, Level.BLOCK, f"ECSBOT_DB is {db}, which is not a file.")]
    state = "exists" if db.exists() else "will be created on first start"
    return [Finding(section, Level.OK, f"ECSBOT_DB {db} {state}; its folder is writable.")]


def policy_findings(s: Settings) -> list[Finding]:
    from bot.app import ConfigurationError, load_policy

    section = "Policy"
    try:
        policy = load_policy(Path(s.policy_path).expanduser())
    except ConfigurationError as exc:  # a PolicyError's problems arrive one per line: show every one
        return [Finding(section, Level.BLOCK, line) for line in str(exc).splitlines() if line.strip()]
    except OSError as exc:
        return [Finding(section, Level.BLOCK, f"Cannot read the policy file {s.policy_path}: {exc.strerror or exc}.")]
    rules = len(policy.rules)
    out = [Finding(section, Level.OK, f"{s.policy_path} loads: {rules} rule{'s' if rules != 1 else ''}.")]
    placeholders = sorted(_policy_ids(policy) & EXAMPLE_POLICY_IDS)
    if placeholders:
        out.append(
            Finding(
                section,
                Level.BLOCK,
                f"{s.policy_path} still names the example's placeholder IDs ({', '.join(placeholders)}): it looks "
                "copied from config/policy.example.toml unchanged. Replace them with your workspace's member, "
                "user-group and channel IDs.",
            )
        )
    out.extend(Finding(section, Level.WARN, warning) for warning in policy.warnings())
    if policy.allow_password_in_modal and s.public_url:
        out.append(
            Finding(
                section,
                Level.OK,
                "allow_password_in_modal is true, but ECSBOT_PUBLIC_URL is set, so the secure password page is used.",
            )
        )
    return out


def _policy_ids(policy: Policy) -> set[str]:
    ids = {*policy.notify_channels, *([policy.approvals_channel] if policy.approvals_channel else [])}
    for rule in policy.rules:
        ids |= rule.requesters | rule.approvers | set(rule.notify_channels)
        if rule.approvals_channel:
            ids.add(rule.approvals_channel)
    return ids


def password_findings(s: Settings) -> list[Finding]:
    from bot.secretbox import SecretBox, SecretBoxError

    section = "Passwords"
    out: list[Finding] = []
    key = _secret(s.secret_key)
    if not key:
        out.append(
            Finding(
                section,
                Level.WARN,
                "ECSBOT_SECRET_KEY is not set: password logins are off (key pairs work). To allow them, set it to a "
                "key from `ecsbot gen-key`.",
            )
        )
        if s.old_secret_keys:
            out.append(
                Finding(
                    section,
                    Level.BLOCK,
                    "ECSBOT_SECRET_KEYS_OLD is set but ECSBOT_SECRET_KEY is not: old keys only decrypt. Set the "
                    "current key (`ecsbot gen-key` makes one) and keep the old ones until `ecsbot rotate-key` ran.",
                )
            )
    else:
        try:
            SecretBox(key, old_keys=s.old_secret_keys)
        except (SecretBoxError, ValueError) as exc:
            out.append(Finding(section, Level.BLOCK, str(exc)))
        else:
            old = len(s.old_secret_keys)
            rotation = f" {old} earlier key(s) in ECSBOT_SECRET_KEYS_OLD still decrypt." if old else ""
            out.append(
                Finding(section, Level.OK, f"ECSBOT_SECRET_KEY is set and usable: password logins are on.{rotation}")
            )
    url = (s.public_url or "").strip()
    if not url:
        out.append(
            Finding(
                section,
                Level.OK,
                "ECSBOT_PUBLIC_URL is not set: no secure password page (the policy's allow_password_in_modal decides "
                "whether the modal may take a password).",
            )
        )
        if s.slack_client_id:
            out.append(
                Finding(
                    section,
                    Level.WARN,
                    "SLACK_CLIENT_ID is set but ECSBOT_PUBLIC_URL is not: Sign in with Slack only guards the password "
                    "page, which needs ECSBOT_PUBLIC_URL.",
                )
            )
        return out
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        out.append(
            Finding(section, Level.BLOCK, f"ECSBOT_PUBLIC_URL {url!r} is not a URL such as https://ecsbot.example.com.")
        )
    elif parts.scheme == "http" and not _is_loopback(url):
        out.append(
            Finding(
                section,
                Level.WARN,
                f"ECSBOT_PUBLIC_URL {url} uses plain http: passwords typed on the page would cross the network "
                "unencrypted. Put the bot behind https.",
            )
        )
    else:
        out.append(Finding(section, Level.OK, f"ECSBOT_PUBLIC_URL is {url}: the secure password page is on."))
    out.extend(signin_findings(s, url))
    return out


def signin_findings(s: Settings, url: str) -> list[Finding]:
    """Whether the password page knows who opened a link (Sign in with Slack), and the lifetimes it works with."""
    section = "Passwords"
    callback = f"{url.rstrip('/')}/password/signin/callback"
    lifetimes = (
        f"A password link (and the page it opens) works {s.password_link_minutes:g} minutes; a password set there "
        f"is kept {s.draft_password_minutes:g} minutes until the form is submitted."
    )
    if not s.signin_enabled:
        return [
            Finding(
                section,
                Level.WARN,
                "Sign in with Slack is off (no SLACK_CLIENT_ID / SLACK_CLIENT_SECRET): a password link is a bearer "
                "credential, so whoever holds an unused link can set that form's password. Set both from Basic "
                f"Information → App Credentials, and add the redirect URL {callback} with the user scope openid "
                "(config/slack-manifest.yml).",
            ),
            Finding(section, Level.OK, lifetimes),
        ]
    return [
        Finding(
            section,
            Level.OK,
            f"Sign in with Slack is on (client {s.slack_client_id}): the page checks the Slack user and workspace "
            f"a link was made for before its form shows. The app must list the redirect URL {callback}.",
        ),
        Finding(section, Level.OK, lifetimes),
    ]


def process_findings(s: Settings, port: str | None) -> list[Finding]:
    """The process itself: its HTTP port, its logs, and which secrets came from files."""
    section = "Process"
    out: list[Finding] = []
    if port is not None:
        try:
            out.append(Finding(section, Level.OK, f"PORT is {port_number(port, 'PORT')}."))
        except ValueError as exc:
            out.append(Finding(section, Level.BLOCK, f"{exc} (`ecsbot run --port N` overrides it)"))
    out.append(
        Finding(
            section,
            Level.OK,
            f"Logs: level {s.log_level} (ECSBOT_LOG_LEVEL), format {s.log_format} (ECSBOT_LOG_FORMAT), on stderr.",
        )
    )
    from_files = [env_name(name) for name, file_name in SECRET_FILES.items() if getattr(s, file_name) is not None]
    if from_files:
        out.append(Finding(section, Level.OK, f"Read from *_FILE: {', '.join(from_files)}."))
    return out


def offline_findings(s: Settings, port: str | None = None) -> list[Finding]:
    return [
        *slack_findings(s),
        *cloud_findings(s),
        *storage_findings(s),
        *policy_findings(s),
        *password_findings(s),
        *process_findings(s, port),
    ]


# ----------------------------------------------------------------------------------------------------------------
# Online checks


async def cloud_online(s: Settings) -> Finding:
    from bot.app import credential_source
    from bot.cloud import CloudClient, CloudError, CredentialsUnavailableError, MetadataCredentials
    from bot.cloud.client import RetryPolicy

    section = "Online"
    try:
        source = credential_source(s)
    except ValueError as exc:
        return Finding(section, Level.BLOCK, f"Huawei Cloud: {exc}")
    endpoints = Endpoints.for_region(s.huaweicloud_region, ecs=s.ecs_endpoint, ims=s.ims_endpoint, evs=s.evs_endpoint)
    url = f"{endpoints.ecs}/v1/{(s.huaweicloud_project_id or '').strip()}/cloudservers/detail"
    client = CloudClient(
        source,
        endpoints,
        timeout=10.0,
        retry=RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=1.0, total_timeout=20.0),
    )
    try:
        servers = await client.list_servers(limit=1)
    except CredentialsUnavailableError as exc:
        return Finding(section, Level.BLOCK, f"Huawei Cloud: {exc}")
    except CloudError as exc:
        text = str(exc)
        hint = getattr(exc, "hint", "")
        if hint and hint not in text:
            text = f"{text} {hint}"
        return Finding(section, Level.BLOCK, f"Huawei Cloud: list servers (GET {url}) failed. {text}")
    finally:
        await client.aclose()
    seen = f"first server: {servers[0].name}" if servers else "no servers visible in this project yet"
    expiry = ""
    if isinstance(source, MetadataCredentials) and source.expires_at is not None:
        expiry = f" The agency keys in use expire {source.expires_at:%Y-%m-%d %H:%M:%S} UTC and are renewed before."
    return Finding(
        section, Level.OK, f"Huawei Cloud answered list servers (limit 1): credentials work; {seen}.{expiry}"
    )


async def slack_online(s: Settings) -> Finding:
    import aiohttp
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    section = "Online"
    base = s.slack_api_url if s.slack_api_url.endswith("/") else s.slack_api_url + "/"
    client = AsyncWebClient(token=_secret(s.slack_bot_token), base_url=base, timeout=10)
    try:
        answer = await client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        hint = _SLACK_HINTS.get(error, "See https://api.slack.com/methods/auth.test for what this error means.")
        return Finding(section, Level.BLOCK, f"Slack auth.test failed: {error}. {hint}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Finding(
            section,
            Level.BLOCK,
            f"Slack auth.test could not reach {base}auth.test ({type(exc).__name__}: {exc or 'no answer'}). Check "
            "the network, a proxy, or SLACK_API_URL.",
        )
    finally:
        session = getattr(client, "session", None)
        if session is not None:
            await session.close()
    team = answer.get("team") or answer.get("team_id") or "?"
    return Finding(
        section,
        Level.OK,
        f"Slack auth.test: the token works, bot @{answer.get('user', '?')} ({answer.get('user_id', '?')}) in "
        f"workspace {team}.",
    )


async def online_findings(s: Settings, offline: list[Finding]) -> list[Finding]:
    blocked = {f.section for f in offline if f.level is Level.BLOCK}
    out: list[Finding] = []
    if "Huawei Cloud" in blocked:
        out.append(Finding("Online", Level.BLOCK, "Huawei Cloud: not called; fix the Huawei Cloud lines above first."))
    else:
        out.append(await cloud_online(s))
    if not _secret(s.slack_bot_token) or not _secret(s.slack_bot_token).startswith("xoxb-"):
        out.append(Finding("Online", Level.BLOCK, "Slack: auth.test not called; fix SLACK_BOT_TOKEN first."))
    else:
        out.append(await slack_online(s))
    return out


# ----------------------------------------------------------------------------------------------------------------
# The command


def _print(findings: list[Finding], out: TextIO) -> None:
    section = None
    for finding in findings:
        if finding.section != section:
            section = finding.section
            out.write(f"\n{section}\n")
        out.write(f"  {finding.level.value} {finding.text}\n")


async def run_checks(*, online: bool = False, out: TextIO = sys.stdout, env: Mapping[str, str] | None = None) -> int:
    """0 when nothing blocks the bot from starting (warnings allowed), else 1. `env` replaces the environment."""
    source = "the given values" if env is not None else "the environment and .env"
    out.write(f"ecsbot check: configuration from {source}\n")
    try:
        settings = load_settings(env)
    except ValidationError as exc:
        findings = _setting_errors(exc)
        _print(findings, out)
        out.write(f"\n⛔ {len(findings)} setting(s) cannot be read: fix them, then run `ecsbot check` again.\n")
        return 1
    findings = offline_findings(settings, (os.environ if env is None else env).get("PORT"))
    if online:
        findings += await online_findings(settings, findings)
    _print(findings, out)
    blocks = sum(f.level is Level.BLOCK for f in findings)
    warns = sum(f.level is Level.WARN for f in findings)
    out.write("\n")
    if blocks:
        out.write(f"⛔ {blocks} problem(s), {warns} warning(s): fix the ⛔ lines, then run `ecsbot check` again.\n")
        return 1
    tail = "" if online else " Add --online to try the credentials against the cloud and Slack."
    out.write(f"✅ Ready to run ({warns} warning(s)).{tail}\n")
    return 0
