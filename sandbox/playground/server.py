"""The playground's web server: the page (static files) and the small API the page posts what a person does to.

`Playground` starts a LocalStack (the seeded simulator, the fake Slack and the real bot with its password page) and
serves the page beside it; `run_playground` is `ecsbot playground`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import httpx
from aiohttp import web

from bot.domain.policy import Policy, PolicyError
from sandbox.devtools.stack import DEFAULT_POLICY, LocalStack, StackOptions
from sandbox.playground.cast import DEFAULT_NAMES, Cast, cast_for
from sandbox.playground.client import RefusedByClient, SlackClient
from sandbox.playground.composer import parse_command_line

STATIC = Path(__file__).parent / "static"
DEFAULT_SPEED = 20.0  # a 3-5 minute OS change takes 10-15 s: quick, yet every step can be watched
FAULTS: dict[str, dict[str, Any]] = {
    "fail_next_job": {"fail_jobs": {}},
    "slow_cloud": {"route": "*", "latency_ms": 1200},
    "throttle": {"route": "*", "burst_429": 6, "retry_after": 1},
}

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(ValueError):
    """The page sent something this API cannot use; the message says what."""


def _str(data: dict[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key!r} must be a non-empty string")
    return value


def _dict(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise BadRequest(f"{key!r} must be an object")
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.read())
    except ValueError:
        raise BadRequest("the body must be JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bad input is a 400 with a sentence; anything unexpected a 500 naming the error, never a traceback."""
    try:
        return await handler(request)
    except (BadRequest, RefusedByClient) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except web.HTTPException:
        raise
    except httpx.HTTPError as exc:
        return web.json_response(
            {"error": f"the bot or the simulator did not answer ({type(exc).__name__})"}, status=502
        )
    except Exception as exc:
        log.exception("playground API failed")
        return web.json_response({"error": f"the playground failed: {type(exc).__name__}"}, status=500)


