"""The whole bot on loopback: simulator + fake Slack + the real bot served over HTTP, for tests, demo and benchmarks.

Everything is real except Slack's and Huawei's own servers: the bot signs its cloud calls, the simulator checks the
signatures, and Slack requests reach the bot signed exactly as Slack signs them.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.app import Bot, Served, build, serve
from bot.config import Settings
from bot.secretbox import SecretBox
from bot.services.tracker import TrackerConfig
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.fake_slack import FakeSlack
from sandbox.simulator.server import SimulatorServer

REQUESTER = "U01REQ0001"
APPROVER = "U01APR0001"
OUTSIDER = "U01OUT0001"
OPS_GROUP = "S01OPS0001"
GROUP_APPROVER = "U01GRP0001"
COMMAND_CHANNEL = "C01CHAN001"
APPROVALS_CHANNEL = "C01APPROVE1"
INCIDENT_CHANNEL = "C01INCIDNT1"
SIGNING_SECRET = "stack-signing-secret-0000000000"

DEFAULT_POLICY = f"""
approvals_channel = "{APPROVALS_CHANNEL}"
notify_channels = ["{INCIDENT_CHANNEL}"]
request_expiry_minutes = 60
allow_password_in_modal = true

[[rules]]
name = "every server"
servers = ["*"]
requesters = ["{REQUESTER}"]
approvers = ["{APPROVER}", "{OPS_GROUP}"]
approvals_required = 1
images = ["*"]
"""


@dataclass
class StackOptions:
    speed: float = 1000.0  # a 3-5 minute change takes 0.2-0.3 s; a test that acts mid-job asks for less
    catalogue_size: int | None = 0  # generated IMS images beside the curated ones; None = the fixtures' (2,500)
    seed: int = 7
    policy: str = DEFAULT_POLICY
    poll_interval: float = 0.2
    first_poll: float = 0.05
    deadline: float = 120.0
    reconcile_grace: float = 1.0
    ecs_rate: float = 200.0
    public_url: bool = False
    sign_in: bool = False  # Sign in with Slack on the password page, the fake Slack as the OpenID provider
    secret_key: bool = True
    slack_rate_limits: bool = False
    socket_mode: bool = False  # Slack requests come over the fake Slack's Socket Mode websocket instead of HTTP
    agency: bool = False  # the bot signs with ECS agency keys from the simulator's metadata service
    extra_settings: dict[str, Any] = field(default_factory=dict)


class LocalStack:
    """Start with `async with LocalStack(...) as stack:`; `stack.command(...)` and friends drive it like Slack."""

    def __init__(self, options: StackOptions | None = None, *, workdir: Path | None = None) -> None:
        self.options = options or StackOptions()
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="ecsbot-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.sim = SimulatorServer(
            speed=self.options.speed, seed=self.options.seed, catalogue_size=self.options.catalogue_size
        )
        self.slack = FakeSlack(rate_limits=self.options.slack_rate_limits)
        self.rt: Bot | None = None  # the composition root's parts, for the tests to look into
        self.served: Served | None = None
        self.url = ""
        self.sender: sr.SlackSender | None = None

    def settings(self) -> Settings:
        """Settings that point the bot at this stack's simulator and fake Slack (also for a bot subprocess)."""
        policy = self.workdir / "policy.toml"
        policy.write_text(self.options.policy)
        values: dict[str, Any] = {
            "slack_bot_token": self.slack.bot_token,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": self.slack.api_url,
            "huaweicloud_ak": self.sim.access_key,
            "huaweicloud_sk": self.sim.secret_key.get_secret_value(),
            "huaweicloud_project_id": self.sim.project_id,
            "huaweicloud_user_id": self.sim.user_id,
            "ecs_endpoint": self.sim.base_url,
            "ims_endpoint": self.sim.base_url,
            "evs_endpoint": self.sim.base_url,
            "db_path": self.workdir / "ecsbot.db",
            "policy_path": policy,
            "poll_interval": self.options.poll_interval,
            "job_deadline": self.options.deadline,
            "ecs_rate": self.options.ecs_rate,
        }
        if self.options.agency:
            values.update(huaweicloud_credentials="agency", metadata_url=self.sim.base_url)
            values.pop("huaweicloud_ak"), values.pop("huaweicloud_sk")
        if self.options.socket_mode:
            values["slack_app_token"] = self.slack.socket_mode.app_token
            values["slack_signing_secret"] = None
        if self.options.secret_key:
            values["secret_key"] = _stable_key(self.workdir)
        if self.options.public_url:
            values["public_url"] = "http://127.0.0.1:0"  # replaced by the real address once serving
        if self.options.sign_in:
            from sandbox.devtools.fake_openid import CLIENT_ID, CLIENT_SECRET

            values.update(
                slack_client_id=CLIENT_ID,
                slack_client_secret=CLIENT_SECRET,
                slack_oidc_authorize_url=self.slack.openid_authorize_url,
            )
        values.update(self.options.extra_settings)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings' init-only option

    def notifier_options(self) -> dict[str, float]:
        """Slack's real pacing only when the fake Slack enforces Slack's limits; otherwise nothing waits on it."""
        if self.options.slack_rate_limits:
            return {}
        return {
            "posts_per_second_per_channel": 100.0,
            "post_burst": 100,
            "updates_per_minute": 6000.0,
            "workspace_posts_per_minute": 6000.0,
        }

    def tracker_config(self) -> TrackerConfig:
        o = self.options
        return TrackerConfig(
            poll_interval=o.poll_interval,
            first_poll=o.first_poll,
            deadline=o.deadline,
            ecs_rate=o.ecs_rate,
            reconcile_grace=o.reconcile_grace,
            lease_ttl=3.0,
        )

    async def start(self) -> LocalStack:
        await self.sim.start()
        await self.slack.start()
        self.slack.set_usergroup(OPS_GROUP, [GROUP_APPROVER])
        await self.start_bot()
        return self

    async def start_bot(self) -> None:
        settings = self.settings()
        self.rt = build(settings, tracker_config=self.tracker_config(), notifier_options=self.notifier_options())
        self.served = await serve(self.rt, host="127.0.0.1", port=0)
        host, port = self.served.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        if self.rt.password_pages is not None:
            self.rt.password_pages.public_url = self.url
        self.sender = sr.SlackSender(self.url + "/slack/events", SIGNING_SECRET)

    async def stop_bot(self) -> None:
        if self.sender is not None:
            await self.sender.aclose()
            self.sender = None
        if self.served is not None:
            await self.served.aclose()
            self.served = None
        if self.rt is not None:
            await self.rt.aclose()
            self.rt = None

    async def stop(self) -> None:
        await self.stop_bot()
        await self.slack.stop()
        await self.sim.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def __aenter__(self) -> LocalStack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ acting like Slack

    async def command(self, text: str, *, user: str = REQUESTER, channel: str = COMMAND_CHANNEL):
        assert self.sender is not None
        url = self.slack.response_url(secrets.token_hex(6), channel=channel, user_id=user)
        body = sr.slash_command(text, user_id=user, channel_id=channel, response_url=url)
        return await self.sender.send(body)

    async def plan_view(self, *, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The modal once the lookups are back (the first views.update after views.open)."""
        call = await self.slack.wait_for("views.update", lambda c: c.ok, timeout=timeout)
        return self.slack.views[call.body.get("view_id") or next(iter(self.slack.views))]

    async def submit(self, view: dict[str, Any], overrides: dict[str, Any] | None = None, *, user: str = REQUESTER):
        assert self.sender is not None
        values = sr.state_from_view(view, overrides or {})
        return await self.sender.send(sr.view_submission(user_id=user, view=view, values=values))

    async def click(self, action_id: str, request_id: str, *, user: str, message: dict[str, Any] | None = None):
        assert self.sender is not None and self.rt is not None
        request = await self.rt.store.get(request_id)
        assert request is not None and request.approval_ts is not None
        card = self.slack.message(request.approvals_channel, request.approval_ts)
        body = sr.block_actions(
            user_id=user,
            action_id=action_id,
            value=request_id,
            block_id=f"cr_actions:{request_id}",
            container="message",
            message=message or card.as_payload(),
            channel_id=card.channel,
            response_url=self.slack.response_url(secrets.token_hex(6)),
        )
        return await self.sender.send(body)


def _stable_key(workdir: Path) -> str:
    """One key per stack directory, so a restarted bot can still read what the first one encrypted."""
    path = workdir / "secret.key"
    if not path.exists():
        path.write_text(SecretBox.generate_key())
    return path.read_text().strip()
