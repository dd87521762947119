"""`/readyz`: can this process do its work now? The store, the cloud credentials and the Slack token, each named.

The cloud and Slack answers are cached (`ttl` seconds for a pass, less for a failure), so a probe every few seconds
costs no API call while the bot is busy: a signed cloud answer the gateway accepted counts as a passed check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.cloud import CloudAPIError, CloudClient, CloudError
from bot.store import Store

Probe = Callable[[], Awaitable[str | None]]
"""None when the part works, else a sentence saying what is wrong (never a secret)."""

PROBE_SECONDS = 3.0
FAILURE_TTL = 5.0  # a failure is asked again sooner: a part that came back makes the process ready quickly


class Cached:
    """A probe asked at most once per `ttl` (failures: per FAILURE_TTL), one call at a time; `fresh` is recent
    evidence that the part works (e.g. the last signed answer), which spares the call."""

    def __init__(
        self,
        probe: Probe,
        *,
        ttl: float,
        fresh: Callable[[], float | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._ttl = ttl
        self._fresh = fresh
        self._clock = clock
        self._lock = asyncio.Lock()
        self._result: str | None = None
        self._at: float | None = None

    def _cached(self) -> tuple[bool, str | None]:
        now = self._clock()
        seen = self._fresh() if self._fresh is not None else None
        if seen is not None and now - seen < self._ttl and (self._at is None or seen >= self._at):
            return True, None
        keep = self._ttl if self._result is None else min(self._ttl, FAILURE_TTL)
        if self._at is not None and now - self._at < keep:
            return True, self._result
        return False, None

    async def __call__(self) -> str | None:
        hit, result = self._cached()
        if hit:
            return result
        async with self._lock:
            hit, result = self._cached()
            if hit:
                return result
            try:
                async with asyncio.timeout(PROBE_SECONDS):
                    result = await self._probe()
            except TimeoutError:
                result = f"no answer within {PROBE_SECONDS:g} s"
            self._result, self._at = result, self._clock()
            return result


class Readiness:
    """Runs the named probes together; the role ("leader" or "follower") is reported beside them."""

    def __init__(self, probes: Mapping[str, Probe], role: Callable[[], str]) -> None:
        self._probes = dict(probes)
        self._role = role

    async def report(self) -> tuple[bool, dict[str, Any]]:
        names = list(self._probes)
        results = await asyncio.gather(*(self._run(self._probes[name]) for name in names))
        checks = {name: result or "ok" for name, result in zip(names, results, strict=True)}
        failed = [name for name, result in zip(names, results, strict=True) if result is not None]
        ready = not failed
        return ready, {"ready": ready, "role": self._role(), "failed": failed, "checks": checks}

    @staticmethod
    async def _run(probe: Probe) -> str | None:
        try:
            return await probe()
        except Exception as exc:  # a probe's own bug must not turn /readyz into a 500
            return f"the check itself failed ({type(exc).__name__})"


# The three parts a bot needs, as probes. The composition root wires them (and the role) into `Readiness`.

TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"})


def store_probe(store: Store) -> Probe:
    async def store_check() -> str | None:
        try:
            await store.count_live()  # one indexed COUNT: cheap, and it proves the file opens and reads
        except Exception as exc:
            return f"the database cannot be read ({type(exc).__name__}): check ECSBOT_DB, its folder and the disk"
        return None

    return store_check


def cloud_probe(cloud: CloudClient) -> Probe:
    """One page of one server: any answer but 401/403 (or a 5xx) proves the keys are accepted."""

    async def cloud_check() -> str | None:
        try:
            await cloud.list_servers(limit=1)
        except CloudAPIError as exc:
            if exc.status in (401, 403):
                return f"the cloud refused the credentials (HTTP {exc.status} {exc.code}): {exc.hint}"
            if exc.status >= 500:
                return f"the cloud answers with errors (HTTP {exc.status} {exc.code}): {exc.hint}"
        except CloudError as exc:
            return f"the cloud cannot be reached: {exc.hint}"
        return None

    return cloud_check


def slack_probe(slack: AsyncWebClient) -> Probe:
    async def slack_check() -> str | None:
        try:
            await slack.auth_test()
        except SlackApiError as exc:
            error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
            if error in TOKEN_ERRORS:
                return f"Slack refused the bot token ({error}): check SLACK_BOT_TOKEN (or reinstall the app)"
            return f"Slack answered auth.test with {error}"
        except (aiohttp.ClientError, OSError) as exc:
            return f"Slack cannot be reached ({type(exc).__name__}): check SLACK_API_URL, DNS, a proxy or a firewall"
        return None

    return slack_check
