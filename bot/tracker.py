"""Drives every approved request to its end: stop, submit, follow the job, confirm, tell people.

All state lives in the store, so a restarted process resumes exactly where the last one stopped. The one dangerous
moment, the change-OS POST, is bracketed: `submit_sent_at` is written before the POST, so a process that dies
after it never posts again but reconciles by reading the server. A lease row keeps a second process from polling
or posting at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError

from bot.cloud import (
    ChangeOsOption,
    CloudAPIError,
    CloudClient,
    CloudError,
    CloudUnreachableError,
    Job,
    JobStatus,
    OutcomeUnknownError,
    Server,
    ThrottledError,
    hint_for,
)
from bot.cloud import StopType as CloudStopType
from bot.domain.request import ChangeRequest, LoginMethod, RequestState
from bot.slack.presenter import Presenter
from bot.slack.ratelimit import TokenBucket
from bot.store import Store
from bot.workflow import Workflow

log = logging.getLogger(__name__)
T = TypeVar("T")

DRIVEN = (
    RequestState.APPROVED,
    RequestState.STOPPING,
    RequestState.SUBMITTING,
    RequestState.RECONCILING,
    RequestState.RUNNING,
)
LEASE = "tracker"
JOB_GONE = "GONE"  # job_status once the job record expired: the server is followed instead
REBUILDING = ("rebuilding", "rebuild_block_device_mapping", "rebuild_spawning")
MAX_SUBMIT_ATTEMPTS = 5
MISSING_USER_ID = (
    "HUAWEICLOUD_USER_ID is not set: Huawei needs the IAM user ID (`userid`) with a key pair login when the bot signs "
    "with AK/SK."
)


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    poll_interval: float = 10.0
    first_poll: float = 2.0
    deadline: float = 1800.0
    overdue_interval_factor: float = 6.0
    max_backoff: float = 300.0
    ecs_rate: float = 20.0
    reconcile_grace: float = 60.0
    lease_ttl: float = 30.0
    concurrency: int = 32
    """Steps at once; kept below the cloud client's connection pool (100) so requests never queue inside httpcore,
    whose queue handling grows with its length squared (measured by bench/tracker.py: 200 made 1,000 jobs lag 50 s)."""


class Tracker:
    def __init__(
        self,
        store: Store,
        cloud: CloudClient,
        workflow: Workflow,
        presenter: Presenter,
        *,
        config: TrackerConfig = TrackerConfig(),
        user_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.cloud = cloud
        self.workflow = workflow
        self.presenter = presenter
        self.config = config
        self.user_id = user_id
        self._clock = clock
        self._budget = TokenBucket(config.ecs_rate, max(1, int(config.ecs_rate)))
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{random.randrange(1 << 30):x}"
        self._wake = asyncio.Event()
        self._reload_wanted = True
        self._heap: list[tuple[float, str]] = []
        self._inflight: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._sem = asyncio.Semaphore(config.concurrency)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.ecs_calls = 0
        self.has_lease = False

    # ------------------------------------------------------------------ lifecycle

    def wake(self) -> None:
        """New work in the store (an approval, a cancel): read it now instead of at the next periodic reload."""
        self._reload_wanted = True
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tracker")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.has_lease:
            self.store.release_lease(LEASE, self._owner)

    async def _run(self) -> None:
        resumed = False
        last_reload = last_renew = 0.0
        while not self._stopping:
            now = self._clock()
            # Renewed a few times per TTL, not on every wake-up: with 1,000 jobs this loop turns hundreds of times
            # a second, and each renewal is a write transaction.
            if not self.has_lease or now - last_renew >= self.config.lease_ttl / 3:
                self.has_lease = self.store.acquire_lease(LEASE, self._owner, self.config.lease_ttl, now)
                last_renew = now
            if not self.has_lease:
                if self._take_over_dead_lease(now):
                    continue
                await self._sleep(self.config.lease_ttl / 3)
                continue
            if not resumed:
                self._resume()
                resumed = True
            # A finished step only sets _wake so the sleep below is recomputed; reading every live request back
            # from the store after each step would make the tracker O(live jobs) per poll.
            self._wake.clear()
            if self._reload_wanted or now - last_reload >= self.config.lease_ttl / 3:
                self._reload_wanted = False
                self._reload()
                self.store.purge_expired()
                for request in self.workflow.expire_due():
                    self._spawn(self.presenter.sync(request.id, request))
                last_reload = now
            self._dispatch_due(now)
            next_at = self._heap[0][0] if self._heap else now + self.config.lease_ttl / 3
            await self._sleep(min(max(0.0, next_at - self._clock()), self.config.lease_ttl / 3))

    def _take_over_dead_lease(self, now: float) -> bool:
        """A restart after a crash (SIGKILL, OOM) need not wait out the old lease: its holder provably is gone."""
        holder = self.store.lease_owner(LEASE, now)
        if holder is None or not holder_is_gone(holder):
            return False
        log.warning("tracker lease held by %s, a process of this host that no longer runs: taking it over", holder)
        self.store.release_lease(LEASE, holder)
        return True

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def _resume(self) -> None:
        """After a start: tell people whatever they have not been told, whatever state the request is in."""
        for request in self.store.needs_sync():
            self._spawn(self.presenter.sync(request.id))

    def _reload(self) -> None:
        scheduled = {rid for _, rid in self._heap} | self._inflight
        for request in self.store.in_states(*DRIVEN):
            if request.id not in scheduled:
                heapq.heappush(self._heap, (request.next_poll_at or 0.0, request.id))

    def _dispatch_due(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, request_id = heapq.heappop(self._heap)
            if request_id in self._inflight:
                continue
            self._inflight.add(request_id)
            self._spawn(self._step_guarded(request_id))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ one step of one request

    async def _step_guarded(self, request_id: str) -> None:
        try:
            async with self._sem:
                request = self.store.get(request_id)
                if request is None or request.state not in DRIVEN:
                    return
                try:
                    await self._step(request)
                except CloudError as exc:
                    self._retry_later(request_id, exc)
                except Exception:
                    log.exception("tracker step failed for %s; will retry", request_id)
                    self._retry_later(request_id, None)
        finally:
            self._inflight.discard(request_id)
            current = self.store.get(request_id)
            if current is not None and current.state in DRIVEN and not self._stopping:
                heapq.heappush(self._heap, (current.next_poll_at or self._clock(), request_id))
                self._wake.set()

    async def _step(self, request: ChangeRequest) -> None:
        match request.state:
            case RequestState.APPROVED:
                await self._start(request)
            case RequestState.STOPPING:
                await self._stopping_step(request)
            case RequestState.SUBMITTING:
                await self._submit(request)
            case RequestState.RECONCILING:
                await self._reconcile(request)
            case RequestState.RUNNING:
                await self._follow(request)

    async def _ecs(self, call: Callable[[], Awaitable[T]]) -> T:
        """Every cloud call of the tracker shares one budget, so a thousand jobs cannot flood the API."""
        await self._budget.acquire()
        self.ecs_calls += 1
        return await call()

    def _schedule(self, request_id: str, delay: float, **fields: Any) -> ChangeRequest:
        return self.store.update(request_id, next_poll_at=self._clock() + delay, **fields)

    def _retry_later(self, request_id: str, exc: CloudError | None) -> None:
        current = self.store.get(request_id)
        if current is None:
            return
        failures = current.poll_failures + 1
        delay = min(self.config.poll_interval * (2 ** min(failures, 10)), self.config.max_backoff)
        delay = random.uniform(delay / 2, delay)
        if isinstance(exc, ThrottledError) and exc.retry_after:
            delay = max(delay, exc.retry_after)
        log.warning(
            "%s: cloud trouble (%s); next try in %.1fs", request_id, type(exc).__name__ if exc else "bug", delay
        )
        self._schedule(request_id, delay, poll_failures=failures)

    def _move(self, request: ChangeRequest, to: RequestState, detail: str = "", **fields: Any) -> ChangeRequest | None:
        moved = self.store.transition(request.id, to=to, expected=request.state, actor="bot", detail=detail, **fields)
        if moved is not None:
            if moved.is_terminal:
                self.workflow.forget_password(moved.id)
            self._spawn(self.presenter.sync(moved.id, moved))
        return moved

    def _fail(self, request: ChangeRequest, result: str, *, code: str | None = None, reason: str | None = None) -> None:
        self._move(
            request,
            RequestState.FAILED,
            detail=result,
            result=result,
            error_code=code,
            fail_reason=reason,
            finished_at=datetime.now(UTC),
            next_poll_at=None,
        )

    # approved → stopping | submitting
    async def _start(self, request: ChangeRequest) -> None:
        if request.login is LoginMethod.PASSWORD and self.workflow.password_for(request.id) is None:
            self._fail(request, "The admin password is gone (expired or lost). Nothing was sent; submit a new request.")
            return
        server = await self._ecs(lambda: self.cloud.get_server(request.server_id))
        if server.task_state:
            self._schedule(
                request.id, self.config.poll_interval, job_progress=f"Waiting: the server is {server.task_state}"
            )
            return
        if server.status == "SHUTOFF" or (server.status == "ERROR" and not request.stop_first):
            self._move(request, RequestState.SUBMITTING, "the server is stopped", next_poll_at=0.0)
        elif server.status == "ACTIVE" and request.stop_first:
            self._move(request, RequestState.STOPPING, f"stopping ({request.stop_type.value})", next_poll_at=0.0)
        elif server.status == "ACTIVE":
            self._fail(
                request,
                f"{request.server_name} is running again, and the approved plan did not include stopping it. "
                "Nothing was sent; submit a new request (it will offer to stop the server).",
            )
        else:
            self._fail(
                request,
                f"{request.server_name} is {server.status}, neither running nor stopped. Nothing was sent; check "
                "the server in the console, then submit a new request.",
            )

    # stopping → submitting
    async def _stopping_step(self, request: ChangeRequest) -> None:
        if request.stop_job_id is None and request.stop_sent_at is None:
            self.store.update(request.id, stop_sent_at=datetime.now(UTC))
            try:
                job_id = await self._ecs(
                    lambda: self.cloud.stop_server(request.server_id, CloudStopType(request.stop_type.value))
                )
            except OutcomeUnknownError:
                self._schedule(request.id, self.config.first_poll, job_progress="Stop sent; checking the server")
                return
            except CloudError as exc:
                if _not_now(exc):
                    self.store.update(request.id, stop_sent_at=None)
                    raise
                if not isinstance(exc, CloudAPIError):
                    raise
                self._fail(
                    request, f"The cloud refused to stop the server: {exc.hint}", code=exc.code, reason=exc.message
                )
                return
            self._schedule(request.id, self.config.first_poll, stop_job_id=job_id, job_progress="Stop job started")
            return
        job: Job | None = None
        if request.stop_job_id is not None:
            try:
                job = await self._ecs(lambda: self.cloud.get_job(request.stop_job_id or ""))
            except CloudAPIError as exc:
                if not job_is_gone(exc):
                    raise
                # The stop job's record expired: the server's own state below says whether it stopped.
        if job is not None:
            if job.failed:
                self._fail(
                    request,
                    "The cloud could not stop the server: " + _failure_text(job),
                    code=job.error_code,
                    reason=job.fail_reason,
                )
                return
            if not job.succeeded:
                self._schedule(
                    request.id, self.config.poll_interval / 2, job_progress=f"Stop job {job.status}", poll_failures=0
                )
                return
        server = await self._ecs(lambda: self.cloud.get_server(request.server_id))
        if server.status == "SHUTOFF" and not server.task_state:
            self._move(request, RequestState.SUBMITTING, "the server is stopped", next_poll_at=0.0, poll_failures=0)
        elif server.task_state or request.stop_job_id is not None:
            self._schedule(request.id, self.config.poll_interval / 2, job_progress=f"Server {server.status}")
        else:
            # The stop's answer was lost and nothing is happening: asking again is harmless for a stop.
            self._schedule(request.id, 0.0, stop_sent_at=None)

    # submitting → running | reconciling | failed
    async def _submit(self, request: ChangeRequest) -> None:
        if request.submit_sent_at is not None:
            self._move(
                request,
                RequestState.RECONCILING,
                "a change-OS request may already have reached the cloud; reading the server instead of posting again",
                next_poll_at=0.0,
            )
            return
        option = self._option(request)
        if option is None:
            return
        self.store.update(request.id, submit_sent_at=datetime.now(UTC))
        try:
            job_id = await self._ecs(
                lambda: self.cloud.change_os(request.server_id, option, cloud_init=request.cloud_init)
            )
        except OutcomeUnknownError:
            self._move(request, RequestState.RECONCILING, "no answer to the change-OS request", next_poll_at=0.0)
            return
        except CloudError as exc:
            if _not_now(exc):
                self._resubmit_later(request, exc)
                return
            if not isinstance(exc, CloudAPIError):
                raise
            self._fail(request, f"The cloud refused the change: {exc.hint}", code=exc.code, reason=exc.message)
            return
        now = datetime.now(UTC)
        self.workflow.forget_password(request.id)
        self._move(
            request,
            RequestState.RUNNING,
            f"job {job_id}",
            job_id=job_id,
            submitted_at=now,
            deadline_at=now + timedelta(seconds=self.config.deadline),
            next_poll_at=self._clock() + self.config.first_poll,
            poll_failures=0,
            job_progress="Submitted; waiting for the cloud to start",
        )

    def _resubmit_later(self, request: ChangeRequest, exc: CloudError) -> None:
        """The cloud answered 'not now' (busy, throttled, 5xx, unreachable): nothing happened, so asking is safe."""
        attempts = request.poll_failures + 1
        if attempts >= MAX_SUBMIT_ATTEMPTS:
            self._fail(
                request,
                f"The cloud kept refusing the change ({attempts} tries): {exc.hint}",
                code=getattr(exc, "code", None),
            )
            return
        self.store.update(request.id, submit_sent_at=None)
        self._retry_later(request.id, exc)

    def _option(self, request: ChangeRequest) -> ChangeOsOption | None:
        """The change-OS body, or None (the request failed, saying why) when it cannot be built: nothing is sent."""
        if request.login is LoginMethod.KEYPAIR and not self.user_id:
            self._fail(request, f"{MISSING_USER_ID} Nothing was sent; set it, then submit a new request.")
            return None
        password = None
        if request.login is LoginMethod.PASSWORD:
            password = self.workflow.password_for(request.id)
            if password is None:
                self._fail(request, "The admin password is gone (expired or lost). Nothing was sent; submit again.")
                return None
        try:
            if password is None:
                return ChangeOsOption(imageid=request.target_image_id, keyname=request.keyname, userid=self.user_id)
            return ChangeOsOption(imageid=request.target_image_id, adminpass=password, os_type=request.target_os_type)
        except ValidationError as exc:  # its text never carries the password (SecretStr, no input echoed)
            reason = "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())
            self._fail(request, f"The change could not be built: {reason}. Nothing was sent; submit a new request.")
            return None

    # reconciling → running | succeeded | failed
    async def _reconcile(self, request: ChangeRequest) -> None:
        server = await self._ecs(lambda: self.cloud.get_server(request.server_id))
        if server.task_state in REBUILDING or server.status == "REBUILD":
            now = datetime.now(UTC)
            self._move(
                request,
                RequestState.RUNNING,
                "the server is rebuilding: the change was accepted (job id unknown; following the server)",
                submitted_at=request.submit_sent_at or now,
                deadline_at=(request.submit_sent_at or now) + timedelta(seconds=self.config.deadline),
                next_poll_at=self._clock() + self.config.poll_interval,
                job_progress="The cloud is changing the OS (following the server: the job id never came back)",
            )
            return
        if server.image_id == request.target_image_id and not server.task_state:
            self._succeed(request, server, "confirmed by reading the server")
            return
        sent = request.submit_sent_at or datetime.now(UTC)
        waited = (datetime.now(UTC) - sent).total_seconds()
        if waited < self.config.reconcile_grace:
            self._schedule(request.id, self.config.poll_interval / 2, job_progress="Checking whether the cloud took it")
            return
        self._fail(
            request,
            f"The change-OS request got no answer, and {waited:.0f}s later {request.server_name} shows no change: "
            "it was not carried out, and nothing else was sent. Submit a new request.",
        )

    # running → succeeded | failed
    async def _follow(self, request: ChangeRequest) -> None:
        if request.job_id is None or request.job_status == JOB_GONE:
            await self._follow_server(request)
            return
        try:
            job = await self._ecs(lambda: self.cloud.get_job(request.job_id or ""))
        except CloudAPIError as exc:
            if not job_is_gone(exc):
                raise
            await self._job_gone(request, exc)
            return
        if job.succeeded:
            server = await self._ecs(lambda: self.cloud.get_server(request.server_id))
            if server.image_id == request.target_image_id:
                self._succeed(request, server, f"job {job.job_id}")
            else:
                self._fail(
                    request,
                    f"The job reported success, but {request.server_name} still shows image {server.image_id}. "
                    "Check the server in the console before using it.",
                )
            return
        if job.failed:
            self._fail(request, _failure_text(job), code=job.error_code, reason=job.fail_reason)
            return
        self._keep_following(request, _progress(job), job.status)

    async def _job_gone(self, request: ChangeRequest, exc: CloudAPIError) -> None:
        """Job records expire (a day after they end, 14 days when unpaid): stop asking, follow the server instead."""
        note = (
            f"The cloud no longer knows job {request.job_id} ({exc.code or exc.status}: job records expire). "
            f"Following {request.server_name} itself until it shows the outcome."
        )
        log.info("%s: job %s is gone (%s); following the server", request.id, request.job_id, exc.code)
        self.store.record(request.id, actor="bot", action="job_gone", detail=note)
        updated = self.store.update(request.id, job_status=JOB_GONE, job_progress=note, poll_failures=0)
        self._spawn(self.presenter.note(updated, f"🔎 {note}"))
        await self._follow_server(updated)

    async def _follow_server(self, request: ChangeRequest) -> None:
        server = await self._ecs(lambda: self.cloud.get_server(request.server_id))
        status = JOB_GONE if request.job_status == JOB_GONE else "RUNNING"
        if server.task_state in REBUILDING or server.status == "REBUILD":
            self._keep_following(request, request.job_progress or "Changing the OS", status)
        elif server.image_id == request.target_image_id:
            self._succeed(request, server, "confirmed by reading the server")
        elif request.job_id is not None:
            self._fail(
                request,
                f"Job {request.job_id} is gone from the cloud and {request.server_name} is {server.status} with "
                f"image {server.image_id}, not {request.target_image_name}: the change did not happen. See the ECS "
                "console's task list for the reason, then submit a new request.",
            )
        else:
            self._fail(
                request,
                f"The change ended without the new image: {request.server_name} shows image {server.image_id}. "
                "The cloud's job id never reached the bot; see the ECS console's task list for the reason.",
            )

    def _keep_following(self, request: ChangeRequest, progress: str, status: str) -> None:
        interval = self.config.poll_interval
        fields: dict[str, Any] = {"poll_failures": 0, "job_status": status}
        overdue_now = request.deadline_at is not None and datetime.now(UTC) > request.deadline_at
        if overdue_now:
            interval *= self.config.overdue_interval_factor
            if not request.overdue:
                fields["overdue"] = True
                self.store.record(request.id, actor="bot", action="overdue", detail="past the job deadline")
        changed = progress != request.job_progress or (overdue_now and not request.overdue)
        updated = self._schedule(request.id, interval, job_progress=progress, **fields)
        if changed:
            self._spawn(self.presenter.progress(updated))

    def _succeed(self, request: ChangeRequest, server: Server, how: str) -> None:
        self._move(
            request,
            RequestState.SUCCEEDED,
            how,
            result=f"{request.server_name} now runs {request.target_image_name} ({how}); it is {server.status}.",
            job_status="SUCCESS",
            finished_at=datetime.now(UTC),
            next_poll_at=None,
        )


def holder_is_gone(owner: str) -> bool:
    """True only when a lease owner (`host:pid:random`) ran on this host and that pid no longer exists.

    Anything uncertain counts as alive (another host, our own pid, a pid we may not signal), so the worst case is
    waiting out the TTL. A pid reused by an unrelated process also counts as alive. Not safe if two machines or
    containers share one hostname, pid namespace aside, and one database file; give them distinct hostnames.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _not_now(exc: CloudError) -> bool:
    """A definite 'not now' (unreachable before sending, throttled, busy, 5xx): nothing happened, asking again is safe.

    OutcomeUnknownError is caught before this is asked; any other CloudError is the cloud's answer (a refusal).
    """
    if isinstance(exc, CloudUnreachableError | ThrottledError):
        return True
    return isinstance(exc, CloudAPIError) and (exc.status >= 500 or exc.code == "Ecs.0603")