class Playground:
    """Start with `async with Playground() as pg:`; `pg.url` is the page."""

    def __init__(
        self,
        *,
        policy: str = DEFAULT_POLICY,
        speed: float = DEFAULT_SPEED,
        seed: int = 7,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.cast: Cast = cast_for(Policy.parse(policy))
        self.stack = LocalStack(
            StackOptions(
                speed=speed,
                seed=seed,
                policy=policy,
                public_url=True,
                poll_interval=0.3,
                deadline=600.0,
                # A real configuration in the environment must not leak in: no Socket Mode, no real Slack sign-in.
                extra_settings={"slack_app_token": None, "slack_client_id": None, "slack_client_secret": None},
            )
        )
        self.host, self.port = host, port
        self.url = ""
        self.client: SlackClient | None = None
        self._runner: web.AppRunner | None = None
        self._http = httpx.AsyncClient(timeout=10.0)

    async def start(self) -> Playground:
        stack = await self.stack.start()
        fake = stack.slack
        for person in self.cast.people:
            fake.set_user(person.id, name=person.name, real_name=person.real_name)
        for group, members in self.cast.groups.items():
            fake.set_usergroup(group, members)
        assert stack.sender is not None
        self.client = SlackClient(fake, stack.sender, self.cast)
        app = web.Application(middlewares=[_errors])
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC)
        app.router.add_get("/api/config", self._config)
        app.router.add_post("/api/command", self._command)
        app.router.add_post("/api/action", self._action)
        app.router.add_post("/api/suggest", self._suggest)
        app.router.add_post("/api/submit", self._submit)
        app.router.add_post("/api/close", self._close)
        app.router.add_get("/api/faults", self._faults)
        app.router.add_post("/api/faults", self._add_fault)
        app.router.add_delete("/api/faults", self._clear_faults)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError:
            await self.stop()
            raise
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._http.aclose()
        await self.stack.stop()

    async def __aenter__(self) -> Playground:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _client(self) -> SlackClient:
        assert self.client is not None
        return self.client

    # ------------------------------------------------------------------ the page and its configuration

    async def _index(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def _config(self, _: web.Request) -> web.Response:
        stack, people = self.stack, self.cast.people
        return web.json_response(
            {
                "state_url": stack.slack.url + "/_client/state",
                "bot_url": stack.url,
                "simulator_url": stack.sim.base_url,
                "people": [vars(p) for p in people],
                "channels": [vars(c) for c in self.cast.channels],
                "names": {**{uid: name for uid, (name, _) in DEFAULT_NAMES.items()}, **{p.id: p.name for p in people}},
                "team_url": "https://acme.slack.com/",
            }
        )

    # ------------------------------------------------------------------ what a person does

    async def _command(self, request: web.Request) -> web.Response:
        data = await _body(request)
        line = _str(data, "line") or ""
        parsed = parse_command_line(line)
        if parsed is None:
            raise BadRequest("only slash commands reach the bot here: type /changeos …")
        user, channel = _str(data, "user") or "", _str(data, "channel") or ""
        answer = await self._client().command(user, channel, *parsed)
        return web.json_response(answer.to_json())

    async def _action(self, request: web.Request) -> web.Response:
        data = await _body(request)
        user, action_id = _str(data, "user") or "", _str(data, "action_id") or ""
        block_id, value = _str(data, "block_id", optional=True), _str(data, "value", optional=True)
        option = data.get("selected_option")
        if option is not None and not isinstance(option, dict):
            raise BadRequest("'selected_option' must be an option object")
        client = self._client()
        if data.get("view_id"):
            answer = await client.view_action(
                user,
                _str(data, "view_id") or "",
                action_id,
                block_id,
                _dict(data, "values"),
                value=value,
                selected_option=option,
            )
        else:
            channel, ts = _str(data, "channel") or "", _str(data, "ts") or ""
            answer = await client.message_action(
                user, channel, ts, action_id, block_id, value=value, selected_option=option
            )
        return web.json_response(answer.to_json())

    async def _suggest(self, request: web.Request) -> web.Response:
        data = await _body(request)
        query = data.get("value", "")
        if not isinstance(query, str):
            raise BadRequest("'value' must be the typed text")
        options = await self._client().suggest(
            _str(data, "user") or "",
            _str(data, "view_id") or "",
            _str(data, "action_id") or "",
            _str(data, "block_id") or "",
            query,
            _dict(data, "values"),
        )
        return web.json_response(options)

    async def _submit(self, request: web.Request) -> web.Response:
        data = await _body(request)
        answer = await self._client().submit(
            _str(data, "user") or "", _str(data, "view_id") or "", _dict(data, "values")
        )
        return web.json_response(answer.to_json())

    async def _close(self, request: web.Request) -> web.Response:
        data = await _body(request)
        answer = await self._client().close(_str(data, "user") or "", _str(data, "view_id") or "")
        return web.json_response(answer.to_json())

    # ------------------------------------------------------------------ simulator faults

    async def _sim_faults(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = self.stack.sim.base_url + "/_sim/faults"
        response = await self._http.request(method, url, json=body)
        if response.status_code >= 400:
            raise BadRequest(response.json().get("error", f"the simulator answered HTTP {response.status_code}"))
        return _fault_summary(response.json())

    async def _faults(self, _: web.Request) -> web.Response:
        return web.json_response(await self._sim_faults("GET"))

    async def _add_fault(self, request: web.Request) -> web.Response:
        name = _str(await _body(request), "fault") or ""
        if name not in FAULTS:
            raise BadRequest(f"unknown fault {name!r}; use one of: {', '.join(FAULTS)}")
        await self._sim_faults("POST", FAULTS[name])
        return web.json_response(await self._sim_faults("GET"))

    async def _clear_faults(self, _: web.Request) -> web.Response:
        return web.json_response(await self._sim_faults("DELETE"))


def _fault_summary(data: dict[str, Any]) -> dict[str, Any]:
    """What the page's switches show: jobs set to fail, added latency, 429s left."""
    rules = data.get("rules") or []
    return {
        "fail_jobs": len(data.get("fail_jobs") or []),
        "latency_ms": sum(int(r.get("latency_ms") or 0) for r in rules),
        "throttled_left": sum(int(r.get("burst_429_left") or 0) for r in rules),
    }


# ---------------------------------------------------------------------------------------------------- the command


def read_policy(path: Path | None) -> str:
    """The policy text to run with: the embedded default, or `path` checked the way the bot checks it."""
    if path is None:
        return DEFAULT_POLICY
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read the policy {path}: {exc.strerror or exc}") from None
    Policy.parse(text, source=str(path))
    return text


async def run_playground(
    *,
    policy: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    speed: float = DEFAULT_SPEED,
    seed: int = 7,
    out: TextIO = sys.stdout,
) -> int:
    try:
        text = read_policy(policy)
    except PolicyError as exc:
        print(f"ecsbot playground: {exc}", file=sys.stderr)
        return 2
    try:
        pg = await Playground(policy=text, speed=speed, seed=seed, host=host, port=port).start()
    except OSError as exc:
        print(f"ecsbot playground: cannot listen on {host}:{port} ({exc.strerror}); try --port 0", file=sys.stderr)
        return 2
    requester, approver = pg.cast.person("requester"), pg.cast.person("approver")
    print(f"ecsbot playground: open {pg.url}", file=out)
    print(
        f"  the real bot at {pg.stack.url}, the fake Slack at {pg.stack.slack.url}, the simulator at "
        f"{pg.stack.sim.base_url} (speed {speed:g}, seed {seed})",
        file=out,
    )
    print(
        f"  try: as @{requester.name}, type /changeos web-01 in #change-requests; then approve as @{approver.name}."
        " Ctrl-C stops everything.",
        file=out,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await pg.stop()
    return 0
