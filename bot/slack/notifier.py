"""Posts and edits Slack messages for every live job without ever outrunning Slack's rate tiers.

Why it is built this way:
- `chat.update` is Tier 3 (about 50 a minute per workspace, across *all* our messages), so one token bucket paces
  every edit, and edits are coalesced per message: while an edit waits for its turn, a newer one replaces it.
  Content identical to what last landed is never sent again.
- `chat.postMessage` allows about one message a second per channel, with short bursts, under a workspace-wide
  ceiling Slack does not publish. Each channel gets its own bucket and all posts share a workspace bucket
  (`workspace_posts_per_minute`, 120 by default: two channels at full speed, and far below what Slack allows).
- A 429 pauses the bucket Slack named (globally for `chat.update`, the channel for `chat.postMessage`) for
  `Retry-After` seconds, then the same operation is retried: 429s never use up an operation's attempts.
  5xx answers and connection errors are retried with capped, jittered exponential backoff, `max_attempts` in all.
  Any other `ok:false` (channel_not_found, not_in_channel, is_archived, invalid_blocks, ...) is permanent: it is
  logged once and the caller gets None/False.
- Order holds where a person would notice: the edits of one message go out one at a time, oldest first (the
  newest content always lands last), and the posts of one channel go out one at a time in the order asked.

Workers are short-lived tasks, one per message with edits waiting and one per channel with posts waiting; they end
when their queue is empty, so 1,000 tracked jobs cost nothing while nothing changes. Waiting for a token is a FIFO
lock in the bucket, so only one timer runs per bucket however many operations wait.

Logs carry the method, channel, error code and retry-after; never message text or blocks. A post retried after a
connection error may appear twice if Slack had stored the first one (Slack offers no idempotency key for it).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import random
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.services.ratelimit import Clock, TokenBucket

log = logging.getLogger(__name__)

POST = "chat.postMessage"
UPDATE = "chat.update"
EPHEMERAL = "chat.postEphemeral"
PERMALINK = "chat.getPermalink"
METHODS = (POST, UPDATE, EPHEMERAL, PERMALINK)

UPDATE_BURST = 3
"""Edits allowed back to back before the Tier 3 pace applies; small, so a 60 s window stays near the budget."""
WORKSPACE_POSTS_PER_MINUTE = 120.0
WORKSPACE_POST_BURST = 10
TIER4_PER_MINUTE = 100.0
"""chat.postEphemeral is Tier 4; chat.getPermalink gets the same pace (its own bucket)."""
TIER4_BURST = 5
DEFAULT_RETRY_AFTER = 1.0
"""Used when a 429 carries no usable Retry-After header."""
LANDED_MEMORY = 20_000
"""How many messages' last landed content is remembered to skip identical edits (about 32 bytes each)."""
PERMALINK_CACHE = 4_096
IN_FLIGHT_GRACE = 2.0
"""At close, seconds a request already on the wire gets to answer, so its caller learns what really happened."""

# ok:false codes that Slack documents as "try again later" rather than "this request is wrong".
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
RATELIMIT_ERRORS = frozenset({"ratelimited", "rate_limited"})

T = TypeVar("T")
Blocks = list[dict[str, Any]]


@dataclass(frozen=True)
class Failure:
    """Why a call did not land, reduced to what the queue must do next."""

    kind: Literal["ratelimited", "transient", "permanent"]
    code: str
    retry_after: float = 0.0


def parse_retry_after(value: object) -> float:
    """Seconds from a Retry-After header; Slack sends whole seconds, anything unusable means the default."""
    try:
        seconds = float(str(value).strip())
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER
    if seconds != seconds or seconds < 0:  # NaN or negative
        return DEFAULT_RETRY_AFTER
    return seconds


def _header(headers: object, name: str) -> object:
    if not isinstance(headers, Mapping):
        return None
    if name in headers:
        return headers[name]
    lowered = name.lower()
    return next((v for k, v in headers.items() if str(k).lower() == lowered), None)