def job_is_gone(exc: CloudAPIError) -> bool:
    """The cloud no longer has the job: Common.0011 (unknown or expired job id, HTTP 400) or a plain 404."""
    return exc.code == "Common.0011" or exc.status == 404


def _progress(job: Job) -> str:
    if job.status == JobStatus.PENDING_PAYMENT:
        return (
            "The order waits for payment (a yearly/monthly server): pay it in the Huawei Cloud console under "
            "Billing, Orders; the change starts once it is paid"
        )
    if job.status == JobStatus.INIT:
        return "The cloud is preparing the job"
    subs = job.sub_jobs
    if subs:
        done = sum(1 for s in subs if s.status == "SUCCESS")
        return f"Job {job.status} · sub-jobs {done}/{len(subs)} done"
    return f"Job {job.status}"


def _failure_text(job: Job) -> str:
    """One readable sentence: the code once, each distinct reason once (sub-jobs often repeat the job's), a hint."""
    reasons: list[str] = []
    for message in job.failure_messages():
        if job.error_code and message.startswith(job.error_code + ": "):
            message = message[len(job.error_code) + 2 :]
        message = message.strip().rstrip(".")
        if message and not any(message in seen or seen in message for seen in reasons):
            reasons.append(message)
    head = f"The cloud failed the job ({job.error_code})" if job.error_code else "The cloud failed the job"
    hint = hint_for(job.error_code) if job.error_code else ""
    return f"{head}: {'; '.join(reasons) or 'it gave no reason'}. {hint}".strip()
