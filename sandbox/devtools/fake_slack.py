"""A fake Slack Web API on loopback, for tests, benchmarks, `ecsbot demo` and sandbox mode.

It answers in Slack's shapes (Slack's documented Web API responses and errors), rejects Block Kit payloads that Slack
would reject, can rate-limit like Slack's tiers, and records every request so a test can assert on what the bot
sent, and that nothing invalid was ever sent (`errors()`).

Run it alone with `python -m sandbox.devtools.fake_slack --port 3001` to point a bot at it by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import functools
import json
import math
import random
import re
import string
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from sandbox.devtools.fake_openid import METHODS as OPENID_METHODS
from sandbox.devtools.fake_openid import FakeOpenID
from sandbox.devtools.fake_socket_mode import FakeSocketMode
from sandbox.devtools.waiting import until

T = TypeVar("T")

DEFAULT_BOT_TOKEN = "xoxb-test"
BOT_USER_ID = "U01BOT0001"
BOT_ID = "B01BOT0001"
APP_ID = "A01APP0001"
TEAM_DOMAIN = "acme"
TEAM_NAME = "Acme"
BOT_NAME = "changeos"

MAX_MESSAGE_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_MODAL_TITLE = 24
MAX_PRIVATE_METADATA = 3000
MAX_VIEW_STACK = 3
MAX_MESSAGE_TEXT = 40000
RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_SECONDS = 30 * 60  # "up to 5 times within 30 minutes of the user's invocation"

TRIGGER_ID_RE = re.compile(r"^\d+\.\d+\.[0-9a-fA-F]+$")
USER_ID_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")
_FIRST_TS_MICROS = 1_718_000_000_000_100
_TS_STEP_MICROS = 100

# Slack's tiers (per method, per workspace): (requests per minute, burst). chat.postMessage is per channel.
DEFAULT_RATE_LIMITS: dict[str, tuple[float, int]] = {
    "chat.postMessage": (60, 3),
    "chat.update": (50, 10),
    "chat.delete": (50, 10),
    "chat.postEphemeral": (100, 20),
    "chat.getPermalink": (100, 20),
    "views.open": (100, 20),
    "views.update": (100, 20),
    "views.push": (100, 20),
    "views.publish": (100, 20),
    "users.info": (100, 20),
    "conversations.open": (50, 10),
    "usergroups.users.list": (20, 4),
}
_PER_CHANNEL_LIMITS = frozenset({"chat.postMessage"})
_JSON_STRING_FIELDS = ("blocks", "view", "attachments", "metadata")

KNOWN_USERS: dict[str, dict[str, str]] = {
    "U01REQ0001": {"name": "alice", "real_name": "Alice Requester"},
    "U01APR0001": {"name": "bob", "real_name": "Bob Ops"},
    "U01APR0002": {"name": "carol", "real_name": "Carol Ops"},
    BOT_USER_ID: {"name": BOT_NAME, "real_name": "ChangeOS bot"},
}


# ----------------------------------------------------------------------------------------------------------------
# Records


def _peer(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""


@dataclass
class Call:
    """One Web API request as the fake saw it and answered it (or one response_url POST)."""

    method: str
    body: dict[str, Any]
    headers: dict[str, str] = field(repr=False)
    time: float
    status: int = 200
    error: str | None = None
    response: dict[str, Any] | None = field(default=None, repr=False)
    injected: bool = False
    messages: list[str] = field(default_factory=list)
    peer: str = ""  # the client's address and port: which connection the call came on

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


@dataclass
class MessageVersion:
    """A message's content before an edit (chat.update or replace_original)."""

    text: str
    blocks: list[dict[str, Any]]
    replaced_at: str


