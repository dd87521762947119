"""Slack's side door: verify the raw bytes, then parse, then check the shape, before Bolt sees anything.

Bolt's own HTTP path parses a body before checking its signature, reads any form body containing the substring
"payload" as an interactive payload, and lets a wrongly shaped payload raise inside its matchers. So this module owns
the edge: the HTTP endpoint and the Socket Mode client hand it bytes or envelopes, and Bolt only ever receives a dict
that was signed (or came over the authenticated socket), parsed once, and has the shape our listeners read.

Everything but `SlackEdge.dispatch` is a pure function, tested without servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from bot import metrics
from bot.slack.after_ack import AfterAck
from bot.slack.texts import DATABASE_DOWN, INTERNAL_ERROR

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # Slack's payloads are far smaller; anything bigger is not Slack
MAX_SKEW_SECONDS = 300  # Slack's documented replay window
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")

MALFORMED = (
    "Slack sent the bot a request it could not read, so nothing was done. Try again; if it happens again, tell the "
    "bot's admin."
)
UNKNOWN_COMMAND = "This app only answers /changeos. Type `/changeos help` to see what it can do."


class MalformedRequest(ValueError):
    """A signed request whose body is not what Slack sends; `user`/`channel` say whom to tell, when known."""

    def __init__(
        self, message: str, *, user: str | None = None, channel: str | None = None, inline: bool = False
    ) -> None:
        super().__init__(message)
        self.user = user
        self.channel = channel
        self.inline = inline  # a slash command: the answer itself reaches the person


@dataclass(frozen=True, slots=True)
class Answer:
    """What goes back to Slack: an HTTP response, or the payload of a Socket Mode ack.

    Our own answers are a `body` dict. Bolt's JSON answers stay the text Bolt wrote (`json_text`): the HTTP path sends
    it as is, and only Socket Mode, whose ack carries an object, decodes it (`payload`)."""

    status: int
    body: dict[str, Any] | None = None
    json_text: str | None = None

    @classmethod
    def ephemeral(cls, text: str) -> Answer:
        return cls(200, {"response_type": "ephemeral", "text": text})

    @property
    def payload(self) -> dict[str, Any] | None:
        return self.body if self.json_text is None else _json_or_text(self.json_text)


# ---------------------------------------------------------------------------------------------------------------------
# 1. Verify (on the raw bytes, before anything is parsed)


def verify(raw: bytes, headers: Mapping[str, str], secret: str, *, now: float | None = None) -> str | None:
    """Why the request is not Slack's, or None when the v0 signature over the raw body holds within the window."""
    timestamp = headers.get("X-Slack-Request-Timestamp") or ""
    signature = headers.get("X-Slack-Signature") or ""
    if not _TIMESTAMP.fullmatch(timestamp):
        return "missing or malformed X-Slack-Request-Timestamp"
    if abs((time.time() if now is None else now) - int(timestamp)) > MAX_SKEW_SECONDS:
        return "timestamp outside the 5-minute window"
    if not _SIGNATURE.fullmatch(signature):
        return "missing or malformed X-Slack-Signature"
    expected = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest("v0=" + expected, signature):
        return "signature mismatch"
    return None


# ---------------------------------------------------------------------------------------------------------------------
# 2. Parse (both of Slack's form shapes, and JSON)


def parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """The request as one dict: a slash command's form fields, or an interactive payload's JSON object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("the body is not UTF-8") from None
    if content_type.split(";")[0].strip().lower() == "application/json":
        return _json_object(text, "the JSON body")
    try:
        fields = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=200)
    except ValueError:
        raise MalformedRequest("the form body is not url-encoded") from None
    form: dict[str, str] = {}
    for key, value in fields:
        if key in form:
            raise MalformedRequest(f"the form field {key[:40]!r} is repeated")
        form[key] = value
    if "payload" in form and "command" not in form:  # an interactive payload, not a command that says "payload"
        return _json_object(form["payload"], "the payload field")
    return form


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise MalformedRequest(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise MalformedRequest(f"{what} is not a JSON object")
    return value


# ---------------------------------------------------------------------------------------------------------------------
# 3. Check the shape our listeners and Bolt's matchers read; the dict itself goes on unchanged.

_Id = Annotated[str, Field(min_length=1, max_length=255)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class _Envelope(_Shape):
    """The fields Bolt reads for its context (team, enterprise, channel, thread...) in any payload."""

    team: dict[str, Any] | str | None = None
    enterprise: dict[str, Any] | str | None = None
    authorizations: list[dict[str, Any]] | None = None
    is_enterprise_install: bool | str | None = None
    channel: dict[str, Any] | str | None = None
    container: dict[str, Any] | None = None
    message: dict[str, Any] | None = None
    previous_message: dict[str, Any] | None = None
    event: dict[str, Any] | None = None
    function_data: dict[str, Any] | None = None
    bot_access_token: str | None = None


class _User(_Shape):
    id: _Id


class _State(_Shape):
    values: dict[str, dict[str, dict[str, Any]]] = {}


class _View(_Shape):
    id: _Id
    type: Literal["modal", "home"]
    callback_id: str = ""
    private_metadata: str = ""
    hash: str | None = None
    state: _State = _State()
    blocks: list[dict[str, Any]] = []


class _Action(_Shape):
    action_id: _Id
    block_id: str | None = None
    type: _Id


class _Channel(_Shape):
    id: _Id


class _Container(_Shape):
    type: str | None = None


class _Message(_Shape):
    ts: _Id


class _BlockActions(_Envelope):
    type: Literal["block_actions"]
    user: _User
    trigger_id: _Id
    actions: Annotated[list[_Action], Field(min_length=1)]
    view: _View | None = None
    channel: _Channel | None = None  # type: ignore[assignment]
    container: _Container | None = None  # type: ignore[assignment]
    message: _Message | None = None  # type: ignore[assignment]
    response_url: str | None = None


class _ViewSubmission(_Envelope):
    type: Literal["view_submission", "view_closed"]
    user: _User
    view: _View


class _BlockSuggestion(_Envelope):
    type: Literal["block_suggestion"]
    user: _User
    action_id: _Id
    block_id: _Id
    value: str
    view: _View | None = None


_COMMAND = re.compile(r"/\S{1,32}")  # a slash command's name: the model's pattern and the quick check's


class _SlashCommand(_Envelope):
    command: Annotated[str, Field(pattern=f"^{_COMMAND.pattern}$")]
    user_id: _Id
    channel_id: _Id
    trigger_id: _Id
    text: str = ""
    team_id: str = ""
    response_url: str = ""


_INTERACTIVE: TypeAdapter[_BlockActions | _ViewSubmission | _BlockSuggestion] = TypeAdapter(
    Annotated[_BlockActions | _ViewSubmission | _BlockSuggestion, Field(discriminator="type")]
)


_NESTED = frozenset(_Envelope.model_fields) - {"is_enterprise_install"}  # never in a slash command's form


def is_plain_command(body: dict[str, Any]) -> bool:
    """A slash command as Slack's form sends it: string fields, the ids present. Narrower than `_SlashCommand` (never
    true of a body the model refuses) and ~20 times cheaper inside the server: it runs before every command's ack."""
    command = body.get("command")
    if not isinstance(command, str) or not _COMMAND.fullmatch(command):
        return False
    for name in ("user_id", "channel_id", "trigger_id"):
        value = body.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= 255:
            return False
    return all(
        isinstance(body.get(name, ""), str) for name in ("text", "team_id", "response_url", "is_enterprise_install")
    ) and _NESTED.isdisjoint(body)


def check_shape(body: dict[str, Any]) -> None:
    """Raise `MalformedRequest` (with whom to tell) unless the body is a slash command or a known interaction."""
    try:
        if "command" in body:
            if not is_plain_command(body):
                _SlashCommand.model_validate(body)  # the odd shape: the model accepts it, or says what is wrong
            return
        kind = body.get("type")
        if kind not in ("block_actions", "view_submission", "view_closed", "block_suggestion"):
            raise MalformedRequest(f"unsupported request type {str(kind)[:40]!r}", **_whom(body))
        _INTERACTIVE.validate_python(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][:4]) or "the body"
        raise MalformedRequest(f"{where}: {first['msg']}"[:200], **_whom(body)) from None


