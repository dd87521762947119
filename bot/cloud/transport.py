"""httpx's own HTTP transport for the cloud client, with a cheaper "is this idle connection still open?" check.

Before every request, httpcore's pool asks each idle keep-alive connection whether its socket is readable (a server
that closed it). Through anyio, each answer rebuilds the stream's whole attribute table, a `getpeername` call
included, to reach the socket. With the pool's dozens of connections that was about a third of the CPU of the work
after each `/changeos` ack, on the event loop that also answers the next ack. This backend keeps the socket it
connected and polls it directly; the connections, TLS and timeouts are anyio's, unchanged.
"""

# ruff: noqa: ASYNC109  (the `timeout` parameters are httpcore's network interface, not ours to change)

from __future__ import annotations

import select
import socket
import ssl
import typing
import urllib.request

import httpcore
import httpx


def fast_idle_check_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport | None:
    """A transport like httpx's default, or None when the environment names a proxy (then httpx's default, which
    honours it, is used)."""
    if urllib.request.getproxies():
        return None
    transport = httpx.AsyncHTTPTransport(limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(  # the pool httpx would build, with the backend below
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_SocketKeepingBackend(),
    )
    return transport


def _readable(sock: socket.socket | None) -> bool:
    """httpcore's test: a closed or unknown socket counts as readable (the next read returns b"")."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            return _readable(self._socket)
        if info == "socket":
            return self._socket
        return self._inner.get_extra_info(info)


class _SocketKeepingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
