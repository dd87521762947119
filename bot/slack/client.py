"""The bot's Slack Web API client, counted: every attempt of every call lands in `ecsbot_slack_calls`.

slack_sdk asks each retry handler about every answer (and every connection error) before it decides to retry, and
Bolt copies the app client's handlers into the client it gives each listener. So one handler that never retries,
placed first, sees every call the bot makes, whichever client object makes it.
"""

from __future__ import annotations

import aiohttp
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics


class CountCalls(AsyncRetryHandler):
    """Counts each answer by method and result; never asks for a retry. `method` fixes it (a response_url)."""

    def __init__(self, method: str | None = None) -> None:
        super().__init__(max_retry_count=0)
        self._method = method

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = self._method or request.url.rsplit("/", 1)[-1].split("?", 1)[0]
        metrics.slack_call(method, result_of(response, error))
        return False


def result_of(response: HttpResponse | None, error: Exception | None) -> str:
    if response is None:  # no answer: refused, reset, timed out
        return "unreachable"
    if int(response.status_code) == 429:
        return "ratelimited"
    body = response.body
    if int(response.status_code) != 200 or (isinstance(body, dict) and body.get("ok") is False):
        return "error"
    return "ok"


def counted_handlers(method: str | None = None) -> list[AsyncRetryHandler]:
    """The counter first, then slack_sdk's default (one retry of a failed connection)."""
    return [CountCalls(method), AsyncConnectionErrorRetryHandler()]


def web_client(token: str | None, base_url: str) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=base_url, retry_handlers=counted_handlers())


def share_connections(client: AsyncWebClient) -> None:
    """Give `client` (and the copy Bolt makes of it for each request) one aiohttp session, inside the running loop.

    Without one, slack_sdk opens a session for every call: a new TCP (and TLS) connection to Slack each time, closed
    after the call, its socket and transport left in reference cycles for the garbage collector. The session carries
    the client's timeout, which slack_sdk applies only to the sessions it opens itself."""
    if client.session is None or client.session.closed:
        client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=client.timeout))


async def close_connections(client: AsyncWebClient) -> None:
    if client.session is not None:
        await client.session.close()
        client.session = None
