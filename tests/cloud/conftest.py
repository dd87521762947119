"""A small signed-request-checking Huawei Cloud stand-in on 127.0.0.1 (aiohttp), with scripted answers.

It is not the simulator: it serves canned replies per (method, path) so retries, throttling, dropped connections
and timeouts can be staged exactly, and it records every request as received on the wire.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from bot.cloud import CloudClient, Credentials, Endpoints, RetryPolicy, signer

PROJECT_ID = "0605767ef600d5762f23c013c6e7ad23"
AK = "SIMULATORAK000000000"
SK = "simulator-secret-key-0000000000000000000"
USER_ID = "7e25b1da389f4697a79df3a0e5bd494e"
SERVER_ID = "bae51750-0089-41a1-9b18-5c777978ea8d"
IMAGE_ID = "67f433d8-ed0e-4321-a8a2-a71838539e09"
JOB_ID = "ff80808288d41e1b018990260955686a"

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, total_timeout=5.0)


@dataclass
class Reply:
    """A canned answer; action "close" drops the connection unanswered, "hang" never answers."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    action: str | None = None


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool


class FakeCloud:
    def __init__(self, secret_key: str = SK) -> None:
        self.secret_key = secret_key
        self.seen: list[Seen] = []
        self._scripts: dict[tuple[str, str], deque[Reply]] = {}
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.connections: set[tuple[str, int]] = set()

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Replies are served in order; the last one repeats."""
        self._scripts[(method, path)] = deque(replies)

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        raw_path, _, raw_query = request.raw_path.partition("?")
        headers = dict(request.headers)
        parsed = signer.parse_authorization(request.headers.get("Authorization", ""))
        ok = parsed is not None and signer.verify(
            secret_key=self.secret_key,
            parsed=parsed,
            method=request.method,
            path=raw_path,
            query=parse_qsl(raw_query, keep_blank_values=True),
            headers=headers,
            body=body,
        )
        self.seen.append(Seen(request.method, raw_path, raw_query, headers, body, ok))
        if request.transport is not None:
            self.connections.add(request.transport.get_extra_info("peername"))
        if not ok:
            return web.json_response(
                {"error_msg": "Incorrect IAM authentication information", "error_code": "APIGW.0301"}, status=401
            )
        queue = self._scripts.get((request.method, raw_path))
        if not queue:
            return web.json_response({"error_msg": "API not found", "error_code": "APIGW.0101"}, status=404)
        reply = queue.popleft() if len(queue) > 1 else queue[0]
        if reply.action == "close":
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # aiohttp treats it as a lost client; nothing is written
        if reply.action == "hang":
            await self._release.wait()
        if reply.body is not None:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        return web.Response(
            status=reply.status,
            text=json.dumps(reply.json if reply.json is not None else {}),
            content_type="application/json",
            headers=reply.headers,
        )


@pytest.fixture
async def cloud() -> AsyncIterator[FakeCloud]:
    fake = FakeCloud()
    await fake.start()
    yield fake
    await fake.stop()


def make_client(
    base_url: str, *, secret_key: str = SK, timeout: float = 2.0, retry: RetryPolicy = FAST_RETRY
) -> CloudClient:
    return CloudClient(
        Credentials(AK, secret_key, PROJECT_ID, USER_ID),  # type: ignore[arg-type]  # str is wrapped into SecretStr
        Endpoints(ecs=base_url, ims=base_url, evs=base_url),
        timeout=timeout,
        retry=retry,
    )


@pytest.fixture
async def client(cloud: FakeCloud) -> AsyncIterator[CloudClient]:
    async with make_client(cloud.base_url) as c:
        yield c