@dataclass
class Message:
    """A message as Slack stores it; `history` holds earlier versions, oldest first."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    blocks: list[dict[str, Any]]
    user: str = BOT_USER_ID
    team: str = ""
    ephemeral_user: str | None = None
    metadata: dict[str, Any] | None = None
    history: list[MessageVersion] = field(default_factory=list)
    edited_ts: str | None = None
    deleted: bool = False

    def as_payload(self) -> dict[str, Any]:
        """The `message` object Slack sends in block_actions and returns from chat.* methods."""
        payload: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": self.team,
            "ts": self.ts,
            "text": self.text,
            "blocks": copy.deepcopy(self.blocks),
        }
        if self.thread_ts:
            payload["thread_ts"] = self.thread_ts
        if self.edited_ts:
            payload["edited"] = {"user": BOT_ID, "ts": self.edited_ts}
        if self.metadata:
            payload["metadata"] = copy.deepcopy(self.metadata)
        return payload


@dataclass
class ResponsePost:
    """One POST to a response_url (what Bolt's respond() sends)."""

    key: str
    body: dict[str, Any]
    time: float
    status: int = 200
    error: str | None = None
    channel: str | None = None  # where the command was typed, and who typed it, when the URL is bound
    user: str | None = None


@dataclass
class _Fault:
    status: int
    retry_after: int
    error: str | None


@dataclass
class _ResponseBinding:
    channel: str | None
    message_ts: str | None
    user_id: str | None
    issued_at: float = 0.0
    uses: int = 0


class _SlackError(Exception):
    """Raised by a handler to answer `{"ok": false, "error": code}` like Slack."""

    def __init__(self, code: str, messages: list[str] | None = None, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.messages = messages or []
        self.extra = extra


class _TokenBucket:
    """Slack's limits allow short bursts and a sustained rate; a token bucket models both."""

    def __init__(self, per_minute: float, burst: int, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(1, burst))
        self.tokens = self.capacity
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token; return 0 when allowed, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


# ----------------------------------------------------------------------------------------------------------------
# Block Kit validation (pure)


def _formation_error(exc: Exception) -> str:
    if isinstance(exc, SlackObjectFormationError):
        return str(exc)
    return f"malformed ({type(exc).__name__}: {exc})"


@functools.cache
def _block_types() -> frozenset[str]:
    """Every block type slack_sdk models (found without Block.parse, which logs a warning for unknown ones)."""
    found: set[str] = set()
    pending: list[type] = [Block]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        block_type = cls.__dict__.get("type")
        if isinstance(block_type, str):
            found.add(block_type)
    return frozenset(found)


def validate_blocks(blocks: Any, *, max_blocks: int, pointer: str) -> list[str]:
    """Slack-style error lines for a list of blocks; empty when Slack would accept them."""
    if not isinstance(blocks, list):
        return [f"[ERROR] must be an array [json-pointer:{pointer}]"]
    errors: list[str] = []
    if len(blocks) > max_blocks:
        errors.append(f"[ERROR] no more than {max_blocks} items allowed [json-pointer:{pointer}]")
    seen_ids: dict[str, int] = {}
    for index, block in enumerate(blocks):
        where = f"{pointer}/{index}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"[ERROR] a block must be an object with a type [json-pointer:{where}]")
            continue
        if block["type"] not in _block_types():
            errors.append(f"[ERROR] unknown block type {block['type']!r} [json-pointer:{where}/type]")
            continue
        try:
            parsed = Block.parse(copy.deepcopy(block))
            if parsed is None:
                raise SlackObjectFormationError(f"unknown block type {block['type']!r}")
            parsed.validate_json()
            parsed.to_dict()  # validates nested elements and text objects too
        except Exception as exc:
            errors.append(f"[ERROR] {_formation_error(exc)} [json-pointer:{where}]")
            continue
        if block["type"] == "actions" and not block.get("elements"):
            errors.append(f"[ERROR] must contain at least 1 element [json-pointer:{where}/elements]")
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if block_id in seen_ids:
                errors.append(f"[ERROR] duplicate block_id {block_id!r} [json-pointer:{where}/block_id]")
            seen_ids[block_id] = index
    return errors


def validate_view(view: Any, *, pointer: str = "/view") -> list[str]:
    """Slack-style error lines for a modal view; empty when views.open/update/push would accept it."""
    if not isinstance(view, dict):
        return [f"[ERROR] failed to match all allowed schemas [json-pointer:{pointer}]"]
    errors: list[str] = []
    view_type = view.get("type")
    if view_type not in ("modal", "home"):
        errors.append(f"[ERROR] type must be 'modal' or 'home' [json-pointer:{pointer}/type]")
    blocks = view.get("blocks")
    if blocks is None:
        errors.append(f"[ERROR] missing required field: blocks [json-pointer:{pointer}/blocks]")
    else:
        errors.extend(validate_blocks(blocks, max_blocks=MAX_MODAL_BLOCKS, pointer=f"{pointer}/blocks"))
    if view_type == "modal":
        title = view.get("title")
        title_text = title.get("text") if isinstance(title, dict) else None
        if not isinstance(title_text, str) or not title_text:
            errors.append(f"[ERROR] missing required field: title [json-pointer:{pointer}/title]")
        elif len(title_text) > MAX_MODAL_TITLE:
            errors.append(f"[ERROR] must be less than {MAX_MODAL_TITLE + 1} characters [json-pointer:{pointer}/title]")
        has_input = isinstance(blocks, list) and any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and not view.get("submit"):
            errors.append(f"[ERROR] submit is required when input blocks are present [json-pointer:{pointer}/submit]")
    metadata = view.get("private_metadata")
    if metadata is not None and (not isinstance(metadata, str) or len(metadata) > MAX_PRIVATE_METADATA):
        errors.append(
            f"[ERROR] must be less than {MAX_PRIVATE_METADATA + 1} characters [json-pointer:{pointer}/private_metadata]"
        )
    if not errors:
        try:
            View(**copy.deepcopy(view)).validate_json()
        except Exception as exc:
            errors.append(f"[ERROR] {_formation_error(exc)} [json-pointer:{pointer}]")
    return errors


# ----------------------------------------------------------------------------------------------------------------
# The server


def _header_token(headers: Any) -> str | None:
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def _decode_json_fields(body: dict[str, Any]) -> None:
    """Form bodies carry blocks and views as JSON strings; Slack decodes them, so do we."""
    for key in _JSON_STRING_FIELDS:
        value = body.get(key)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):  # left as a string: validation reports it
                body[key] = json.loads(value)


def _parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    if not raw:
        return {}
    if "json" in content_type:
        parsed = json.loads(raw.decode("utf-8"))
        if not isinstance(parsed, dict):
            raise ValueError("the JSON body must be an object")
        return parsed
    return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true"))


def _users_arg(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return []


class FakeSlack:
    """A Slack Web API stand-in served by aiohttp on loopback; see the module docstring."""

    def __init__(
        self,
        *,
        bot_token: str = DEFAULT_BOT_TOKEN,
        team_id: str = "T01ABCDE2F",
        rate_limits: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
        response_url_max_uses: int | None = RESPONSE_URL_MAX_USES,
    ) -> None:
        self.bot_token = bot_token
        self.team_id = team_id
        self.host = host
        self.port = port
        self.response_url_max_uses = response_url_max_uses
        self._clock = clock
        self._rng = random.Random(seed)
        self._root_url: str | None = None
        self._runner: web.AppRunner | None = None

        self.calls: list[Call] = []
        self.responses: list[ResponsePost] = []
        self.views: dict[str, dict[str, Any]] = {}
        self._raw: list[bytes] = []
        self._messages: dict[tuple[str, str], Message] = {}
        self._ephemerals: list[Message] = []
        self._usergroups: dict[str, list[str]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._used_triggers: set[str] = set()
        self._external_ids: dict[str, str] = {}
        self._stacks: dict[str, list[str]] = {}
        self._last_root: str | None = None
        self._bindings: dict[str, _ResponseBinding] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._limits: dict[str, tuple[float, int]] = dict(DEFAULT_RATE_LIMITS) if rate_limits else {}
        self._buckets: dict[tuple[str, str], _TokenBucket] = {}
        self._ts_micros = _FIRST_TS_MICROS - _TS_STEP_MICROS
        self._view_seq = 0
        self._changed = asyncio.Event()
        self.version = 0  # bumped on every change a Slack client could show (the playground long-polls on it)
        self._trigger_users: dict[str, str] = {}
        self._view_users: dict[str, str] = {}
        self._closing = False
        self.socket_mode = FakeSocketMode()
        self.openid = FakeOpenID(team_id)  # Sign in with Slack: authorize + openid.connect.token / userInfo
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "conversations.open": self._conversations_open,
        }

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def start(self) -> str:
        """Serve on host:port (port 0: the OS picks one) and return the root URL."""
        if self._root_url is not None:
            return self._root_url
        self._closing = False
        app = web.Application(client_max_size=4 * 1024 * 1024)
        self.socket_mode.register(app)  # before the catch-all: apps.connections.open takes the app token
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response/{key}", self._handle_response_url)
        app.router.add_get("/openid/connect/authorize", self.openid.authorize)
        app.router.add_get("/_client/state", self._handle_client_state)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._root_url = f"http://{host}:{port}"
        return self._root_url

    async def stop(self) -> None:
        self._closing = True
        self._notify()  # long-polls answer now instead of holding the shutdown
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._root_url = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._root_url is None:
            raise RuntimeError("FakeSlack is not started: await fake.start() first")
        return self._root_url

    @property
    def openid_authorize_url(self) -> str:
        """SLACK_OIDC_AUTHORIZE_URL for a bot signing people in against this fake."""
        return self.url + "/openid/connect/authorize"

    @property
    def api_url(self) -> str:
        """Base URL for AsyncWebClient(base_url=...); ends with '/' as slack_sdk's urljoin needs."""
        return self.url + "/api/"

    # -- configuration --------------------------------------------------------------------------------------------

    def response_url(
        self, key: str, *, channel: str | None = None, message_ts: str | None = None, user_id: str | None = None
    ) -> str:
        """A response_url under the fake. Bound to a channel (and message), posts also land in the history:
        in_channel posts become messages, replace_original edits and delete_original deletes `message_ts`."""
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", key):
            raise ValueError(f"response_url key {key!r} must be letters, digits, '.', '_' or '-'")
        self._bindings[key] = _ResponseBinding(channel, message_ts, user_id, issued_at=self._clock())
        return f"{self.url}/response/{key}"

    def set_usergroup(self, usergroup_id: str, users: list[str]) -> None:
        self._usergroups[usergroup_id] = list(users)

    def set_user(self, user_id: str, **profile: Any) -> None:
        """Override fields of the canned users.info answer (name, real_name, tz, is_bot, deleted, ...)."""
        self._users[user_id] = dict(profile)

    def set_rate_limit(self, method: str, per_minute: float | None, *, burst: int | None = None) -> None:
        """Limit `method` to `per_minute` with `burst` (default: 10 s worth); None removes the limit."""
        self._buckets = {k: v for k, v in self._buckets.items() if k[0] != method}
        if per_minute is None:
            self._limits.pop(method, None)
            return
        if per_minute <= 0:
            raise ValueError("per_minute must be positive (use None to remove a limit)")
        self._limits[method] = (per_minute, burst if burst is not None else max(1, int(per_minute // 6)))

    def fail_next(
        self, method: str, status: int = 429, retry_after: int = 1, count: int = 1, error: str | None = None
    ) -> None:
        """Make the next `count` calls to `method` fail (method "response_url" for response URLs).

        429 answers `ratelimited` with Retry-After; other statuses answer `error` (HTTP 200 gives ok:false)."""
        faults = self._faults.setdefault(method, deque())
        for _ in range(count):
            faults.append(_Fault(status=status, retry_after=retry_after, error=error))

    # -- inspection -----------------------------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def errors(self) -> list[Call]:
        """Calls Slack would have refused (invalid payloads, unknown ids, rate limits); injected faults excluded."""
        return [c for c in self.calls if not c.ok and not c.injected]

    def messages(self, channel: str | None = None, *, include_deleted: bool = False) -> list[Message]:
        """Messages in posting order (thread replies included), optionally of one channel."""
        return [
            m
            for m in self._messages.values()
            if (channel is None or m.channel == channel) and (include_deleted or not m.deleted)
        ]

    def message(self, channel: str, ts: str) -> Message:
        try:
            return self._messages[(channel, ts)]
        except KeyError:
            raise KeyError(f"no message {ts} in {channel}; known: {sorted(self._messages)}") from None

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The replies under message `ts`, oldest first (the parent itself is not included)."""
        return [m for m in self.messages(channel) if m.thread_ts == ts and m.ts != ts]

    def ephemerals(self, channel: str | None = None) -> list[Message]:
        return [m for m in self._ephemerals if channel is None or m.channel == channel]

    def told(self, user: str) -> list[Message]:
        """What only `user` was shown: chat.postEphemeral, and ephemeral posts to a response_url bound to them."""
        return [m for m in self._ephemerals if m.ephemeral_user == user]

    def raw_traffic(self) -> bytes:
        """Every query string and request body received, concatenated: grep it for canaries."""
        return b"\n".join(self._raw)

    def clear_calls(self) -> None:
        """Forget recorded calls, responses and traffic (state such as messages and views stays)."""
        self.calls.clear()
        self.responses.clear()
        self._raw.clear()

    async def wait_until(
        self,
        condition: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
        timeout: float = 5.0,  # noqa: ASYNC109
        what: str = "",
    ) -> T:
        """Wait until condition() is truthy (re-checked on every request the fake receives, and every 0.05 s for a
        condition on the bot's store) and return it; a coroutine function (one that reads the store) is awaited."""

        def seen() -> str:
            return "last calls: " + (", ".join(c.method for c in self.calls[-20:]) or "nothing")

        def changed() -> asyncio.Event:
            return self._changed  # a new event after each change

        what = what or "a condition"
        return await until(condition, timeout=timeout, what=what, every=0.05, changed=changed, detail=seen)

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> Call:
        """The first recorded call to `method` matching `predicate`, waiting up to `timeout` seconds for it."""

        def find() -> Call | None:
            return next((c for c in self.calls if c.method == method and (predicate is None or predicate(c))), None)

        return await self.wait_until(find, timeout, what=f"a call to {method}")

    async def wait_for_response(
        self,
        key: str | None = None,
        predicate: Callable[[ResponsePost], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> ResponsePost:
        """The first response_url POST (to `key`, if given) matching `predicate`."""

        def find() -> ResponsePost | None:
            return next(
                (r for r in self.responses if (key is None or r.key == key) and (predicate is None or predicate(r))),
                None,
            )

        return await self.wait_until(find, timeout, what=f"a response_url POST{f' to {key}' if key else ''}")

    # -- HTTP plumbing --------------------------------------------------------------------------------------------

    def _notify(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._notify()

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        raw = await request.read()
        self._raw.append(request.query_string.encode() + b"\n" + raw)
        headers = dict(request.headers)
        call = Call(method=method, body={}, headers=headers, time=self._clock(), peer=_peer(request))
        try:
            body: dict[str, Any] = dict(request.query)
            body.update(_parse_body(raw, request.content_type))
        except ValueError:
            return self._answer(call, {"ok": False, "error": "invalid_json"})
        _decode_json_fields(body)
        form_token = body.pop("token", None)
        call.body = body
        if method in OPENID_METHODS:  # authenticated by the client secret or the user token, not the bot token
            return self._answer(call, self.openid.handle(method, {**body, "token": form_token or ""}, headers))
        token = _header_token(request.headers) or form_token
        if not token:
            return self._answer(call, {"ok": False, "error": "not_authed"})
        if token != self.bot_token:
            return self._answer(call, {"ok": False, "error": "invalid_auth"})
        fault = self._take_fault(method)
        if fault is not None:
            call.injected = True
            return self._fault_answer(call, fault)
        wait = self._rate_wait(method, body)
        if wait > 0:
            return self._ratelimited(call, wait)
        handler = self._handlers.get(method, self._generic)
        try:
            result = handler(body)
        except _SlackError as exc:
            answer: dict[str, Any] = {"ok": False, "error": exc.code, **exc.extra}
            if exc.messages:
                answer["response_metadata"] = {"messages": exc.messages}
            call.messages = exc.messages
            return self._answer(call, answer)
        return self._answer(call, result)

    def _answer(
        self, call: Call, payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        call.status = status
        call.response = payload
        if not payload.get("ok", False):
            call.error = str(payload.get("error", "unknown_error"))
        self._record(call)
        return web.json_response(payload, status=status, headers=headers)

    def _ratelimited(self, call: Call, wait: float) -> web.Response:
        retry_after = str(max(1, math.ceil(wait)))
        return self._answer(call, {"ok": False, "error": "ratelimited"}, 429, {"Retry-After": retry_after})

    def _fault_answer(self, call: Call, fault: _Fault) -> web.Response:
        if fault.status == 429:
            payload = {"ok": False, "error": fault.error or "ratelimited"}
            return self._answer(call, payload, 429, {"Retry-After": str(fault.retry_after)})
        default = "internal_error" if fault.status >= 500 else "fatal_error"
        return self._answer(call, {"ok": False, "error": fault.error or default}, fault.status)

    def _take_fault(self, method: str) -> _Fault | None:
        faults = self._faults.get(method)
        return faults.popleft() if faults else None

    def _rate_wait(self, method: str, body: dict[str, Any]) -> float:
        limit = self._limits.get(method)
        if limit is None:
            return 0.0
        scope = str(body.get("channel", "")) if method in _PER_CHANNEL_LIMITS else ""
        now = self._clock()
        bucket = self._buckets.get((method, scope))
        if bucket is None:
            bucket = self._buckets[(method, scope)] = _TokenBucket(limit[0], limit[1], now)
        return bucket.take(now)

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        raw = await request.read()
        self._raw.append(raw)
        now = self._clock()
        call = Call(method="response_url", body={}, headers=dict(request.headers), time=now)

        def reply(status: int, text: str, body: dict[str, Any]) -> web.Response:
            error = None if status == 200 else text
            call.body, call.status, call.error = body, status, error
            bound = self._bindings.get(key)
            self.responses.append(
                ResponsePost(
                    key=key,
                    body=body,
                    time=now,
                    status=status,
                    error=error,
                    channel=bound.channel if bound else None,
                    user=bound.user_id if bound else None,
                )
            )
            self._record(call)
            return web.Response(status=status, text=text)

        try:
            body = json.loads(raw.decode("utf-8")) if raw else {}
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return reply(400, "invalid_payload", {})
        fault = self._take_fault("response_url")
        if fault is not None:
            call.injected = True
            return reply(fault.status, fault.error or "expired_url", body)
        binding = self._bindings.setdefault(key, _ResponseBinding(None, None, None, issued_at=now))
        if now - binding.issued_at > RESPONSE_URL_SECONDS:
            return reply(404, "expired_url", body)
        if self.response_url_max_uses is not None and binding.uses >= self.response_url_max_uses:
            return reply(404, "used_url", body)
        if "blocks" in body:
            problems = validate_blocks(body["blocks"], max_blocks=MAX_MESSAGE_BLOCKS, pointer="/blocks")
            if problems:
                call.messages = problems
                return reply(400, "invalid_blocks", body)
        if not body.get("text") and not body.get("blocks") and not _truthy(body.get("delete_original")):
            return reply(400, "no_text", body)
        binding.uses += 1
        self._apply_response(binding, body)
        return reply(200, "ok", body)

    def _apply_response(self, binding: _ResponseBinding, body: dict[str, Any]) -> None:
        """Mirror what Slack shows when a response_url is bound to a channel (and a message)."""
        if binding.channel is None:
            return
        original = self._messages.get((binding.channel, binding.message_ts or ""))
        if _truthy(body.get("delete_original")):
            if original is not None:
                original.deleted = True
            return
        text = str(body.get("text") or "")
        blocks = list(body.get("blocks") or [])
        if _truthy(body.get("replace_original")) and original is not None:
            self._edit(original, text, blocks)
            return
        if body.get("response_type") == "in_channel":
            self._store(binding.channel, text, blocks, body.get("thread_ts"))
        else:
            ts = self._next_ts()
            self._ephemerals.append(
                Message(binding.channel, ts, None, text, blocks, team=self.team_id, ephemeral_user=binding.user_id)
            )

    # -- ids ------------------------------------------------------------------------------------------------------

    def _next_ts(self) -> str:
        self._ts_micros += _TS_STEP_MICROS
        return f"{self._ts_micros // 1_000_000}.{self._ts_micros % 1_000_000:06d}"

    def _random_chars(self, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
        return "".join(self._rng.choice(alphabet) for _ in range(n))

    def _new_hash(self) -> str:
        return f"{int(time.time())}.{self._random_chars(8)}"

    def _fill_ids(self, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Slack assigns a block_id to every block (and an action_id to input elements) the app left without."""
        filled = copy.deepcopy(blocks)
        for block in filled:
            block.setdefault("block_id", self._random_chars(4, string.ascii_letters + string.digits + "+="))
            element = block.get("element")
            if block.get("type") == "input" and isinstance(element, dict):
                element.setdefault("action_id", self._random_chars(4, string.ascii_letters + string.digits + "+="))
        return filled

    def _dm_channel(self, user_id: str) -> str:
        return "D" + user_id[1:]

    def _resolve_channel(self, channel: Any) -> str:
        if not isinstance(channel, str) or not channel:
            raise _SlackError("channel_not_found")
        return self._dm_channel(channel) if USER_ID_RE.match(channel) else channel

    # -- messages -------------------------------------------------------------------------------------------------

    def _check_message_content(self, body: dict[str, Any], *, require: bool = True) -> None:
        blocks = body.get("blocks")
        if blocks is not None and blocks != []:
            problems = validate_blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS, pointer="/blocks")
            if problems:
                raise _SlackError("invalid_blocks", problems, errors=[p.removeprefix("[ERROR] ") for p in problems])
        text = body.get("text")
        if text is not None and len(str(text)) > MAX_MESSAGE_TEXT:
            raise _SlackError("msg_too_long")
        if require and not text and not blocks and not body.get("attachments"):
            raise _SlackError("no_text")

    def _store(self, channel: str, text: str, blocks: list[dict[str, Any]], thread_ts: Any) -> Message:
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            thread_ts=str(thread_ts) if thread_ts else None,
            text=text,
            blocks=self._fill_ids(blocks),
            team=self.team_id,
        )
        self._messages[(channel, message.ts)] = message
        return message

    def _edit(self, message: Message, text: str | None, blocks: list[dict[str, Any]] | None) -> None:
        edit_ts = self._next_ts()
        message.history.append(MessageVersion(message.text, copy.deepcopy(message.blocks), edit_ts))
        if text is not None:
            message.text = text
        if blocks is not None:
            message.blocks = self._fill_ids(blocks)
        message.edited_ts = edit_ts

    def _find(self, channel: Any, ts: Any) -> Message:
        message = self._messages.get((str(channel), str(ts)))
        if message is None or message.deleted:
            raise _SlackError("message_not_found")
        return message

    def _auth_test(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": self.team_id,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(body.get("channel"))
        self._check_message_content(body)
        message = self._store(
            channel, str(body.get("text") or ""), list(body.get("blocks") or []), body.get("thread_ts")
        )
        if isinstance(body.get("metadata"), dict):
            message.metadata = body["metadata"]
        return {"ok": True, "channel": channel, "ts": message.ts, "message": message.as_payload()}

    def _chat_update(self, body: dict[str, Any]) -> dict[str, Any]:
        message = self._find(self._resolve_channel(body.get("channel")), body.get("ts"))
        if "text" not in body and "blocks" not in body and "attachments" not in body:
            raise _SlackError("no_text")
        self._check_message_content(body, require=False)
        text = str(body["text"]) if "text" in body and body["text"] is not None else None
        blocks = list(body["blocks"]) if isinstance(body.get("blocks"), list) else None
        self._edit(message, text, blocks)
        return {
            "ok": True,
            "channel": message.channel,
            "ts": message.ts,
            "text": message.text,
            "message": message.as_payload(),
        }

    def _chat_delete(self, body: dict[str, Any]) -> dict[str, Any]:
        message = self._find(self._resolve_channel(body.get("channel")), body.get("ts"))
        message.deleted = True
        return {"ok": True, "channel": message.channel, "ts": message.ts}

    def _chat_post_ephemeral(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(body.get("channel"))
        user = body.get("user")
        if not isinstance(user, str) or not USER_ID_RE.match(user):
            raise _SlackError("user_not_in_channel")
        self._check_message_content(body)
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            thread_ts=str(body["thread_ts"]) if body.get("thread_ts") else None,
            text=str(body.get("text") or ""),
            blocks=self._fill_ids(list(body.get("blocks") or [])),
            team=self.team_id,
            ephemeral_user=user,
        )
        self._ephemerals.append(message)
        return {"ok": True, "message_ts": message.ts}

    def _chat_get_permalink(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(body.get("channel"))
        message = self._find(channel, body.get("message_ts"))
        link = f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{message.ts.replace('.', '')}"
        if message.thread_ts and message.thread_ts != message.ts:
            link += f"?thread_ts={message.thread_ts}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": link}

    # -- views ----------------------------------------------------------------------------------------------------

    def _view_arg(self, body: dict[str, Any]) -> dict[str, Any]:
        view = body.get("view")
        problems = validate_view(view)
        if problems:
            raise _SlackError("invalid_arguments", problems)
        assert isinstance(view, dict)
        return view

    def _use_trigger(self, body: dict[str, Any]) -> None:
        trigger = body.get("trigger_id")
        if not trigger:
            raise _SlackError("invalid_arguments", ["[ERROR] missing required field: trigger_id"])
        if not isinstance(trigger, str) or not TRIGGER_ID_RE.match(trigger):
            raise _SlackError("invalid_trigger_id")
        if trigger in self._used_triggers:
            raise _SlackError("exchanged_trigger_id")
        self._used_triggers.add(trigger)

    def _check_external_id(self, view: dict[str, Any], own_id: str | None = None) -> None:
        external_id = view.get("external_id")
        if external_id and self._external_ids.get(external_id, own_id) != own_id:
            raise _SlackError("duplicate_external_id")

    def _stored_view(self, view: dict[str, Any], view_id: str, root_id: str, previous: str | None) -> dict[str, Any]:
        stored = {
            "id": view_id,
            "team_id": self.team_id,
            "type": view.get("type", "modal"),
            "callback_id": view.get("callback_id", ""),
            "private_metadata": view.get("private_metadata", ""),
            "title": copy.deepcopy(view.get("title")),
            "close": copy.deepcopy(view.get("close")),
            "submit": copy.deepcopy(view.get("submit")),
            "blocks": self._fill_ids(view.get("blocks") or []),
            "state": {"values": {}},
            "hash": self._new_hash(),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "external_id": view.get("external_id", ""),
            "previous_view_id": previous,
            "root_view_id": root_id,
            "app_id": APP_ID,
            "app_installed_team_id": self.team_id,
            "bot_id": BOT_ID,
        }
        if stored["external_id"]:
            self._external_ids[stored["external_id"]] = view_id
        self.views[view_id] = stored
        return stored

    def _new_view_id(self) -> str:
        self._view_seq += 1
        return f"V01VIEW{self._view_seq:03d}"

    def _views_open(self, body: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(body)
        self._check_external_id(view)
        self._use_trigger(body)
        view_id = self._new_view_id()
        stored = self._stored_view(view, view_id, view_id, None)
        self._stacks[view_id] = [view_id]
        self._last_root = view_id
        self._view_users[view_id] = self._trigger_users.get(str(body.get("trigger_id")), "")
        return {"ok": True, "view": copy.deepcopy(stored)}

    def _views_push(self, body: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(body)
        self._check_external_id(view)
        stack = self._stacks.get(self._last_root or "")
        if stack is None:
            raise _SlackError("invalid_trigger_id")  # no modal is open to push onto
        if len(stack) >= MAX_VIEW_STACK:
            raise _SlackError("push_limit_reached")
        self._use_trigger(body)
        view_id = self._new_view_id()
        stored = self._stored_view(view, view_id, stack[0], stack[-1])
        stack.append(view_id)
        self._view_users[view_id] = self._view_users.get(stack[0], "")
        return {"ok": True, "view": copy.deepcopy(stored)}

    def _views_update(self, body: dict[str, Any]) -> dict[str, Any]:
        view_id = body.get("view_id")
        external_id = body.get("external_id")
        if not view_id and not external_id:
            raise _SlackError("invalid_arguments", ["[ERROR] view_id or external_id is required"])
        if not view_id:
            view_id = self._external_ids.get(str(external_id))
        current = self.views.get(str(view_id)) if view_id else None
        if current is None:
            raise _SlackError("not_found")
        view = self._view_arg(body)
        expected = body.get("hash")
        if expected and expected != current["hash"]:
            raise _SlackError("hash_conflict")
        self._check_external_id(view, own_id=current["id"])
        kept_state = self._preserved_state(current, view)
        stored = self._stored_view(view, current["id"], current["root_view_id"], current["previous_view_id"])
        stored["state"] = {"values": kept_state}
        return {"ok": True, "view": copy.deepcopy(stored)}

    @staticmethod
    def _preserved_state(current: dict[str, Any], new_view: dict[str, Any]) -> dict[str, Any]:
        """Slack keeps what was typed into inputs whose block_id and action_id survive an update."""
        kept: dict[str, Any] = {}
        values = current.get("state", {}).get("values", {})
        for block in new_view.get("blocks") or []:
            block_id = block.get("block_id") if isinstance(block, dict) else None
            element = block.get("element") if isinstance(block, dict) else None
            if (
                isinstance(block_id, str)
                and block_id in values
                and isinstance(element, dict)
                and element.get("action_id") in values[block_id]
            ):
                kept[block_id] = {element["action_id"]: values[block_id][element["action_id"]]}
        return kept

    def set_view_state(self, view_id: str, values: dict[str, Any]) -> None:
        """What the user has typed so far into an open view (Slack keeps it in view.state.values)."""
        self.views[view_id]["state"] = {"values": copy.deepcopy(values)}

    # -- what a Slack client shows and does (the playground) -----------------------------------------------------
    # Slack's own client keeps who a modal belongs to, closes it on submit, and shows a slash command's ack as an
    # ephemeral message; these few methods let a page play that client against this fake.

    def bind_trigger(self, trigger_id: str, user_id: str) -> None:
        """The person a trigger_id was minted for: a modal opened with it is theirs."""
        self._trigger_users[trigger_id] = user_id

    def open_modal(self, user_id: str) -> dict[str, Any] | None:
        """The view on top of `user_id`'s most recent open modal stack, as stored (with its state)."""
        for root in reversed(list(self._stacks)):
            stack = self._stacks[root]
            if stack and self._view_users.get(root) == user_id:
                return copy.deepcopy(self.views[stack[-1]])
        return None

    def close_modal(self, view_id: str, *, whole_stack: bool = False) -> None:
        """Close `view_id` (what an empty view_submission ack or Cancel does); the view under it shows again."""
        for root, stack in list(self._stacks.items()):
            if view_id in stack:
                del stack[stack.index(view_id) if not whole_stack else 0 :]
                if not stack:
                    del self._stacks[root]
        self._notify()

    def answer_view(self, view_id: str, action: str, view: Any) -> list[str]:
        """Apply a view_submission ack's `response_action` "update" or "push" as Slack does; Slack's error lines
        when the view is one Slack would refuse (recorded, so `errors()` reports it)."""
        problems = validate_view(view)
        current = self.views.get(view_id)
        if current is None:
            problems = ["[ERROR] the view to answer is not open"]
        if problems:
            call = Call(method=f"response_action.{action}", body={"view": view}, headers={}, time=self._clock())
            call.error, call.messages = "invalid_arguments", problems
            self._record(call)
            return problems
        assert current is not None and isinstance(view, dict)
        if action == "update":
            kept = self._preserved_state(current, view)
            stored = self._stored_view(view, view_id, current["root_view_id"], current["previous_view_id"])
            stored["state"] = {"values": kept}
        else:
            stack = self._stacks.get(current["root_view_id"], [])
            new_id = self._new_view_id()
            self._stored_view(view, new_id, current["root_view_id"], view_id)
            self._view_users[new_id] = self._view_users.get(current["root_view_id"], "")
            stack.append(new_id)
        self._notify()
        return []

    def show_ephemeral(
        self, channel: str, user_id: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> Message:
        """A message only `user_id` sees, e.g. the text a slash command's ack carried."""
        message = Message(
            channel,
            self._next_ts(),
            None,
            text,
            self._fill_ids(blocks or []),
            team=self.team_id,
            ephemeral_user=user_id,
        )
        self._ephemerals.append(message)
        self._notify()
        return message

    def show_in_channel(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None) -> Message:
        """A message everyone in `channel` sees, e.g. a slash command's ack with response_type in_channel."""
        message = self._store(channel, text, blocks or [], None)
        self._notify()
        return message

    def client_state(self, user_id: str) -> dict[str, Any]:
        """Everything `user_id`'s Slack client shows: channel messages (thread replies included), their ephemeral
        messages, and their open modal."""

        def shown(m: Message) -> dict[str, Any]:
            data = {"channel": m.channel, **m.as_payload()}
            data.pop("team", None)
            return data

        return {
            "version": self.version,
            "messages": [shown(m) for m in self.messages()],
            "ephemerals": [shown(m) for m in self._ephemerals if m.ephemeral_user == user_id],
            "modal": self.open_modal(user_id),
        }

    async def _handle_client_state(self, request: web.Request) -> web.Response:
        """`GET /_client/state?user=U…&after=N`: answers once the version passes N (a long poll of up to 15 s)."""
        user = request.query.get("user", "")
        try:
            after = int(request.query.get("after", "-1"))
        except ValueError:
            after = -1
        cors = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"}
        if not USER_ID_RE.match(user):
            return web.json_response({"error": "user must be a Slack user ID (U…)"}, status=400, headers=cors)
        with contextlib.suppress(TimeoutError):
            await self.wait_until(lambda: self.version > after or self._closing, timeout=15.0, what="a change")
        return web.json_response(self.client_state(user), headers=cors)

    # -- users and conversations ----------------------------------------------------------------------------------

    def _usergroups_users_list(self, body: dict[str, Any]) -> dict[str, Any]:
        group = body.get("usergroup")
        if group not in self._usergroups:
            raise _SlackError("no_such_subteam")
        return {"ok": True, "users": list(self._usergroups[str(group)])}

    def _users_info(self, body: dict[str, Any]) -> dict[str, Any]:
        user_id = body.get("user")
        if not isinstance(user_id, str) or not USER_ID_RE.match(user_id):
            raise _SlackError("user_not_found")
        known = {**KNOWN_USERS.get(user_id, {}), **self._users.get(user_id, {})}
        name = known.pop("name", f"user-{user_id.lower()}")
        real_name = known.pop("real_name", name.replace("-", " ").title())
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "real_name": real_name,
            "tz": "Asia/Kuala_Lumpur",
            "tz_offset": 28800,
            "is_admin": False,
            "is_owner": False,
            "is_bot": user_id == BOT_USER_ID,
            "is_app_user": False,
            "updated": 1717000000,
            "profile": {
                "real_name": real_name,
                "display_name": name,
                "image_48": f"https://avatars.example.invalid/{user_id}.png",
                "team": self.team_id,
            },
        }
        user.update(known)
        return {"ok": True, "user": user}

    def _conversations_open(self, body: dict[str, Any]) -> dict[str, Any]:
        users = _users_arg(body.get("users"))
        if body.get("channel"):
            channel_id = str(body["channel"])
        elif len(users) == 1 and USER_ID_RE.match(users[0]):
            channel_id = self._dm_channel(users[0])
        elif len(users) > 1 and all(USER_ID_RE.match(u) for u in users):
            channel_id = "G" + "".join(sorted(u[1:4] for u in users)).upper()[:10]
        else:
            raise _SlackError("user_not_found" if users else "users_list_not_supplied")
        channel: dict[str, Any] = {"id": channel_id}
        if _truthy(body.get("return_im")):
            channel.update(
                {"created": 1717000000, "is_im": channel_id.startswith("D"), "user": users[0] if users else None}
            )
        return {"ok": True, "channel": channel}

    def _generic(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}


# ----------------------------------------------------------------------------------------------------------------
# Sandbox mode


async def run_forever(host: str = "127.0.0.1", port: int = 3001, token: str = DEFAULT_BOT_TOKEN) -> None:
    """Serve a FakeSlack until cancelled, for pointing a bot at it by hand (SLACK_API_URL)."""
    async with FakeSlack(bot_token=token, host=host, port=port) as fake:
        print(f"fake Slack Web API: SLACK_API_URL={fake.api_url} SLACK_BOT_TOKEN={token}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.devtools.fake_slack", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--token", default="xoxb-test", help="the bot token the fake accepts")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run_forever(args.host, args.port, args.token))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
