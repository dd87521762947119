"""The cloud client's transport: httpx's own, with the idle-connection check answered from the kept socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from bot.cloud.transport import fast_idle_check_transport

LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=4, keepalive_expiry=30.0)


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A loopback server that answers every GET and remembers which peer (client port) each came from."""
    seen: list[web.Request] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/", seen
    finally:
        await runner.cleanup()


def idle_streams(client: httpx.AsyncClient) -> list[object]:
    pool = client._transport._pool  # type: ignore[attr-defined]
    return [c._connection._network_stream for c in pool.connections if c.is_idle()]


async def test_requests_reuse_the_kept_connection(server: tuple[str, list[web.Request]]) -> None:
    url, seen = server
    transport = fast_idle_check_transport(LIMITS)
    assert transport is not None
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(3):
            assert (await client.get(url)).json() == {"ok": True}
        (stream,) = idle_streams(client)
        assert stream.get_extra_info("is_readable") is False  # open and quiet: kept
        assert stream.get_extra_info("socket") is not None
    assert len({request.transport.get_extra_info("peername") for request in seen if request.transport}) <= 1


async def test_a_connection_the_server_closed_is_dropped_not_reused(server: tuple[str, list[web.Request]]) -> None:
    url, _ = server
    transport = fast_idle_check_transport(LIMITS)
    assert transport is not None
    async with httpx.AsyncClient(transport=transport, headers={"Connection": "keep-alive"}) as client:
        await client.get(url)
        (stream,) = idle_streams(client)
        sock = stream.get_extra_info("socket")
        # The server side goes away: the kept socket becomes readable (EOF), which the pool must see.
        sock.shutdown(1)  # half-close ours (SHUT_WR): the server answers with its own close
        deadline = time.monotonic() + 5
        while not stream.get_extra_info("is_readable"):
            assert time.monotonic() < deadline, "the closed connection never showed as readable"
            await asyncio.sleep(0.01)
        assert (await client.get(url)).json() == {"ok": True}  # on a fresh connection


def test_a_proxy_in_the_environment_keeps_httpx_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert fast_idle_check_transport(LIMITS) is None
