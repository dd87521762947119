"""The composition root: reads the settings once, builds every part from plain values, hands each listener only
what it uses, and serves them (`ecsbot run`). Nothing below this module reads `Settings`."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web
from pydantic import SecretStr, ValidationError
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs
from bot.cloud import CloudClient, Credentials, CredentialSource, Endpoints, MetadataCredentials
from bot.config import Settings
from bot.domain.policy import Policy, PolicyError
from bot.domain.since import Since, since_moment
from bot.secretbox import SecretBox, SecretBoxError
from bot.services import audit_export
from bot.services.backups import Pruner
from bot.services.fleet import FleetService
from bot.services.planner import Planner
from bot.services.retention import Retention
from bot.services.tracker import Tracker, TrackerConfig
from bot.services.workflow import Workflow
from bot.slack.after_ack import AfterAck
from bot.slack.app import build_bolt_app
from bot.slack.client import close_connections, share_connections, web_client
from bot.slack.digests import EndDigests
from bot.slack.directory import Directory
from bot.slack.edge import SlackEdge
from bot.slack.fleet_presenter import FleetMessages
from bot.slack.listeners import approval, changeos
from bot.slack.listeners import fleet as fleet_listeners
from bot.slack.notifier import Notifier
from bot.slack.presenter import Presenter
from bot.slack.socket_mode import SocketModeAuthError, SocketModeClient
from bot.store import Store, StoreError, describe_database, open_store
from bot.web.password_page import PasswordPages
from bot.web.readiness import Cached, Readiness, cloud_probe, slack_probe, store_probe
from bot.web.server import build_metrics_app, build_web_app
from bot.web.slack_signin import SlackSignIn

log = logging.getLogger(__name__)


class ConfigurationError(RuntimeError):
    """What is wrong with the configuration, in words an operator can act on."""


@dataclass
class Bot:
    """The parts, built once; kept here for their lifecycle (and for the tests' drivers). No listener sees it."""

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
    fleet: FleetService
    password_pages: PasswordPages | None

    async def start(self) -> None:
        share_connections(self.slack)
        await self.notifier.start()
        await self.tracker.start()

    async def aclose(self) -> None:
        await self.tracker.stop()
        await self.fleet.aclose()
        await self.notifier.aclose()
        await close_connections(self.slack)
        await self.cloud.aclose()
        await self.store.aclose()


def build(
    settings: Settings,
    *,
    tracker_config: TrackerConfig | None = None,
    notifier_options: Mapping[str, Any] | None = None,
) -> Bot:
    """`notifier_options` overrides the Slack pacing (tests against a fake Slack that does not rate-limit)."""
    for secret in settings.secret_values():
        logs.register_secret(secret)
    policy = load_policy(settings.policy_path)
    store = open_store(settings.database)
    cloud = cloud_client(settings)
    slack = web_client(_secret(settings.slack_bot_token), _api_url(settings))
    options = dict(notifier_options or {})
    notifier = Notifier(slack, **options)
    digests = EndDigests(notifier, post_interval=1.0 / float(options.get("posts_per_second_per_channel", 1.0)))
    presenter = Presenter(notifier, store, digests=digests)
    box = SecretBox(settings.secret_key, old_keys=settings.old_secret_keys) if settings.secret_key else None
    workflow = Workflow(store, policy, box, draft_password_ttl=timedelta(minutes=settings.draft_password_minutes))
    config = tracker_config or TrackerConfig(
        poll_interval=settings.poll_interval,
        deadline=settings.job_deadline,
        ecs_rate=settings.ecs_rate,
        lease_ttl=settings.lease_seconds,
    )
    pruner = Pruner(store, cloud, policy, on_deleted=presenter.backup_gone)
    tracker = Tracker(
        store,
        cloud,
        workflow,
        presenter,
        config=config,
        user_id=settings.huaweicloud_user_id,
        pruner=pruner,
        retention=Retention(store, days=settings.retention_days),
    )
    workflow.wake = tracker.wake
    planner = Planner(cloud, policy)
    fleet = FleetService(
        store,
        planner,
        policy,
        FleetMessages(notifier),
        get_server=cloud.get_server,
        budget=tracker.budget,
        wake=tracker.wake,
        keypair_login=bool(settings.huaweicloud_user_id),
        health_interval=config.poll_interval,
    )
    tracker.on_lead = fleet.recover  # only the lease holder resumes rollouts
    tracker.on_end = fleet.child_ended
    return Bot(
        settings=settings,
        store=store,
        cloud=cloud,
        policy=policy,
        slack=slack,
        notifier=notifier,
        presenter=presenter,
        planner=planner,
        workflow=workflow,
        directory=Directory(slack, policy.group_ids()),
        tracker=tracker,
        fleet=fleet,
        password_pages=password_pages(settings, store, workflow, slack) if settings.public_url else None,
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None


def _api_url(settings: Settings) -> str:
    url = settings.slack_api_url
    return url if url.endswith("/") else url + "/"


def credential_source(settings: Settings) -> CredentialSource:
    """Environment keys first (permanent, or temporary with a security token), else the ECS agency when asked for."""
    agency = settings.huaweicloud_credentials == "agency"
    required: list[tuple[str, str | SecretStr | None]] = [("HUAWEICLOUD_PROJECT_ID", settings.huaweicloud_project_id)]
    if not agency:
        required = [
            ("HUAWEICLOUD_SDK_AK", settings.huaweicloud_ak),
            ("HUAWEICLOUD_SDK_SK", settings.huaweicloud_sk),
            *required,
        ]
    missing = [
        env for env, value in required if not value or (isinstance(value, SecretStr) and not value.get_secret_value())
    ]
    if missing:
        where = "" if agency else " (or, on an ECS with an agency, set HUAWEICLOUD_CREDENTIALS=agency)"
        raise ValueError(f"Huawei Cloud credentials are incomplete: set {', '.join(missing)}{where}.")
    project = settings.huaweicloud_project_id
    assert project
    if agency:
        return MetadataCredentials(project, user_id=settings.huaweicloud_user_id, url=settings.metadata_url)
    assert settings.huaweicloud_ak and settings.huaweicloud_sk
    return Credentials(
        access_key=settings.huaweicloud_ak,
        secret_key=settings.huaweicloud_sk,
        project_id=project,
        user_id=settings.huaweicloud_user_id,
        security_token=settings.huaweicloud_security_token,
    )


def endpoints(settings: Settings) -> Endpoints:
    return Endpoints.for_region(
        settings.huaweicloud_region, ecs=settings.ecs_endpoint, ims=settings.ims_endpoint, evs=settings.evs_endpoint
    )


def cloud_client(settings: Settings) -> CloudClient:
    return CloudClient(credential_source(settings), endpoints(settings))


def password_pages(settings: Settings, store: Store, workflow: Workflow, bot: AsyncWebClient) -> PasswordPages:
    """The secure password page: link lifetime from the settings, Sign in with Slack when a client is configured."""
    signin = None
    if settings.slack_client_id and settings.slack_client_secret:
        signin = SlackSignIn(
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret,
            authorize_url=settings.slack_oidc_authorize_url,
            api=web_client(None, _api_url(settings)),
            bot=bot,
        )
    return PasswordPages(
        store, workflow, settings.public_url or "", ttl_seconds=settings.password_link_minutes * 60, signin=signin
    )


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


def wire_listeners(bot: Bot) -> changeos.PlanCard:
    """The plan card, told by the secure page when a password is set or its link used up."""
    card = changeos.PlanCard(
        planner=bot.planner,
        policy=bot.policy,
        workflow=bot.workflow,
        store=bot.store,
        presenter=bot.presenter,
        notifier=bot.notifier,
        directory=bot.directory,
        slack=bot.slack,
        password_pages=bot.password_pages,
        keypair_login=bool(bot.settings.huaweicloud_user_id),
    )
    if bot.password_pages is not None:
        bot.password_pages.on_set = card.password_set
        bot.password_pages.on_open = card.password_set  # the link is used up: the form shows a fresh one
    return card


def fleet_card(bot: Bot) -> fleet_listeners.FleetCard:
    return fleet_listeners.FleetCard(
        planner=bot.planner,
        policy=bot.policy,
        cloud=bot.cloud,
        fleet=bot.fleet,
        notifier=bot.notifier,
        directory=bot.directory,
    )


@dataclass
class Served:
    """The running edges: the aiohttp server and, in Socket Mode, the socket client beside the tracker."""

    runner: web.AppRunner
    after_ack: AfterAck
    socket: SocketModeClient | None = None
    socket_task: asyncio.Task[None] | None = None
    metrics_runner: web.AppRunner | None = None  # /metrics on ECSBOT_METRICS_PORT

    async def aclose(self) -> None:
        if self.socket is not None and self.socket_task is not None:
            await self.socket.aclose()
            await asyncio.gather(self.socket_task, return_exceptions=True)
        if self.metrics_runner is not None:
            await self.metrics_runner.cleanup()
        await self.runner.cleanup()
        await self.after_ack.aclose()  # no request comes in any more: what followed the last acks ends, or is cut


def readiness(bot: Bot) -> Readiness:
    """/readyz: the store asked each time (cheap); the cloud keys and the Slack token trusted for a while."""
    ttl = bot.settings.ready_cache_seconds
    cloud = bot.cloud
    return Readiness(
        {
            "store": store_probe(bot.store),
            "cloud": Cached(cloud_probe(cloud), ttl=ttl, fresh=lambda: cloud.last_accepted),
            "slack": Cached(slack_probe(bot.slack), ttl=ttl),
        },
        role=lambda: bot.tracker.role,
    )


async def serve(bot: Bot, *, host: str, port: int) -> Served:
    """Start the background parts first, then the HTTP server, then (with an app token) Socket Mode beside them.

    The tracker never waits for Slack: with Slack unreachable, approved and running jobs are still followed. An
    `OSError` from binding the port leaves nothing of the server behind (the caller closes the bot); so does a
    `ConfigurationError` for ECSBOT_METRICS_PORT. /metrics goes to that port when set, else to the bot's port in
    HTTP mode (Socket Mode: nowhere).
    """
    await bot.start()
    card, fleet = wire_listeners(bot), fleet_card(bot)
    card.fleet = fleet
    later = AfterAck()
    bolt = build_bolt_app(
        bot.slack,
        partial(changeos.register, card=card, later=later),
        partial(fleet_listeners.register, card=fleet, later=later),
        partial(
            approval.register,
            workflow=bot.workflow,
            store=bot.store,
            policy=bot.policy,
            presenter=bot.presenter,
            notifier=bot.notifier,
            directory=bot.directory,
            later=later,
        ),
    )
    settings = bot.settings
    store = bot.store
    edge = SlackEdge(
        bolt,
        signing_secret=_secret(settings.slack_signing_secret),
        tell_user=bot.notifier.ephemeral,
        unavailable=lambda: store.problem,
        after_ack=later,
    )
    app_token = _secret(settings.slack_app_token)
    socket = SocketModeClient(edge, app_token, api_url=settings.slack_api_url) if app_token else None
    web_app = build_web_app(
        store=bot.store,
        tracker=bot.tracker,
        edge=None if socket else edge,
        socket=socket,
        password_pages=bot.password_pages,
        readiness=readiness(bot),
        serve_metrics=socket is None and settings.metrics_port is None,
        database=describe_database(settings.database),
    )
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    metrics_runner = None
    if settings.metrics_port is not None:
        metrics_runner = web.AppRunner(build_metrics_app(), access_log=None)
        await metrics_runner.setup()
        try:
            await web.TCPSite(metrics_runner, host, settings.metrics_port).start()
        except OSError as exc:
            await metrics_runner.cleanup()
            await runner.cleanup()
            raise ConfigurationError(_bind_problem(exc, host, settings.metrics_port, "ECSBOT_METRICS_PORT")) from None
    served = Served(runner, later, socket, metrics_runner=metrics_runner)
    if socket is not None:
        served.socket_task = asyncio.create_task(socket.run(), name="slack-socket-mode")
    return served


def _admin_settings() -> Settings:
    """The settings of a one-off command (`ecsbot backups prune`, `retention`, `audit export`, `rotate-key`), with
    the log's scrubber armed before anything runs."""
    logs.configure()
    settings = Settings()
    for secret in settings.secret_values():
        logs.register_secret(secret)
    return settings


async def run_prune(*, dry_run: bool) -> int:
    """`ecsbot backups prune`: retention once, from this machine, with the bot's settings, policy and database.
    Prints each backup deleted (or, with `dry_run`, that would be); 1 when a deletion failed."""
    settings = _admin_settings()
    try:
        policy = load_policy(settings.policy_path)
        cloud = cloud_client(settings)
    except (ConfigurationError, ValueError) as exc:
        print(f"ecsbot: cannot prune: {exc}")
        return 2
    store = open_store(settings.database)
    try:
        deletions = await Pruner(store, cloud, policy).prune(datetime.now(UTC), dry_run=dry_run)
    finally:
        await cloud.aclose()
        await store.aclose()
    verb = "would delete" if dry_run else "deleted"
    for d in deletions:
        state = f"NOT deleted: {d.error}" if d.error else (verb if dry_run or d.confirmed else f"{verb} (still listed)")
        print(f"{d.name} ({d.image_id}) of {d.request_id}: {state} · {d.why}")
    if not deletions:
        print("No backup is past its retention.")
    return 1 if any(d.error for d in deletions) else 0


async def run_retention() -> int:
    """`ecsbot retention run`: what the tracker's leader does every hour, once, now; prints what went."""
    settings = _admin_settings()
    try:
        store = open_store(settings.database)
    except StoreError as exc:
        return _say(f"ecsbot: cannot run retention: {exc}", 2)
    try:
        pruned = await Retention(store, days=settings.retention_days).run(datetime.now(UTC))
    finally:
        await store.aclose()
    if not settings.retention_days:
        print("ECSBOT_RETENTION_DAYS is 0: every request and its audit trail is kept.")
    else:
        print(
            f"Removed {pruned.requests} requests that ended before {pruned.before:%Y-%m-%d %H:%M} UTC, with their "
            f"{pruned.audit_rows} audit rows. Each server's newest request is kept and its audit trail says what went."
        )
    print(f"Removed {pruned.expired} expired secrets, password links and page sessions.")
    return 0


async def run_audit_export(*, since: Since | None, fmt: str, out: TextIO) -> int:
    """`ecsbot audit export`: the audit trail from `since` on, streamed to `out` (a file the CLI opened, or stdout);
    the count goes to stderr, so stdout carries only the rows."""
    settings = _admin_settings()
    try:
        store = open_store(settings.database)
    except StoreError as exc:
        return _say(f"ecsbot: cannot export the audit trail: {exc}", 2)
    moment = since_moment(since, datetime.now(UTC)) if since is not None else None
    try:
        n = await audit_export.export(store.audit_since(moment), out, fmt)
    finally:
        await store.aclose()
    out.flush()
    print(f"Exported {n} audit rows" + (f" from {moment:%Y-%m-%d %H:%M} UTC on." if moment else "."), file=sys.stderr)
    return 0


async def run_rotate_key() -> int:
    """`ecsbot rotate-key`: every stored secret re-encrypted with ECSBOT_SECRET_KEY, in one transaction."""
    settings = _admin_settings()
    if settings.secret_key is None:
        return _say("ecsbot: ECSBOT_SECRET_KEY is not set: there is no key to re-encrypt with.", 2)
    try:
        box = SecretBox(settings.secret_key, old_keys=settings.old_secret_keys)
        store = open_store(settings.database)
    except (SecretBoxError, StoreError) as exc:
        return _say(f"ecsbot: cannot rotate the key: {exc}", 2)
    try:
        done, same = await store.reencrypt_secrets(lambda token: None if box.is_current(token) else box.rotate(token))
    except SecretBoxError as exc:
        return _say(f"ecsbot: nothing was changed. {exc}", 1)
    finally:
        await store.aclose()
    print(
        f"Re-encrypted {done} stored secrets with the current ECSBOT_SECRET_KEY; {same} already used it. Once every "
        "replica runs with this key, ECSBOT_SECRET_KEYS_OLD can go."
    )
    return 0


def _say(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code


def missing_settings(settings: Settings) -> list[str]:
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
    return missing


def _bind_problem(exc: OSError, host: str, port: int, setting: str = "PORT (or --port)") -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use: stop the other process or set {setting} to a free one."
    if exc.errno == errno.EACCES:
        return f"port {port} needs privileges this process lacks: set {setting} to 1024 or above."
    setting = "PORT" if setting.startswith("PORT") else setting
    return f"cannot listen on {host}:{port} ({exc.strerror or type(exc).__name__}): check --host and {setting}."


async def run_bot(*, host: str, port: int) -> int:
    """0 after a signal; 2 when the configuration or the port stops it (one sentence, no traceback); 1 when Socket
    Mode fails for another reason."""
    logs.configure()
    try:
        settings = Settings()
        logs.configure(settings.log_level, settings.log_format)
        missing = missing_settings(settings)
        if missing:
            raise ConfigurationError("Missing settings: " + ", ".join(missing) + ". `ecsbot check` explains each.")
        bot = build(settings)
    except ValidationError:
        raise  # the CLI says it in one sentence, worded as `ecsbot check` words it
    except (ConfigurationError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    log.info(describe(settings))
    try:
        served = await serve(bot, host=host, port=port)
    except (OSError, ConfigurationError) as exc:
        problem = str(exc) if isinstance(exc, ConfigurationError) else _bind_problem(exc, host, port)
        log.error("cannot start: %s", problem)
        await bot.aclose()
        return 2
    log.info("listening on %s:%d", host, port)
    if served.metrics_runner is not None:
        log.info("metrics on %s:%d/metrics", host, settings.metrics_port)
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
    await bot.aclose()
    for waiter in waits:
        waiter.cancel()
    return code