def _whom(body: dict[str, Any]) -> dict[str, Any]:
    """The user and channel of a payload, read loosely: only to tell that person something went wrong."""

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) and 0 < len(value) < 64 else None

    user = body.get("user")
    channel = body.get("channel")
    container = body.get("container")
    return {
        "inline": "command" in body,
        "user": text(body.get("user_id")) or (text(user.get("id")) if isinstance(user, dict) else None),
        "channel": text(body.get("channel_id"))
        or (text(channel.get("id")) if isinstance(channel, dict) else None)
        or (text(container.get("channel_id")) if isinstance(container, dict) else None),
    }


# ---------------------------------------------------------------------------------------------------------------------
# 4. Dispatch


TellUser = Callable[[str, str, str], Awaitable[object]]
Unavailable = Callable[[], str | None]  # why the bot cannot act now (its database is down), or None


class SlackEdge:
    """Turns verified requests into Bolt dispatches and Bolt's answers into `Answer`s; never raises, never 5xx."""

    def __init__(
        self,
        bolt: AsyncApp,
        *,
        signing_secret: str | None,
        tell_user: TellUser | None = None,
        unavailable: Unavailable | None = None,
        after_ack: AfterAck | None = None,
    ) -> None:
        """`after_ack` learns when each request arrives and is answered: the work that follows acks waits for a lull."""
        self._bolt = bolt
        self._after_ack = after_ack
        self._secret = signing_secret
        self._tell_user = tell_user
        self._unavailable = unavailable
        self._telling: dict[tuple[str, str], asyncio.Task[None]] = {}  # one word at a time to each person
        self._refusals = _Throttle(every=10.0)

    async def http(self, raw: bytes, headers: Mapping[str, str], *, peer: str = "?") -> Answer:
        """One POST to /slack/events: verify, parse, check, dispatch."""
        started = time.perf_counter()
        with self._answering():
            return await self._http(raw, headers, peer, started)

    async def _http(self, raw: bytes, headers: Mapping[str, str], peer: str, started: float) -> Answer:
        if self._secret is None:
            return Answer(404, {"error": "this bot takes Slack requests over Socket Mode"})
        problem = verify(raw, headers, self._secret)
        if problem is not None:
            self._refusals.warn("refused an unsigned request from %s: %s", peer, problem)
            return Answer(401, {"error": "invalid request"})
        try:
            body = parse_body(raw, headers.get("Content-Type") or "")
            if body.get("ssl_check") == "1":
                return Answer(200)
        except MalformedRequest as exc:
            return await self.refuse(exc)
        return await self._timed(body, headers.get("X-Slack-Retry-Num"), started)

    async def dispatch(self, body: dict[str, Any], *, retry_num: str | None = None) -> Answer:
        """A Socket Mode envelope's payload (parsed) through Bolt."""
        with self._answering():
            return await self._timed(body, retry_num, time.perf_counter())

    def _answering(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if self._after_ack is None else self._after_ack.answering()

    async def _timed(self, body: dict[str, Any], retry_num: str | None, started: float) -> Answer:
        """The time from `started` (the request's arrival, by `time.perf_counter()`) to the answer goes to
        `ecsbot_ack_seconds`."""
        try:
            return await self._dispatch(body, retry_num)
        finally:
            metrics.ack("command" if "command" in body else body.get("type"), time.perf_counter() - started)

    async def _dispatch(self, body: dict[str, Any], retry_num: str | None) -> Answer:
        try:
            check_shape(body)
        except MalformedRequest as exc:
            return await self.refuse(exc)
        if self._unavailable is not None and body.get("type") != "block_suggestion":
            why = self._unavailable()
            if why is not None:
                return await self.unavailable(body, why)
        headers: dict[str, str | Sequence[str]] = {"x-slack-retry-num": retry_num} if retry_num else {}
        try:
            # mode="socket_mode" is how Bolt takes an already parsed dict (it skips its own parse and signature
            # check; ours ran above, on the raw bytes).
            request = AsyncBoltRequest(body=body, headers=headers, mode="socket_mode")
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            # A shape Bolt's context extraction trips on that our check did not name: still the sender's fault.
            return await self.refuse(MalformedRequest(f"Bolt could not read it ({type(exc).__name__})", **_whom(body)))
        try:
            response = await self._bolt.async_dispatch(request)
        except Exception:
            log.exception("Bolt failed to dispatch a %s", _kind(body))
            return _internal_error(body)
        if response.status == 404:
            if "command" in body:
                return Answer.ephemeral(UNKNOWN_COMMAND)
            log.warning("no listener for a %s", _kind(body))
            return Answer(200)
        if response.status >= 500:
            return _internal_error(body)
        if response.body and _is_json(response.headers):
            return Answer(response.status, json_text=response.body)  # as Bolt wrote it: no decode and re-encode
        return Answer(response.status, _json_or_text(response.body))

    async def unavailable(self, body: dict[str, Any], why: str) -> Answer:
        """The database does not answer: say so where the person acted, instead of half-doing what they asked.
        A command gets the sentence as its answer, a form keeps its input and shows it, a click gets an ephemeral."""
        log.warning("refused a %s: the database does not answer (%s)", _kind(body), why)
        if "command" in body:
            return Answer.ephemeral(DATABASE_DOWN)
        if body.get("type") == "view_submission":
            blocks = ((body.get("view") or {}).get("blocks")) or []
            first = next((b.get("block_id") for b in blocks if isinstance(b, dict) and b.get("type") == "input"), None)
            if isinstance(first, str):
                return Answer(200, {"response_action": "errors", "errors": {first: DATABASE_DOWN}})
        whom = _whom(body)
        if whom["user"] and whom["channel"] and self._tell_user is not None:
            try:
                await self._tell_user(whom["channel"], whom["user"], DATABASE_DOWN)
            except Exception as err:  # telling is best effort
                log.warning("could not tell %s the database is down: %s", whom["user"], type(err).__name__)
        return Answer(200)

    async def refuse(self, exc: MalformedRequest) -> Answer:
        """A signed request we cannot act on: one log line, a word to the person when we know who, never 5xx."""
        log.warning("malformed Slack request: %s", exc)
        if exc.inline:
            return Answer.ephemeral(MALFORMED)
        if exc.user and exc.channel and self._tell_user is not None:
            self._tell_later(self._tell_user, exc.channel, exc.user)
        return Answer(400, {"error": str(exc)})

    def _tell_later(self, tell_user: TellUser, channel: str, user: str) -> None:
        """After the answer, not before it: the word waits for Slack's rate limit, the answer must not; and a burst
        of bad requests from one person gets one word, not one each."""
        whom = (channel, user)
        if whom in self._telling:
            return
        task = asyncio.create_task(self._tell(tell_user, channel, user))
        self._telling[whom] = task
        task.add_done_callback(lambda _task: self._telling.pop(whom, None))

    @staticmethod
    async def _tell(tell_user: TellUser, channel: str, user: str) -> None:
        try:
            await tell_user(channel, user, MALFORMED)
        except Exception as err:  # telling is best effort
            log.warning("could not tell %s about a malformed request: %s", user, type(err).__name__)


def _kind(body: dict[str, Any]) -> str:
    value = body.get("command") or body.get("type") or "request"
    return str(value)[:40]


def _internal_error(body: dict[str, Any]) -> Answer:
    return Answer.ephemeral(INTERNAL_ERROR) if "command" in body else Answer(200)


def _is_json(headers: Mapping[str, Any]) -> bool:
    value = headers.get("content-type") or ""
    first = value[0] if isinstance(value, (list, tuple)) and value else value
    return isinstance(first, str) and first.lower().startswith("application/json")


def _json_or_text(body: str) -> dict[str, Any] | None:
    if not body:
        return None
    if body.startswith("{"):
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    return {"text": body}


class _Throttle:
    """At most one warning per period, with how many were held back: unsigned traffic must not fill the log."""

    def __init__(self, every: float) -> None:
        self._every = every
        self._last = -every
        self._held = 0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self._every:
            self._held += 1
            return
        if self._held:
            message += " (and %d more refused since the last line)"
            args = (*args, self._held)
        self._last, self._held = now, 0
        log.warning(message, *args)