def classify(exc: BaseException) -> Failure:
    """Sort an exception from slack_sdk into rate limited, worth retrying, or permanent."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = getattr(response, "status_code", None) or getattr(response, "status", None)
        data = getattr(response, "data", None)
        code = data.get("error") if isinstance(data, dict) else None
        code = str(code) if code else None
        if status == 429 or code in RATELIMIT_ERRORS:
            retry_after = parse_retry_after(_header(getattr(response, "headers", None), "Retry-After"))
            return Failure("ratelimited", code or "ratelimited", retry_after)
        if isinstance(status, int) and status >= 500:
            return Failure("transient", code or f"http_{status}")
        if code in TRANSIENT_ERRORS:
            return Failure("transient", code)
        return Failure("permanent", code or f"http_{status}")
    if isinstance(exc, aiohttp.ClientError | OSError):  # OSError covers TimeoutError and refused connections
        return Failure("transient", type(exc).__name__)
    return Failure("permanent", type(exc).__name__)


def fingerprint(text: str, blocks: Blocks | None) -> bytes:
    """A compact digest of what a message shows, to skip edits that would change nothing."""
    raw = json.dumps([text, blocks], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(raw.encode(), digest_size=16).digest()


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Capped exponential backoff with jitter (between half and all of the step) for the n-th failed attempt."""
    step = min(cap, base * (2 ** max(0, attempt - 1)))
    return step * random.uniform(0.5, 1.0)


@dataclass
class _Update:
    text: str
    blocks: Blocks | None
    digest: bytes
    future: asyncio.Future[bool]
    attempts: int = 0


@dataclass
class _UpdateLane:
    pending: _Update | None = None
    inflight: _Update | None = None
    task: asyncio.Task[None] | None = None


@dataclass
class _Post:
    channel: str
    text: str
    blocks: Blocks | None
    thread_ts: str | None
    reply_broadcast: bool
    future: asyncio.Future[str | None]
    attempts: int = 0


@dataclass
class _PostLane:
    bucket: TokenBucket
    queue: deque[_Post] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


