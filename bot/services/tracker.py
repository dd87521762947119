"""The tracker's shell: reads the cloud, feeds each answer to the pure core (bot/domain/tracking.py) and applies
its effects: store writes with their audit line, Slack through a `Presenter`, the cloud's POSTs.

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
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError

from bot import metrics
from bot.cloud import (
    ChangeOsOption,
    CloudAPIError,
    CloudClient,
    CloudError,
    CloudUnreachableError,
    ImageJob,
    Job,
    OutcomeUnknownError,
    Server,
    ThrottledError,
    hint_for,
)
from bot.cloud import StopType as CloudStopType
from bot.domain.request import ChangeRequest, LoginMethod, RequestState
from bot.domain.tracking import (
    DRIVEN,
    Audit,
    BackupJobSeen,
    BackupJobView,
    BackupsFound,
    BackupView,
    BuildChange,
    ChangeInvalid,
    ChangeReady,
    CloudCall,
    Due,
    Effect,
    Fail,
    Fault,
    FindBackup,
    ForgetPassword,
    JobSeen,
    JobView,
    Log,
    Move,
    Note,
    Observation,
    OutcomeUnknown,
    PasswordGone,
    PostBackup,
    PostChange,
    Posted,
    PostStart,
    PostStop,
    Presenter,
    ReadBackupJob,
    ReadJob,
    ReadServer,
    Schedule,
    ServerSeen,
    ServerView,
    Succeed,
    Tell,
    TrackerConfig,
    Update,
    backoff,
    fault_kind,
    step,
)
from bot.services.backups import Pruner
from bot.services.ratelimit import TokenBucket
from bot.services.retention import Retention
from bot.services.workflow import Workflow
from bot.store import Store, StoreUnavailable
from bot.store.codec import SENT_STAMPS

__all__ = ["LEASE", "Clock", "SystemClock", "Tracker", "TrackerConfig", "holder_is_gone"]

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE = "tracker"
FOLLOWER_POLL_S = 2.0


class Clock(Protocol):
    """The tracker's one clock: wall time for the request's dates, seconds for scheduling and the lease.

    `seconds()` is epoch time, not `time.monotonic()`: `next_poll_at` and the lease's expiry are stored, and must
    still mean the same after a restart, a reboot, or in another process.
    """

    def now(self) -> datetime: ...

    def seconds(self) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def seconds(self) -> float:
        return time.time()


class Tracker:
    def __init__(
        self,
        store: Store,
        cloud: CloudClient,
        workflow: Workflow,
        presenter: Presenter,
        *,
        config: TrackerConfig | None = None,
        user_id: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        pruner: Pruner | None = None,
        retention: Retention | None = None,
    ) -> None:
        self.store = store
        self.cloud = cloud
        self.workflow = workflow
        self.presenter = presenter
        self.config = config = config or TrackerConfig()
        self.user_id = user_id
        self.clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self.pruner = pruner
        self.retention = retention
        self._pruning = False
        self._told_role = False  # a follower says so once, at start
        self.budget = TokenBucket(config.ecs_rate, max(1, int(config.ecs_rate)))
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
        # Fleets (bot/services/fleet.py): resumed with each leadership; told when one of their requests ends.
        self.on_lead: Callable[[], Awaitable[None]] | None = None
        self.on_end: Callable[[ChangeRequest], Awaitable[None]] | None = None

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
            await self._quietly(self.store.release_lease(LEASE, self._owner))

    @property
    def role(self) -> str:
        """"leader" while this process holds the tracker lease (it alone polls and posts), else "follower"."""
        return "leader" if self.has_lease else "follower"

    async def _run(self) -> None:
        resumed = False
        last_reload = last_renew = 0.0
        last_prune = self.clock.seconds()
        # A follower asks for the lease this often, so a dead leader's jobs wait at most the lease time and this.
        follower_wait = min(self.config.lease_ttl / 3, FOLLOWER_POLL_S)
        while not self._stopping:
            now = self.clock.seconds()
            try:
                # Renewed a few times per TTL, not on every wake-up: with 1,000 jobs this loop turns hundreds of
                # times a second, and each renewal is a write transaction.
                if not self.has_lease or now - last_renew >= self.config.lease_ttl / 3:
                    await self._renew(now)
                    last_renew = now
                if not self.has_lease:
                    resumed = False
                    if await self._take_over_dead_lease(now):
                        continue
                    await self._sleep(follower_wait)
                    continue
                if not resumed:
                    await self._resume()
                    resumed = True
                # A finished step only sets _wake so the sleep below is recomputed; reading every live request
                # back from the store after each step would make the tracker O(live jobs) per poll.
                self._wake.clear()
                if self._reload_wanted or now - last_reload >= self.config.lease_ttl / 3:
                    self._reload_wanted = False
                    await self._reload()
                    await self.store.purge_expired()
                    for request in await self.workflow.expire_due():
                        self._spawn(self.presenter.sync(request.id, request))
                    last_reload = now
                housekeeping = self.pruner is not None or self.retention is not None
                if housekeeping and now - last_prune >= self.config.prune_interval and not self._pruning:
                    last_prune = now
                    self._spawn(self._prune())
                self._dispatch_due(now)
            except StoreUnavailable as exc:
                # No renewal can reach the database either: stop acting as leader now, before the lease runs out
                # and another replica takes over. Whatever was in flight resumes from the store later.
                log.warning("tracker paused, the database does not answer: %s", exc)
                self._step_down()
                resumed = False
                await self._sleep(follower_wait)
                continue
            next_at = self._heap[0][0] if self._heap else now + self.config.lease_ttl / 3
            await self._sleep(min(max(0.0, next_at - self.clock.seconds()), self.config.lease_ttl / 3))

    async def _renew(self, now: float) -> None:
        held = await self.store.acquire_lease(LEASE, self._owner, self.config.lease_ttl, now)
        if held and not self.has_lease:
            epoch = await self.store.lease_epoch(LEASE)
            log.info("tracker: this process leads (lease epoch %d): it polls the cloud and posts changes", epoch)
            self.has_lease = True
        elif not held and self.has_lease:
            log.warning("tracker: another process took the lease; this one follows")
            self._step_down()
        elif not held and not self._told_role:
            holder = await self.store.lease_owner(LEASE, now) or "another process"
            log.warning("tracker: follower; %s holds the lease and follows the jobs", holder)
        self._told_role = True
        metrics.TRACKER_LEADER.set(1 if self.has_lease else 0)

    def _step_down(self) -> None:
        self.has_lease = False
        self._heap.clear()  # the next leadership reads every live request again
        self._reload_wanted = True

    async def _prune(self) -> None:
        """Retention, in the background of the lease holder: one run at a time, never in the way of a step."""
        self._pruning = True
        try:
            if self.retention is not None:
                await self.retention.run(self.clock.now())
            for deletion in await self.pruner.prune(self.clock.now()) if self.pruner else []:
                outcome = f"not deleted: {deletion.error}" if deletion.error else "deleted"
                d = deletion
                log.info("retention: backup %s of %s (%s) %s", d.name, d.request_id, d.why, outcome)
        except Exception:
            log.exception("retention run failed; the next one tries again")
        finally:
            self._pruning = False

    async def _take_over_dead_lease(self, now: float) -> bool:
        """A restart after a crash (SIGKILL, OOM) need not wait out the old lease: its holder provably is gone."""
        holder = await self.store.lease_owner(LEASE, now)
        if holder is None or not holder_is_gone(holder):
            return False
        log.warning("tracker lease held by %s, a process of this host that no longer runs: taking it over", holder)
        await self.store.release_lease(LEASE, holder)
        return True

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _resume(self) -> None:
        """After a start: tell people whatever they have not been told, whatever state the request is in."""
        for request in await self.store.needs_sync():
            self._spawn(self.presenter.sync(request.id))
        if self.on_lead is not None:
            self._spawn(self.on_lead())

    async def _reload(self) -> None:
        driven = await self.store.in_states(*DRIVEN)
        scheduled = {rid for _, rid in self._heap} | self._inflight  # after the read: steps ran meanwhile
        for request in driven:
            if request.id not in scheduled:
                heapq.heappush(self._heap, (request.next_poll_at or 0.0, request.id))
                scheduled.add(request.id)
        metrics.LIVE_JOBS.set(len(scheduled))

    def _dispatch_due(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            due, request_id = heapq.heappop(self._heap)
            if request_id in self._inflight:
                continue
            self._inflight.add(request_id)
            self._spawn(self._step_guarded(request_id, due))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(self._quietly(coro))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _quietly(work: Awaitable[T]) -> T | None:
        """Background work that meets a database outage logs it and ends; the stored state says what is left."""
        try:
            return await work
        except StoreUnavailable as exc:
            log.warning("tracker: %s", exc)
            return None

    # ------------------------------------------------------------------ one step of one request

    async def _step_guarded(self, request_id: str, due: float) -> None:
        current: ChangeRequest | None = None
        try:
            async with self._sem:
                if due:  # 0: never scheduled yet (just approved), nothing to be late for
                    metrics.TRACKER_LAG.observe(max(0.0, self.clock.seconds() - due))
                request = await self.store.get(request_id)
                if request is None or request.state not in DRIVEN:
                    return
                try:
                    current = await self._step(request)
                except StoreUnavailable:
                    raise
                except Exception:
                    log.exception("tracker step failed for %s; will retry", request_id)
                    current = await self.store.get(request_id)
                    if current is not None:
                        for effect in backoff(current, self.config, None, jitter=self._rng.random()):
                            current = await self._apply(current, effect)
        except StoreUnavailable as exc:  # the step resumes from the stored state at the next reload
            log.warning("tracker step of %s stopped, the database does not answer: %s", request_id, exc)
            return
        finally:
            self._inflight.discard(request_id)
        # `current` is the request as this step last wrote it: no read back to know when it is due again.
        if current is not None and current.state in DRIVEN and not self._stopping and self.has_lease:
            heapq.heappush(self._heap, (current.next_poll_at or self.clock.seconds(), request_id))
            self._wake.set()

    async def _step(self, request: ChangeRequest) -> ChangeRequest | None:
        """Ask the core, apply what it decides, answer its cloud question, until it asks nothing more. Returns the
        request as the step left it; None when another process moved it first (nothing to schedule here)."""
        observation: Observation = Due(password_known=await self._password_known(request))
        option: ChangeOsOption | None = None
        while True:
            decision = step(
                request, self.config, observation, self.clock.now(), user_id=self.user_id, jitter=self._rng.random()
            )
            call = decision.call
            try:
                for effect in decision.effects:
                    if effect is not call:
                        request = await self._apply(request, effect)
            except _Superseded:
                log.info("%s moved on in another process (a former leader); this step ends", request.id)
                return None
            if call is None:
                return request
            if isinstance(call, BuildChange):
                observation, option = await self._build_change(request)
                continue
            observation = await self._ask(request, call, option)

    async def _password_known(self, request: ChangeRequest) -> bool:
        if request.state is not RequestState.APPROVED or request.login is not LoginMethod.PASSWORD:
            return True
        return await self.workflow.password_for(request.id) is not None

    async def _build_change(self, request: ChangeRequest) -> tuple[Observation, ChangeOsOption | None]:
        """The change-OS body; the password stays here, the core only learns whether the body could be built."""
        password = None
        if request.login is LoginMethod.PASSWORD:
            password = await self.workflow.password_for(request.id)
            if password is None:
                return PasswordGone(), None
        try:
            if password is None:
                option = ChangeOsOption(imageid=request.target_image_id, keyname=request.keyname, userid=self.user_id)
            else:
                option = ChangeOsOption(
                    imageid=request.target_image_id, adminpass=password, os_type=request.target_os_type
                )
        except ValidationError as exc:  # its text never carries the password (SecretStr, no input echoed)
            reason = "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())
            return ChangeInvalid(reason), None
        return ChangeReady(), option

    async def _ask(self, request: ChangeRequest, call: CloudCall, option: ChangeOsOption | None) -> Observation:
        """One cloud call, its answer or its error as an observation for the core."""
        try:
            match call:
                case ReadServer():
                    server = await self._ecs(lambda: self.cloud.get_server(request.server_id))
                    return ServerSeen(server_view(server), call)
                case ReadJob(job_id=job_id):
                    return JobSeen(job_view(await self._ecs(lambda: self.cloud.get_job(job_id))))
                case PostStop(stop_type=stop_type):
                    stop = CloudStopType(stop_type)
                    return Posted(await self._ecs(lambda: self.cloud.stop_server(request.server_id, stop)))
                case PostChange():
                    if option is None:
                        raise RuntimeError("PostChange before the change was built")
                    server_id, body, cloud_init = request.server_id, option, request.cloud_init
                    job_id = await self._ecs(lambda: self.cloud.change_os(server_id, body, cloud_init=cloud_init))
                    return Posted(job_id)
                case PostBackup(name=name, description=text, tags=tags):
                    server_id = request.server_id
                    create = self.cloud.create_image
                    return Posted(await self._ecs(lambda: create(server_id, name, description=text, tags=tags)))
                case ReadBackupJob(job_id=job_id):
                    return BackupJobSeen(backup_job_view(await self._ecs(lambda: self.cloud.get_image_job(job_id))))
                case FindBackup(name=name):
                    images = await self._ecs(lambda: self.cloud.find_images(name=name))
                    return BackupsFound(tuple(BackupView(i.id, i.name, i.status) for i in images))
                case PostStart():
                    return Posted(await self._ecs(lambda: self.cloud.start_server(request.server_id)))
        except OutcomeUnknownError as exc:
            if isinstance(call, PostStop | PostChange | PostBackup | PostStart):
                return OutcomeUnknown()
            return fault_of(exc, call)
        except CloudError as exc:
            return fault_of(exc, call)
        raise RuntimeError(f"no cloud call for {call!r}")

    async def _ecs(self, call: Callable[[], Awaitable[T]]) -> T:
        """Every cloud call of the tracker shares one budget, so a thousand jobs cannot flood the API."""
        await self.budget.acquire()
        self.ecs_calls += 1
        return await call()

    async def _apply(self, request: ChangeRequest, effect: Effect) -> ChangeRequest:
        """Carry out one effect; returns the request as the store now has it."""
        match effect:
            case Update(fields=fields) if (stamp := _stamp_of(fields)) is not None:
                also = {k: v for k, v in fields.items() if k != stamp}
                marked = await self.store.mark_sent(request.id, stamp, state=request.state, at=fields[stamp], **also)
                if marked is None:
                    raise _Superseded(request.id)
                return marked
            case Update(fields=fields):
                return await self.store.update(request.id, **fields)
            case Schedule(delay=delay, fields=fields):
                return await self.store.update(request.id, next_poll_at=self.clock.seconds() + delay, **fields)
            case Fail() | Succeed():
                return await self._move(request, effect.move())
            case Move():
                return await self._move(request, effect)
            case Audit(action=action, detail=detail):
                await self.store.record(request.id, actor="bot", action=action, detail=detail)
            case Tell():
                self._spawn(self.presenter.progress(request))
            case Note(text=text):
                self._spawn(self.presenter.note(request, text))
            case Log(level=level, message=message):
                log.log(level, "%s", message)
            case ForgetPassword():
                await self.workflow.forget_password(request.id)
            case _:
                raise RuntimeError(f"cannot apply {effect!r}")
        return request

    async def _move(self, request: ChangeRequest, move: Move) -> ChangeRequest:
        fields = dict(move.fields)
        if move.poll_in is not None:
            fields["next_poll_at"] = self.clock.seconds() + move.poll_in
        moved = await self.store.transition(
            request.id, to=move.to, expected=request.state, actor="bot", detail=move.detail, **fields
        )
        if moved is None:
            return request
        if moved.is_terminal:
            await self.workflow.forget_password(moved.id)
            began = moved.stop_sent_at or moved.submit_sent_at  # the first POST: the cloud's work began
            if began is not None:
                metrics.job_ended(moved.state, ((moved.finished_at or self.clock.now()) - began).total_seconds())
        self._spawn(self.presenter.sync(moved.id, moved))
        if moved.is_terminal and moved.fleet_key and self.on_end is not None:
            self._spawn(self.on_end(moved))
        return moved


class _Superseded(Exception):
    """The request changed under this step (another process stamped it first): whatever it was about to post, it
    must not."""


def _stamp_of(fields: Mapping[str, Any]) -> str | None:
    """The stamp (stop_sent_at, backup_sent_at, submit_sent_at) this write sets before a POST, which only one process
    may make; None for any other write (clearing a stamp included)."""
    found = [k for k in fields if k in SENT_STAMPS and fields[k] is not None]
    return found[0] if len(found) == 1 else None


def server_view(server: Server) -> ServerView:
    return ServerView(status=server.status, task_state=server.task_state, image_id=server.image_id)


def job_view(job: Job) -> JobView:
    return JobView(
        job_id=job.job_id,
        status=job.status,
        error_code=job.error_code,
        fail_reason=job.fail_reason,
        failure_messages=tuple(job.failure_messages()),
        sub_job_statuses=tuple(s.status for s in job.sub_jobs),
        hint=hint_for(job.error_code) if job.error_code else "",
    )


def backup_job_view(job: ImageJob) -> BackupJobView:
    return BackupJobView(
        job_id=job.job_id,
        status=job.status,
        image_id=job.image_id,
        percent=job.entities.process_percent,
        error_code=job.error_code,
        fail_reason=job.fail_reason,
        hint=hint_for(job.error_code) if job.error_code else "",
    )


def fault_of(exc: CloudError, call: CloudCall) -> Fault:
    """A cloud error as data: what kind of trouble, and the cloud's own words when it answered."""
    name = type(exc).__name__
    if isinstance(exc, CloudAPIError):
        throttled = isinstance(exc, ThrottledError)
        kind = fault_kind(exc.status, exc.code, throttled=throttled)
        retry_after = exc.retry_after if isinstance(exc, ThrottledError) else None
        return Fault(kind, call, name, exc.hint, exc.status, exc.code, exc.message, retry_after)
    kind = fault_kind(None, None, unreachable=isinstance(exc, CloudUnreachableError))
    return Fault(kind, call, name, exc.hint)


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
