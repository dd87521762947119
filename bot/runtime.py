"""Builds the bot's parts from Settings and owns their lifecycle; `run_bot` serves it until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs
from bot.cloud import CloudClient
from bot.config import Settings
from bot.domain.policy import Policy, PolicyError
from bot.planner import Planner
from bot.secretbox import SecretBox
from bot.slack.directory import Directory
from bot.slack.edge import SlackEdge
from bot.slack.notifier import Notifier
from bot.slack.presenter import Presenter
from bot.slack.socket_mode import SocketModeAuthError, SocketModeClient
from bot.store import Store, describe_database, open_store
from bot.tracker import Tracker, TrackerConfig
from bot.workflow import Workflow

if TYPE_CHECKING:
    from bot.web.password_page import PasswordPages

log = logging.getLogger(__name__)


class ConfigurationError(RuntimeError):
    """What is wrong with the configuration, in words an operator can act on."""


@dataclass
class Runtime:
    settings: Settings
    store: Store
    cloud: CloudClient
    policy: Policy
    slack: AsyncWebClient
    notifier: Notifier
    presenter: Presenter
    planner: Planner
    workflow: Workflow
    directory: Directory
    tracker: Tracker
    password_pages: PasswordPages | None

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        tracker_config: TrackerConfig | None = None,
        notifier_options: Mapping[str, Any] | None = None,
    ) -> Runtime:
        """`notifier_options` overrides the Slack pacing (tests against a fake Slack that does not rate-limit)."""
        for secret in (
            settings.slack_bot_token,
            settings.slack_signing_secret,
            settings.slack_app_token,
            settings.huaweicloud_sk,
            settings.huaweicloud_security_token,
            settings.slack_client_secret,
            settings.secret_key,
            settings.database_url,
        ):
            logs.register_secret(secret.get_secret_value() if secret else None)
        policy = load_policy(settings.policy_path)
        store = open_store(settings.database)
        cloud = CloudClient.from_settings(settings)
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
        base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
        slack = AsyncWebClient(token=token, base_url=base_url)
        notifier = Notifier(slack, **dict(notifier_options or {}))
        presenter = Presenter(notifier, store)
        box = SecretBox(settings.secret_key.get_secret_value()) if settings.secret_key else None
        workflow = Workflow(store, policy, box)
        config = tracker_config or TrackerConfig(
            poll_interval=settings.poll_interval,
            deadline=settings.job_deadline,
            ecs_rate=settings.ecs_rate,
            lease_ttl=settings.lease_seconds,
        )
        tracker = Tracker(store, cloud, workflow, presenter, config=config, user_id=settings.huaweicloud_user_id)
        workflow.wake = tracker.wake
        pages = None
        if settings.public_url:
            from bot.web.password_page import PasswordPages

            pages = PasswordPages.from_settings(store, workflow, settings, slack)  # lifetimes, Sign in with Slack
        return cls(
            settings=settings,
            store=store,
            cloud=cloud,
            policy=policy,
            slack=slack,
            notifier=notifier,
            presenter=presenter,
            planner=Planner(cloud, policy),
            workflow=workflow,
            directory=Directory(slack, policy.group_ids()),
            tracker=tracker,
            password_pages=pages,
        )

    async def start(self) -> None:
        await self.notifier.start()
        await self.tracker.start()

    async def aclose(self) -> None:
        await self.tracker.stop()
        await self.notifier.aclose()
        await self.cloud.aclose()
        await self.store.aclose()


def load_policy(path: Path) -> Policy:
    if not path.exists():
        raise ConfigurationError(
            f"No policy file at {path}. Copy config/policy.example.toml to {path} and name your requesters and "
            "approvers (deny by default), or point ECSBOT_POLICY at your policy file."
        )
    try:
        return Policy.load(path)
    except PolicyError as exc:
        raise ConfigurationError(str(exc)) from None


def describe(settings: Settings) -> str:
    mode = "Socket Mode" if settings.slack_app_token else "HTTP (/slack/events)"
    endpoint = settings.ecs_endpoint or f"https://ecs.{settings.huaweicloud_region}.myhuaweicloud.com"
    kind = "simulator" if ("127.0.0.1" in endpoint or "localhost" in endpoint) else "Huawei Cloud"
    return (
        f"ecsbot starting: Slack {mode}; cloud {endpoint} ({kind}); database {describe_database(settings.database)}; "
        f"policy {settings.policy_path}"
    )


@dataclass
class Served:
    """The running edges: the aiohttp server and, in Socket Mode, the socket client beside the tracker."""

    runner: web.AppRunner
    socket: SocketModeClient | None = None
    socket_task: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        if self.socket is not None and self.socket_task is not None:
            await self.socket.aclose()
            await asyncio.gather(self.socket_task, return_exceptions=True)
        await self.runner.cleanup()


async def serve(rt: Runtime, *, host: str, port: int) -> Served:
    """Start the background parts first, then the HTTP server, then (with an app token) Socket Mode beside them.

    The tracker never waits for Slack: with Slack unreachable, approved and running jobs are still followed.
    """
    from bot.slack.app import build_bolt_app
    from bot.web.server import build_web_app

    await rt.start()
    bolt = build_bolt_app(rt)
    secret = rt.settings.slack_signing_secret
    edge = SlackEdge(
        bolt,
        signing_secret=secret.get_secret_value() if secret else None,
        tell_user=rt.notifier.ephemeral,
        unavailable=lambda: rt.store.problem,
    )
    app_token = rt.settings.slack_app_token
    socket = (
        SocketModeClient(edge, app_token.get_secret_value(), api_url=rt.settings.slack_api_url)
        if app_token is not None
        else None
    )
    runner = web.AppRunner(build_web_app(rt, None if socket else edge, socket=socket), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    served = Served(runner, socket)
    if socket is not None:
        served.socket_task = asyncio.create_task(socket.run(), name="slack-socket-mode")
    return served


async def run_bot(*, host: str, port: int) -> int:
    settings = Settings()
    logs.configure(settings.log_level)
    try:
        missing = [
            name
            for name, value in (
                ("SLACK_BOT_TOKEN", settings.slack_bot_token),
                ("HUAWEICLOUD_SDK_AK", settings.huaweicloud_ak),
                ("HUAWEICLOUD_SDK_SK", settings.huaweicloud_sk),
                ("HUAWEICLOUD_PROJECT_ID", settings.huaweicloud_project_id),
            )
            if not value
        ]
        if settings.slack_app_token is None and settings.slack_signing_secret is None:
            missing.append("SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode)")
        if missing:
            raise ConfigurationError("Missing settings: " + ", ".join(missing) + ". `ecsbot check` explains each.")
        rt = Runtime.create(settings)
    except (ConfigurationError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    log.info(describe(settings))
    served = await serve(rt, host=host, port=port)
    log.info("listening on %s:%d", host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
    if served.socket_task is not None:
        waits.add(served.socket_task)
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    task = served.socket_task
    if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
        failure = task.exception()
        if isinstance(failure, SocketModeAuthError):
            log.error("cannot start: %s", failure)
            code = 2
        else:
            log.error("Socket Mode stopped: %s", type(failure).__name__, exc_info=failure)
            code = 1
    log.info("stopping")
    await served.aclose()
    await rt.aclose()
    for waiter in waits:
        waiter.cancel()
    return code