def _resolve(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


class Notifier:
    """Rate-limited, coalescing, retrying front for the chat.* methods the bot uses; see the module docstring.

    Operations asked for before `start()` wait in their queues and go out once it is called.
    """

    retry_base_delay: float = 0.5
    retry_max_delay: float = 20.0

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        updates_per_minute: float = 50,
        posts_per_second_per_channel: float = 1.0,
        post_burst: int = 3,
        max_attempts: int = 8,
        clock: Clock = time.monotonic,
        workspace_posts_per_minute: float = WORKSPACE_POSTS_PER_MINUTE,
    ) -> None:
        for name, value in (
            ("updates_per_minute", updates_per_minute),
            ("posts_per_second_per_channel", posts_per_second_per_channel),
            ("workspace_posts_per_minute", workspace_posts_per_minute),
        ):
            if not value > 0:
                raise ValueError(f"Notifier: {name} must be a positive number, got {value!r}")
        if post_burst < 1:
            raise ValueError(f"Notifier: post_burst must be at least 1, got {post_burst!r}")
        if max_attempts < 1:
            raise ValueError(f"Notifier: max_attempts must be at least 1, got {max_attempts!r}")
        self._client = client
        self._clock = clock
        self._max_attempts = max_attempts
        self._post_rate = float(posts_per_second_per_channel)
        self._post_burst = int(post_burst)
        self._update_bucket = TokenBucket(updates_per_minute / 60.0, UPDATE_BURST, clock)
        self._workspace_post_bucket = TokenBucket(
            workspace_posts_per_minute / 60.0, max(WORKSPACE_POST_BURST, post_burst), clock
        )
        self._ephemeral_bucket = TokenBucket(TIER4_PER_MINUTE / 60.0, TIER4_BURST, clock)
        self._permalink_bucket = TokenBucket(TIER4_PER_MINUTE / 60.0, TIER4_BURST, clock)
        self._channel_buckets: dict[str, TokenBucket] = {}
        self._update_lanes: dict[tuple[str, str], _UpdateLane] = {}
        self._post_lanes: dict[str, _PostLane] = {}
        self._landed: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._permalinks: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._permalink_tasks: dict[tuple[str, str], asyncio.Task[str | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_call: set[asyncio.Task[Any]] = set()
        self._direct_running = 0
        self._started = asyncio.Event()
        self._closed = False
        self._stats: Counter[str] = Counter({m: 0 for m in METHODS})
        for name in ("ratelimited", "retries", "coalesced", "skipped", "failed", "dropped"):
            self._stats[name] = 0

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Let the queues send. Idempotent."""
        if self._closed:
            raise RuntimeError("Notifier is closed; create a new one to send again")
        self._started.set()

    async def aclose(self, drain_timeout: float = 10.0) -> None:
        """Send what can be sent within `drain_timeout` seconds, then stop.

        Work still queued after that is abandoned: its callers get None/False and `stats()["dropped"]` counts it.
        """
        if self._closed:
            return
        self._started.set()  # queued work is drained even if start() was never called
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, drain_timeout)
        while self._tasks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.wait(set(self._tasks), timeout=remaining)
        self._closed = True  # workers stop at their next step
        leftover = set(self._tasks)
        for task in leftover - self._in_call:
            task.cancel()
        if leftover:
            _, late = await asyncio.wait(leftover, timeout=IN_FLIGHT_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*leftover, return_exceptions=True)
        self._fail_leftovers()

    def _fail_leftovers(self) -> None:
        dropped = 0
        for lane in self._update_lanes.values():
            for op in (lane.inflight, lane.pending):
                if op is not None and not op.future.done():
                    op.future.set_result(False)
                    dropped += 1
        for post_lane in self._post_lanes.values():
            for post in post_lane.queue:
                if not post.future.done():
                    post.future.set_result(None)
                    dropped += 1
        self._update_lanes.clear()
        self._post_lanes.clear()
        dropped += self._stats["dropped"]  # direct calls cut short count themselves
        if dropped:
            self._stats["dropped"] = dropped
            log.warning("slack notifier closed with %d operations not sent", dropped)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("Notifier is closed: nothing more can be sent through it")

    def _spawn(self, coro: Awaitable[T]) -> asyncio.Task[T]:
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- introspection --------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Calls per API method, plus ratelimited (429s seen), retries, coalesced and skipped edits, failed, dropped."""
        return dict(self._stats)

    def pending(self) -> int:
        """Operations asked for and not finished yet (waiting or in flight)."""
        updates = sum((lane.pending is not None) + (lane.inflight is not None) for lane in self._update_lanes.values())
        posts = sum(len(lane.queue) for lane in self._post_lanes.values())
        return updates + posts + self._direct_running

    # -- chat.update ----------------------------------------------------------------------------------------------

    async def update(self, channel: str, ts: str, text: str, blocks: Blocks | None = None) -> bool:
        """Edit message `ts`; True once this content (or newer content asked for later) is on Slack."""
        self._check_open()
        key = (channel, ts)
        digest = fingerprint(text, blocks)
        lane = self._update_lanes.get(key)
        if lane is None:
            if self._landed.get(key) == digest:
                self._stats["skipped"] += 1
                return True
            lane = self._update_lanes[key] = _UpdateLane()
        if lane.pending is not None:
            # Replace what has not been sent yet: only the newest content matters to a person reading.
            lane.pending.text, lane.pending.blocks, lane.pending.digest = text, blocks, digest
            self._stats["coalesced"] += 1
            future = lane.pending.future
        else:
            future = asyncio.get_running_loop().create_future()
            lane.pending = _Update(text, blocks, digest, future)
        if lane.task is None:
            lane.task = self._spawn(self._run_update_lane(key, lane))
        return await asyncio.shield(future)

    async def _run_update_lane(self, key: tuple[str, str], lane: _UpdateLane) -> None:
        channel, ts = key
        try:
            await self._started.wait()
            while lane.pending is not None and not self._closed:
                if self._skip_if_landed(key, lane):
                    continue
                await self._update_bucket.acquire()
                if self._closed:
                    break
                if self._skip_if_landed(key, lane):
                    continue
                op = lane.inflight = lane.pending
                lane.pending = None  # edits asked for from now on queue behind this one
                text, blocks, digest = op.text, op.blocks, op.digest
                kwargs: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
                if blocks is not None:
                    kwargs["blocks"] = blocks
                result = await self._call(UPDATE, channel, functools.partial(self._client.chat_update, **kwargs))
                lane.inflight = None
                if not isinstance(result, Failure):
                    self._remember_landed(key, digest)
                    _resolve(op.future, True)
                    continue
                if result.kind == "ratelimited":
                    self._update_bucket.pause(result.retry_after)
                    self._requeue_update(lane, op)
                    continue
                if result.kind == "transient" and op.attempts + 1 < self._max_attempts:
                    op.attempts += 1
                    self._requeue_update(lane, op)
                    delay = backoff_delay(op.attempts, self.retry_base_delay, self.retry_max_delay)
                    self._log_retry(UPDATE, channel, result, delay, op.attempts)
                    await asyncio.sleep(delay)
                    continue
                self._log_failure(UPDATE, channel, result, op.attempts + 1)
                _resolve(op.future, False)
        finally:
            if self._update_lanes.get(key) is lane and lane.pending is None and lane.inflight is None:
                del self._update_lanes[key]
            lane.task = None

    def _skip_if_landed(self, key: tuple[str, str], lane: _UpdateLane) -> bool:
        op = lane.pending
        if op is None or self._landed.get(key) != op.digest:
            return False
        lane.pending = None
        self._stats["skipped"] += 1
        _resolve(op.future, True)
        return True

    def _requeue_update(self, lane: _UpdateLane, op: _Update) -> None:
        """Put a failed edit back; if newer content arrived meanwhile, that replaces it and answers both callers."""
        self._stats["retries"] += 1
        newer = lane.pending
        if newer is None:
            lane.pending = op
            return
        self._stats["coalesced"] += 1
        newer.attempts = max(newer.attempts, op.attempts)
        newer.future.add_done_callback(lambda f: _resolve(op.future, f.result()))

    def _remember_landed(self, key: tuple[str, str], digest: bytes) -> None:
        self._landed[key] = digest
        self._landed.move_to_end(key)
        while len(self._landed) > LANDED_MEMORY:
            self._landed.popitem(last=False)

    # -- chat.postMessage -----------------------------------------------------------------------------------------

    async def post(
        self,
        channel: str,
        text: str,
        blocks: Blocks | None = None,
        *,
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
    ) -> str | None:
        """Post a message (a thread reply with `thread_ts`); its ts once landed, None after a permanent error."""
        self._check_open()
        lane = self._post_lanes.get(channel)
        if lane is None:
            bucket = self._channel_buckets.get(channel)
            if bucket is None:
                bucket = self._channel_buckets[channel] = TokenBucket(self._post_rate, self._post_burst, self._clock)
            lane = self._post_lanes[channel] = _PostLane(bucket)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        lane.queue.append(_Post(channel, text, blocks, thread_ts, reply_broadcast, future))
        if lane.task is None:
            lane.task = self._spawn(self._run_post_lane(channel, lane))
        return await asyncio.shield(future)

    async def _run_post_lane(self, channel: str, lane: _PostLane) -> None:
        try:
            await self._started.wait()
            while lane.queue and not self._closed:
                op = lane.queue[0]
                await lane.bucket.acquire()
                await self._workspace_post_bucket.acquire()
                if self._closed:
                    break
                kwargs: dict[str, Any] = {"channel": channel, "text": op.text}
                if op.blocks is not None:
                    kwargs["blocks"] = op.blocks
                if op.thread_ts:
                    kwargs["thread_ts"] = op.thread_ts
                    if op.reply_broadcast:
                        kwargs["reply_broadcast"] = True
                result = await self._call(POST, channel, functools.partial(self._client.chat_postMessage, **kwargs))
                if not isinstance(result, Failure):
                    lane.queue.popleft()
                    ts = str(result.get("ts") or "") or None
                    if ts is not None:
                        digest = fingerprint(op.text, op.blocks)
                        self._remember_landed((channel, ts), digest)
                        answered = result.get("channel")
                        if isinstance(answered, str) and answered and answered != channel:
                            self._remember_landed((answered, ts), digest)
                    _resolve(op.future, ts)
                    continue
                if result.kind == "ratelimited":
                    self._stats["retries"] += 1
                    lane.bucket.pause(result.retry_after)
                    continue
                if result.kind == "transient" and op.attempts + 1 < self._max_attempts:
                    op.attempts += 1
                    self._stats["retries"] += 1
                    delay = backoff_delay(op.attempts, self.retry_base_delay, self.retry_max_delay)
                    self._log_retry(POST, channel, result, delay, op.attempts)
                    await asyncio.sleep(delay)
                    continue
                lane.queue.popleft()
                self._log_failure(POST, channel, result, op.attempts + 1)
                _resolve(op.future, None)
        finally:
            if self._post_lanes.get(channel) is lane and not lane.queue:
                del self._post_lanes[channel]
            lane.task = None

    # -- chat.postEphemeral and chat.getPermalink -----------------------------------------------------------------

    async def ephemeral(self, channel: str, user: str, text: str, blocks: Blocks | None = None) -> bool:
        """Show `user` a message only they see (Tier 4); True once Slack took it."""
        self._check_open()
        kwargs: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if blocks is not None:
            kwargs["blocks"] = blocks
        task = self._spawn(
            self._direct(EPHEMERAL, channel, self._ephemeral_bucket, lambda: self._client.chat_postEphemeral(**kwargs))
        )
        return await asyncio.shield(task) is not None

    async def permalink(self, channel: str, ts: str) -> str | None:
        """A link to message `ts`, from the cache when known; None when Slack refuses (e.g. message_not_found)."""
        self._check_open()
        key = (channel, ts)
        cached = self._permalinks.get(key)
        if cached is not None:
            self._permalinks.move_to_end(key)
            return cached
        task = self._permalink_tasks.get(key)
        if task is None:
            task = self._spawn(self._fetch_permalink(key))
            self._permalink_tasks[key] = task
            task.add_done_callback(lambda _t: self._permalink_tasks.pop(key, None))
        return await asyncio.shield(task)

    async def _fetch_permalink(self, key: tuple[str, str]) -> str | None:
        channel, ts = key
        response = await self._direct(
            PERMALINK,
            channel,
            self._permalink_bucket,
            lambda: self._client.chat_getPermalink(channel=channel, message_ts=ts),
        )
        link = response.get("permalink") if response is not None else None
        if not isinstance(link, str) or not link:
            return None
        self._permalinks[key] = link
        while len(self._permalinks) > PERMALINK_CACHE:
            self._permalinks.popitem(last=False)
        return link

    async def _direct(
        self,
        method: str,
        channel: str,
        bucket: TokenBucket,
        send: Callable[[], Awaitable[AsyncSlackResponse]],
    ) -> AsyncSlackResponse | None:
        """One call with the same pacing and retry rules as the queues, for methods where order does not matter."""
        self._direct_running += 1
        try:
            await self._started.wait()
            attempts = 0
            while True:
                await bucket.acquire()
                if self._closed:
                    self._stats["dropped"] += 1
                    return None
                result = await self._call(method, channel, send)
                if not isinstance(result, Failure):
                    return result
                if result.kind == "ratelimited":
                    self._stats["retries"] += 1
                    bucket.pause(result.retry_after)
                    continue
                if result.kind == "transient" and attempts + 1 < self._max_attempts:
                    attempts += 1
                    self._stats["retries"] += 1
                    delay = backoff_delay(attempts, self.retry_base_delay, self.retry_max_delay)
                    self._log_retry(method, channel, result, delay, attempts)
                    await asyncio.sleep(delay)
                    continue
                self._log_failure(method, channel, result, attempts + 1)
                return None
        except asyncio.CancelledError:
            if not self._closed:
                raise
            self._stats["dropped"] += 1  # aclose gave up on it: the caller gets the failure answer
            return None
        finally:
            self._direct_running = max(0, self._direct_running - 1)

    # -- the one place that talks to Slack ------------------------------------------------------------------------

    async def _call(
        self, method: str, channel: str, send: Callable[[], Awaitable[AsyncSlackResponse]]
    ) -> AsyncSlackResponse | Failure:
        self._stats[method] += 1
        task = asyncio.current_task()
        if task is not None:
            self._in_call.add(task)
        try:
            return await send()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is sorted below; none may kill a worker and strand its callers
            failure = classify(exc)
        finally:
            if task is not None:
                self._in_call.discard(task)
        if failure.kind == "ratelimited":
            self._stats["ratelimited"] += 1
            log.info(
                "slack %s rate limited: channel=%s error=%s retry_after=%.1fs",
                method,
                channel,
                failure.code,
                failure.retry_after,
            )
        return failure

    def _log_retry(self, method: str, channel: str, failure: Failure, delay: float, attempt: int) -> None:
        log.info(
            "slack %s failed, retrying: channel=%s error=%s attempt=%d/%d retry_in=%.1fs",
            method,
            channel,
            failure.code,
            attempt,
            self._max_attempts,
            delay,
        )

    def _log_failure(self, method: str, channel: str, failure: Failure, attempts: int) -> None:
        self._stats["failed"] += 1
        log.warning(
            "slack %s gave up: channel=%s error=%s kind=%s attempts=%d",
            method,
            channel,
            failure.code,
            failure.kind,
            attempts,
        )
