"""Our own Socket Mode client: one websocket to Slack, every envelope through the same edge as HTTP.

slack_sdk's client logs a traceback for each malformed frame, sends no ack when Bolt answers 404 or a payload is
oddly shaped, says nothing when it reconnects, and has to be awaited before anything else can start. This one runs
beside the tracker, acks every envelope it can identify, logs one line per event worth knowing, and closes the
socket with a close frame on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.slack.edge import Answer, MalformedRequest, SlackEdge

log = logging.getLogger(__name__)

# apps.connections.open errors that no retry will fix: the app token is wrong.
_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "not_allowed_token_type", "token_revoked", "token_expired", "account_inactive",
     "missing_scope", "invalid_token"}
)


class SocketModeAuthError(RuntimeError):
    """Slack refused the app-level token; the message is one sentence an operator can act on."""


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int) -> float:
        """Exponential with full jitter, never below a tenth of the step (a reconnect storm helps nobody)."""
        step = min(self.cap, self.first * 2**attempt)
        return random.uniform(step / 10, step)


class SocketModeClient:
    def __init__(
        self,
        edge: SlackEdge,
        app_token: str,
        *,
        api_url: str = "https://slack.com/api/",
        backoff: Backoff | None = None,
        heartbeat: float = 30.0,
    ) -> None:
        self._edge = edge
        self._token = app_token
        self._api_url = api_url if api_url.endswith("/") else api_url + "/"
        self._backoff = backoff or Backoff()
        self._heartbeat = heartbeat
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._closing = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self.connections = 0  # successful connects so far; /healthz and tests read it

    def __repr__(self) -> str:
        return f"SocketModeClient(connected={self.connected}, connections={self.connections})"

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def run(self) -> None:
        """Connect, serve, reconnect until `aclose`; raises `SocketModeAuthError` when the token is refused."""
        self._session = aiohttp.ClientSession()
        attempt = 0
        ended = ""
        try:
            while not self._closing.is_set():
                try:
                    url = await self._open_url()
                    ws = await self._session.ws_connect(url, heartbeat=self._heartbeat, autoclose=False)
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    delay = self._backoff.delay(attempt)
                    attempt += 1
                    log.warning(
                        "cannot reach Slack over Socket Mode (%s); retrying in %.1f s. Jobs are still tracked.",
                        _describe(exc),
                        delay,
                    )
                    await self._sleep(delay)
                    continue
                attempt = 0
                self._ws = ws
                self.connections += 1
                if self.connections == 1:
                    log.info("connected to Slack over Socket Mode")
                else:
                    log.info("reconnected to Slack over Socket Mode (%s)", ended)
                ended = await self._serve(ws)
                if not ws.closed:
                    await ws.close()
                self._ws = None
        finally:
            await self._drain()
            await self._session.close()
            self._session = None

    async def aclose(self) -> None:
        """Close the socket with a normal close frame; `run` then returns."""
        self._closing.set()
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close(code=aiohttp.WSCloseCode.OK, message=b"shutting down")

    # ---------------------------------------------------------------------------------------------------------------

    async def _open_url(self) -> str:
        assert self._session is not None
        async with self._session.post(
            self._api_url + "apps.connections.open",
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            if response.status != 200:
                raise ValueError(f"apps.connections.open answered HTTP {response.status}")
            data = await response.json(content_type=None)
        if not isinstance(data, dict):
            raise ValueError("apps.connections.open did not answer JSON")
        if not data.get("ok"):
            error = str(data.get("error") or "unknown_error")
            if error in _AUTH_ERRORS:
                raise SocketModeAuthError(
                    f"Slack refused SLACK_APP_TOKEN ({error}): set it to the app-level token (xapp-…) with the "
                    "connections:write scope, from your Slack app's Basic Information page."
                )
            raise ValueError(f"apps.connections.open said {error}")
        url = data.get("url")
        if not isinstance(url, str) or not url.startswith(("wss://", "ws://")):
            raise ValueError("apps.connections.open gave no websocket URL")
        return url

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Read frames until the socket ends; returns why, for the reconnect log line."""
        async for frame in ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                continue  # binary frames are not part of the protocol; pings are answered by aiohttp
            message = _json(frame.data)
            if message is None:
                log.warning("ignored a Socket Mode frame that is not a JSON object")
                continue
            kind = message.get("type")
            if kind == "hello":
                continue
            if kind == "disconnect":
                return f"Slack asked to reconnect: {str(message.get('reason') or 'no reason')[:40]}"
            envelope_id = message.get("envelope_id")
            if not isinstance(envelope_id, str) or not envelope_id:
                log.warning("ignored a Socket Mode frame without an envelope_id (type %s)", str(kind)[:40])
                continue
            task = asyncio.create_task(self._answer(ws, envelope_id, message))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        if self._closing.is_set():
            return "closing"
        return f"the connection dropped (close code {ws.close_code})"

    async def _answer(self, ws: aiohttp.ClientWebSocketResponse, envelope_id: str, message: dict[str, Any]) -> None:
        payload = message.get("payload")
        if isinstance(payload, dict):
            retry = message.get("retry_attempt")
            answer = await self._edge.dispatch(payload, retry_num=str(retry) if retry else None)
        else:
            answer = await self._edge.refuse(MalformedRequest("the envelope's payload is not a JSON object"))
        ack: dict[str, Any] = {"envelope_id": envelope_id}
        if message.get("accepts_response_payload") and _is_payload(answer) and (payload := answer.payload):
            ack["payload"] = payload
        try:
            await ws.send_str(json.dumps(ack))
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            log.warning("could not ack a Socket Mode envelope: %s", type(exc).__name__)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _drain(self) -> None:
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=3.0)


def _is_payload(answer: Answer) -> bool:
    """Only a 200's body is an ack payload; a refusal's error object would confuse Slack."""
    return answer.status == 200


def _json(data: str) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__
