"""Slack's side of Socket Mode, on the fake Slack's port: `apps.connections.open` and the websocket it hands out.

Tests push envelopes exactly as Slack frames them (shared shapes: slash_commands, interactive), read the acks, and
can misbehave as Slack's edge does: ask for a reconnect, drop the TCP connection without a close frame, refuse the
app token, or be unreachable.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from sandbox.devtools.waiting import until

DEFAULT_APP_TOKEN = "xapp-1-A01APP0001-1234567890123-" + "f" * 24


@dataclass
class SocketRecord:
    """One websocket the bot opened: what it acked and how it ended (1000 = a clean close frame from the bot)."""

    ticket: str
    ws: web.WebSocketResponse
    close_code: int | None = None
    closed_by_bot: bool = False
    acks: list[dict[str, Any]] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)


class FakeSocketMode:
    def __init__(self, *, app_token: str = DEFAULT_APP_TOKEN) -> None:
        self.app_token = app_token
        self.available = True  # False: apps.connections.open answers 503, as when Slack is down
        self.open_calls = 0
        self.sockets: list[SocketRecord] = []
        self._tickets: set[str] = set()
        self._changed = asyncio.Event()

    def register(self, app: web.Application) -> None:
        """Add the routes; must run before the fake Slack's catch-all `/api/{method}` route."""
        app.router.add_post("/api/apps.connections.open", self._open)
        app.router.add_get("/socket-mode/{ticket}", self._socket)

    # -- driving it from a test -----------------------------------------------------------------------------------

    @property
    def current(self) -> SocketRecord | None:
        live = [s for s in self.sockets if s.close_code is None and not s.ws.closed]
        return live[-1] if live else None

    async def wait_connected(self, *, count: int = 1, timeout: float = 10.0) -> SocketRecord:  # noqa: ASYNC109
        """The newest open socket once at least `count` sockets were opened."""

        def ready() -> SocketRecord | None:
            return self.current if len(self.sockets) >= count else None

        return await self._until(ready, timeout, f"{count} Socket Mode connection(s)")

    async def send(
        self, payload: Any, *, kind: str = "interactive", accepts_response_payload: bool = True, **extra: Any
    ) -> str:
        """Send one envelope on the current socket; returns its envelope_id."""
        envelope_id = str(uuid.uuid4())
        frame = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
            "payload": payload,
            **extra,
        }
        await self.send_raw(json.dumps(frame))
        return envelope_id

    async def send_raw(self, text: str) -> None:
        record = await self.wait_connected()
        await record.ws.send_str(text)

    async def wait_ack(self, envelope_id: str, *, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        def found() -> dict[str, Any] | None:
            return next((a for s in self.sockets for a in s.acks if a.get("envelope_id") == envelope_id), None)

        return await self._until(found, timeout, f"the ack of envelope {envelope_id}")

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's polite way: a `disconnect` message, then the bot is expected to reconnect."""
        await self.send_raw(json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}))

    async def drop(self) -> None:
        """Cut the current connection without a close frame (what a network failure looks like)."""
        record = await self.wait_connected()
        transport = record.ws._req.transport if record.ws._req is not None else None
        if transport is not None:
            transport.abort()

    async def wait_closed(self, record: SocketRecord, *, timeout: float = 5.0) -> SocketRecord:  # noqa: ASYNC109
        return await self._until(lambda: record if record.close_code is not None else None, timeout, "socket closed")

    # -- server side ----------------------------------------------------------------------------------------------

    async def _open(self, request: web.Request) -> web.Response:
        self.open_calls += 1
        if not self.available:
            return web.Response(status=503, text="Service Unavailable")
        token = (request.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        if not token.startswith("xapp-"):
            return web.json_response({"ok": False, "error": "not_allowed_token_type"})
        if token != self.app_token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        ticket = secrets.token_hex(12)
        self._tickets.add(ticket)
        url = f"ws://{request.host}/socket-mode/{ticket}"
        return web.json_response({"ok": True, "url": url})

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.match_info["ticket"]
        if ticket not in self._tickets:
            return web.Response(status=403, text="unknown ticket")
        self._tickets.discard(ticket)  # a ticket opens one connection, as Slack's do
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        record = SocketRecord(ticket=ticket, ws=ws)
        self.sockets.append(record)
        self._notify()
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len([s for s in self.sockets if s.close_code is None]),
                    "connection_info": {"app_id": "A01APP0001"},
                    "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                }
            )
        )
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                record.frames.append(message.data)
                try:
                    data = json.loads(message.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and "envelope_id" in data:
                    record.acks.append(data)
                    self._notify()
        record.close_code = ws.close_code if ws.close_code is not None else int(WSCloseCode.ABNORMAL_CLOSURE)
        record.closed_by_bot = message_was_close_frame(ws)
        self._notify()
        return ws

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, condition: Any, timeout: float, what: str) -> Any:  # noqa: ASYNC109
        return await until(condition, timeout=timeout, what=what, every=0.1, changed=lambda: self._changed)

def message_was_close_frame(ws: web.WebSocketResponse) -> bool:
    """aiohttp sets close_code from the peer's close frame; 1006 means none came."""
    return ws.close_code is not None and ws.close_code != WSCloseCode.ABNORMAL_CLOSURE
