"""The tracker's decisions as one pure function: a request, what the cloud last said, the time → what to do next.

`step()` does no I/O and reads no clock: the shell (bot/services/tracker.py) reads the cloud, feeds each answer back
in as an observation and applies the effects in order. An effect that asks the cloud something (`ReadServer`, `ReadJob`,
`BuildChange`, `PostStop`, `PostChange`) is always the last of a decision; its answer is the next observation.

The one dangerous moment, the change-OS POST, stays bracketed here: a decision to post is always
`Update(submit_sent_at=now)` then `PostChange()`, so a process that dies after the write never posts again and
reconciles by reading the server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from bot.domain.backup import image_description, image_name, image_tags
from bot.domain.request import ChangeRequest, LoginMethod, RequestState

DRIVEN = (
    RequestState.APPROVED,
    RequestState.STOPPING,
    RequestState.BACKING_UP,
    RequestState.SUBMITTING,
    RequestState.RECONCILING,
    RequestState.RUNNING,
)
JOB_GONE = "GONE"  # job_status once the job record expired: the server is followed instead
REBUILDING = ("rebuilding", "rebuild_block_device_mapping", "rebuild_spawning")
MAX_SUBMIT_ATTEMPTS = 5
MISSING_USER_ID = (
    "HUAWEICLOUD_USER_ID is not set: Huawei needs the IAM user ID (`userid`) with a key pair login when the bot signs "
    "with AK/SK."
)
PAYMENT_PROGRESS = (
    "The order waits for payment (a yearly/monthly server): pay it in the Huawei Cloud console under "
    "Billing, Orders; the change starts once it is paid"
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
    backup_deadline: float = 1800.0  # IMS took ≈4 min in the doc's example; Terraform waits 20 min
    prune_interval: float = 3600.0  # how often retention deletes the bot's old backups (the first after one interval)
    """Steps at once; kept below the cloud client's connection pool (100) so requests never queue inside httpcore,
    whose queue handling grows with its length squared (measured by bench/tracker.py: 200 made 1,000 jobs lag 50 s)."""

    def __post_init__(self) -> None:
        # The first look after a write comes soon, never later than the regular poll (a 0.5 s poll, a 0.5 s first).
        object.__setattr__(self, "first_poll", min(self.first_poll, self.poll_interval))


class Presenter(Protocol):
    """What the tracker needs from whoever tells people (Slack's `bot.slack.presenter.Presenter` is one)."""

    async def sync(self, request_id: str, moved: ChangeRequest | None = None) -> ChangeRequest | None: ...

    async def note(self, request: ChangeRequest, text: str) -> None: ...

    async def progress(self, request: ChangeRequest) -> None: ...


# ------------------------------------------------------------------------------------ what the cloud showed (data)


@dataclass(frozen=True, slots=True)
class ServerView:
    status: str
    task_state: str | None = None
    image_id: str | None = None

    @property
    def rebuilding(self) -> bool:
        return self.task_state in REBUILDING or self.status == "REBUILD"


@dataclass(frozen=True, slots=True)
class JobView:
    job_id: str
    status: str
    error_code: str | None = None
    fail_reason: str | None = None
    failure_messages: tuple[str, ...] = ()
    sub_job_statuses: tuple[str, ...] = ()
    hint: str = ""  # the cloud's hint for error_code, a sentence a person can act on

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCESS"

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


@dataclass(frozen=True, slots=True)
class BackupJobView:
    """An IMS image job as the core needs it; `image_id`/`percent` may be None while it runs ([U])."""

    job_id: str
    status: str
    image_id: str | None = None
    percent: float | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    hint: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCESS"

    @property
    def failed(self) -> bool:
        return self.status in ("FAIL", "")


@dataclass(frozen=True, slots=True)
class BackupView:
    id: str
    name: str
    status: str


class FaultKind(StrEnum):
    UNREACHABLE = "unreachable"  # nothing reached the cloud
    THROTTLED = "throttled"  # 429 / flow limit
    UNAVAILABLE = "unavailable"  # 5xx, or Ecs.0603 (another operation is running)
    REFUSED = "refused"  # any other answer of the cloud: a 4xx
    OTHER = "other"  # a cloud error that is none of these (e.g. no answer to a read)


# ------------------------------------------------------------------------------------------------ cloud calls


@dataclass(frozen=True, slots=True)
class ReadServer:
    after_job: str | None = None  # the job that reported success, whose result the server must show


@dataclass(frozen=True, slots=True)
class ReadJob:
    job_id: str


@dataclass(frozen=True, slots=True)
class BuildChange:
    """Build the change-OS body (the shell holds the password); answered by ChangeReady, ChangeInvalid, PasswordGone."""


@dataclass(frozen=True, slots=True)
class PostStop:
    stop_type: str


@dataclass(frozen=True, slots=True)
class PostChange:
    pass


@dataclass(frozen=True, slots=True)
class PostBackup:
    """Create the backup image (IMS); answered by Posted(job id), OutcomeUnknown or a Fault."""

    name: str
    description: str
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ReadBackupJob:
    job_id: str


@dataclass(frozen=True, slots=True)
class FindBackup:
    """This project's private images named `name` (any status); answered by BackupsFound."""

    name: str


@dataclass(frozen=True, slots=True)
class PostStart:
    """Start the server again (after a failed backup, when the bot had stopped it)."""


CloudCall = (
    ReadServer | ReadJob | BuildChange | PostStop | PostChange | PostBackup | ReadBackupJob | FindBackup | PostStart
)
CLOUD_CALLS = (ReadServer, ReadJob, BuildChange, PostStop, PostChange, PostBackup, ReadBackupJob, FindBackup, PostStart)


# ------------------------------------------------------------------------------------------------ observations


@dataclass(frozen=True, slots=True)
class Due:
    """The request's time came. `password_known`: its admin password is still stored (always True for key pairs)."""

    password_known: bool = True


@dataclass(frozen=True, slots=True)
class ServerSeen:
    server: ServerView
    asked: ReadServer = ReadServer()


@dataclass(frozen=True, slots=True)
class JobSeen:
    job: JobView


@dataclass(frozen=True, slots=True)
class BackupJobSeen:
    job: BackupJobView


@dataclass(frozen=True, slots=True)
class BackupsFound:
    images: tuple[BackupView, ...]


@dataclass(frozen=True, slots=True)
class Posted:
    """The cloud accepted a stop or a change and answered with its job id."""

    job_id: str


@dataclass(frozen=True, slots=True)
class OutcomeUnknown:
    """A POST may have reached the cloud, but no answer came."""


@dataclass(frozen=True, slots=True)
class ChangeReady:
    pass


@dataclass(frozen=True, slots=True)
class ChangeInvalid:
    reason: str


@dataclass(frozen=True, slots=True)
class PasswordGone:
    pass


@dataclass(frozen=True, slots=True)
class Fault:
    """A cloud call failed. `asked` is the call; `name` names the error for the log."""

    kind: FaultKind
    asked: CloudCall
    name: str = "CloudError"
    hint: str = ""
    status: int | None = None
    code: str | None = None
    message: str = ""
    retry_after: float | None = None

    @property
    def not_now(self) -> bool:
        """A definite 'not now': nothing happened, asking again is safe."""
        return self.kind in (FaultKind.UNREACHABLE, FaultKind.THROTTLED, FaultKind.UNAVAILABLE)

    @property
    def is_answer(self) -> bool:
        """The cloud answered (an HTTP error), as opposed to silence."""
        return self.status is not None

    @property
    def job_gone(self) -> bool:
        """The cloud no longer has the job: Common.0011 (unknown or expired job id, HTTP 400) or a plain 404."""
        return self.is_answer and (self.code == "Common.0011" or self.status == 404)


Observation = (
    Due
    | ServerSeen
    | JobSeen
    | BackupJobSeen
    | BackupsFound
    | Posted
    | OutcomeUnknown
    | ChangeReady
    | ChangeInvalid
    | PasswordGone
    | Fault
)


def fault_kind(
    status: int | None, code: str | None, *, throttled: bool = False, unreachable: bool = False
) -> FaultKind:
    """The kind of trouble: `status` None means the cloud did not answer."""
    if unreachable:
        return FaultKind.UNREACHABLE
    if throttled:
        return FaultKind.THROTTLED
    if status is None:
        return FaultKind.OTHER
    if status >= 500 or code == "Ecs.0603":
        return FaultKind.UNAVAILABLE
    return FaultKind.REFUSED


# ------------------------------------------------------------------------------------------------ effects


@dataclass(frozen=True, slots=True)
class Update:
    """Write these request fields (no state change, no audit line)."""

    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Schedule:
    """Look again in `delay` seconds, writing these fields with `next_poll_at`."""

    delay: float
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Move:
    """A guarded transition with its audit line; `poll_in` sets `next_poll_at` that many seconds from now."""

    to: RequestState
    detail: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    poll_in: float | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    result: str
    at: datetime
    code: str | None = None
    reason: str | None = None

    def move(self) -> Move:
        fields = {
            "result": self.result,
            "error_code": self.code,
            "fail_reason": self.reason,
            "finished_at": self.at,
            "next_poll_at": None,
        }
        return Move(RequestState.FAILED, self.result, fields)


@dataclass(frozen=True, slots=True)
class Succeed:
    how: str
    result: str
    at: datetime

    def move(self) -> Move:
        fields = {"result": self.result, "job_status": "SUCCESS", "finished_at": self.at, "next_poll_at": None}
        return Move(RequestState.SUCCEEDED, self.how, fields)


@dataclass(frozen=True, slots=True)
class Audit:
    action: str
    detail: str


@dataclass(frozen=True, slots=True)
class Tell:
    """Edit the status message in place with the request as it now is."""


@dataclass(frozen=True, slots=True)
class Note:
    text: str


@dataclass(frozen=True, slots=True)
class Log:
    level: int
    message: str


@dataclass(frozen=True, slots=True)
class ForgetPassword:
    pass


Effect = Update | Schedule | Move | Fail | Succeed | Audit | Tell | Note | Log | ForgetPassword | CloudCall


@dataclass(frozen=True, slots=True)
class Decision:
    effects: tuple[Effect, ...]

    @property
    def call(self) -> CloudCall | None:
        """The cloud call whose answer the next step needs, or None: the step is over."""
        last = self.effects[-1] if self.effects else None
        return last if isinstance(last, CLOUD_CALLS) else None


class UnexpectedObservation(ValueError):
    """The shell fed an answer to a question the core did not ask: a bug, retried like any other."""


# ------------------------------------------------------------------------------------------------ the step


def step(
    request: ChangeRequest,
    config: TrackerConfig,
    observation: Observation,
    now: datetime,
    *,
    user_id: str | None = None,
    jitter: float = 1.0,
) -> Decision:
    """What to do with `observation` for `request` at wall time `now`.

    `jitter` in [0, 1] spreads backoffs (the shell passes a random number; 1.0 is the longest wait).
    """
    ctx = _Ctx(request, config, now, user_id, jitter)
    match request.state:
        case RequestState.APPROVED:
            effects = _approved(ctx, observation)
        case RequestState.STOPPING:
            effects = _stopping(ctx, observation)
        case RequestState.BACKING_UP:
            effects = _backing_up(ctx, observation)
        case RequestState.SUBMITTING:
            effects = _submitting(ctx, observation)
        case RequestState.RECONCILING:
            effects = _reconciling(ctx, observation)
        case RequestState.RUNNING:
            effects = _running(ctx, observation)
        case _:
            effects = []
    return Decision(tuple(effects))


def backoff(
    request: ChangeRequest, config: TrackerConfig, fault: Fault | None, *, jitter: float = 1.0
) -> tuple[Effect, ...]:
    """Try again later, exponentially and jittered; `fault` None is a bug of ours, retried the same way."""
    failures = request.poll_failures + 1
    delay = min(config.poll_interval * (2 ** min(failures, 10)), config.max_backoff)
    delay = delay / 2 + (delay - delay / 2) * jitter
    if fault is not None and fault.kind is FaultKind.THROTTLED and fault.retry_after:
        delay = max(delay, fault.retry_after)
    cause = fault.name if fault is not None else "bug"
    return (
        Log(logging.WARNING, f"{request.id}: cloud trouble ({cause}); next try in {delay:.1f}s"),
        Schedule(delay, {"poll_failures": failures}),
    )


@dataclass(frozen=True, slots=True)
class _Ctx:
    request: ChangeRequest
    config: TrackerConfig
    now: datetime
    user_id: str | None
    jitter: float

    def fail(self, result: str, *, code: str | None = None, reason: str | None = None) -> list[Effect]:
        return [Fail(result, self.now, code, reason)]

    def backoff(self, fault: Fault) -> list[Effect]:
        return list(backoff(self.request, self.config, fault, jitter=self.jitter))

    def succeed(self, server: ServerView, how: str) -> list[Effect]:
        r = self.request
        result = f"{r.server_name} now runs {r.target_image_name} ({how}); it is {server.status}."
        return [Succeed(how, result, self.now)]


def _unexpected(ctx: _Ctx, observation: Observation) -> UnexpectedObservation:
    return UnexpectedObservation(f"{ctx.request.id}: {observation!r} is no answer in state {ctx.request.state}")


# approved → stopping | submitting
def _approved(ctx: _Ctx, obs: Observation) -> list[Effect]:
    r, cfg = ctx.request, ctx.config
    match obs:
        case Due(password_known=known):
            if r.login is LoginMethod.PASSWORD and not known:
                return ctx.fail("The admin password is gone (expired or lost). Nothing was sent; submit a new request.")
            return [ReadServer()]
        case ServerSeen(server=server):
            if server.task_state:
                return [Schedule(cfg.poll_interval, {"job_progress": f"Waiting: the server is {server.task_state}"})]
            if server.status == "SHUTOFF" or (server.status == "ERROR" and not r.stop_first):
                return [_after_stop(r, {"next_poll_at": 0.0})]
            if server.status == "ACTIVE" and r.stop_first:
                detail = f"stopping ({r.stop_type.value})"
                return [Move(RequestState.STOPPING, detail, {"next_poll_at": 0.0})]
            if server.status == "ACTIVE":
                return ctx.fail(
                    f"{r.server_name} is running again, and the approved plan did not include stopping it. "
                    "Nothing was sent; submit a new request (it will offer to stop the server)."
                )
            return ctx.fail(
                f"{r.server_name} is {server.status}, neither running nor stopped. Nothing was sent; check "
                "the server in the console, then submit a new request."
            )
        case Fault():
            return ctx.backoff(obs)
    raise _unexpected(ctx, obs)


# stopping → submitting
def _stopping(ctx: _Ctx, obs: Observation) -> list[Effect]:
    r, cfg = ctx.request, ctx.config
    match obs:
        case Due():
            if r.stop_job_id is None and r.stop_sent_at is None:
                return [Update({"stop_sent_at": ctx.now}), PostStop(r.stop_type.value)]
            if r.stop_job_id is not None:
                return [ReadJob(r.stop_job_id)]
            return [ReadServer()]
        case Posted(job_id=job_id):
            return [Schedule(cfg.first_poll, {"stop_job_id": job_id, "job_progress": "Stop job started"})]
        case OutcomeUnknown():
            return [Schedule(cfg.first_poll, {"job_progress": "Stop sent; checking the server"})]
        case Fault(asked=PostStop()):
            if obs.not_now:
                return [Update({"stop_sent_at": None}), *ctx.backoff(obs)]
            if not obs.is_answer:
                return ctx.backoff(obs)
            return ctx.fail(f"The cloud refused to stop the server: {obs.hint}", code=obs.code, reason=obs.message)
        case Fault(asked=ReadJob()) if obs.job_gone:
            # The stop job's record expired: the server's own state says whether it stopped.
            return [ReadServer()]
        case JobSeen(job=job):
            if job.failed:
                text = "The cloud could not stop the server: " + failure_text(job)
                return ctx.fail(text, code=job.error_code, reason=job.fail_reason)
            if not job.succeeded:
                fields = {"job_progress": f"Stop job {job.status}", "poll_failures": 0}
                return [Schedule(cfg.poll_interval / 2, fields)]
            return [ReadServer()]
        case ServerSeen(server=server):
            if server.status == "SHUTOFF" and not server.task_state:
                return [_after_stop(r, {"next_poll_at": 0.0, "poll_failures": 0})]
            if server.task_state or r.stop_job_id is not None:
                return [Schedule(cfg.poll_interval / 2, {"job_progress": f"Server {server.status}"})]
            # The stop's answer was lost and nothing is happening: asking again is harmless for a stop.
            return [Schedule(0.0, {"stop_sent_at": None})]
        case Fault():
            return ctx.backoff(obs)
    raise _unexpected(ctx, obs)


def _after_stop(r: ChangeRequest, fields: Mapping[str, Any]) -> Move:
    """The server is stopped: the backup next when one is wanted and not yet taken, else the change."""
    if r.backup_wanted and r.backup_image_id is None:
        return Move(RequestState.BACKING_UP, "the server is stopped; backing up its system disk first", fields)
    return Move(RequestState.SUBMITTING, "the server is stopped", fields)


# backing_up → submitting | failed
def _backing_up(ctx: _Ctx, obs: Observation) -> list[Effect]:
    r, cfg = ctx.request, ctx.config
    name = r.backup_image_name or image_name(r.server_name or r.server_id, r.id, ctx.now)
    match obs:
        case Due():
            if r.backup_failure is not None:
                return [PostStart()]  # a restart after the failure was decided: starting twice is harmless
            if r.backup_job_id is not None:
                return [ReadBackupJob(r.backup_job_id)]
            if r.backup_sent_at is not None:
                return [FindBackup(name)]  # the create may have reached IMS: find its image, never make a second
            # Written before the POST: a process that dies after this line finds the image by this name.
            post = PostBackup(
                name, image_description(r.id, r.server_name or r.server_id), image_tags(r.id, r.server_id, ctx.now)
            )
            return [Update({"backup_sent_at": ctx.now, "backup_image_name": name}), post]
        case Posted(job_id=job_id) if r.backup_failure is not None:
            return ctx.fail(f"{r.backup_failure} The bot started {r.server_name} again (job {job_id}).")
        case OutcomeUnknown() if r.backup_failure is not None:
            return ctx.fail(f"{r.backup_failure} The bot asked to start {r.server_name} again; check that it runs.")
        case Fault(asked=PostStart()):
            return ctx.fail(
                f"{r.backup_failure} The bot could not start {r.server_name} again ({obs.code or obs.name}): start "
                "it in the console."
            )
        case Posted(job_id=job_id):
            fields = {"backup_job_id": job_id, "poll_failures": 0, "job_progress": "Backup started"}
            return [Schedule(cfg.first_poll, fields), Tell()]
        case OutcomeUnknown():
            return [Schedule(cfg.first_poll, {"job_progress": "Backup requested; looking for its image"})]
        case Fault(asked=PostBackup()):
            if obs.code == "IMG.0009":  # the name is taken: by this request's own earlier, unanswered create
                return [FindBackup(name)]
            if obs.not_now or obs.code == "IMG.0010":
                attempts = r.poll_failures + 1
                if attempts >= MAX_SUBMIT_ATTEMPTS:
                    return _backup_failed(ctx, f"IMS kept refusing the backup ({attempts} tries): {obs.hint}", obs.code)
                return [Update({"backup_sent_at": None}), *ctx.backoff(obs)]
            if not obs.is_answer:
                return ctx.backoff(obs)  # backup_sent_at stays: the next step looks for the image
            return _backup_failed(ctx, f"IMS refused the backup: {obs.hint}", obs.code, obs.message)
        case Fault(asked=ReadBackupJob()) if obs.job_gone or obs.code == "IMG.0023":
            return [FindBackup(name)]  # the job record expired: the image itself says how it went
        case BackupJobSeen(job=job):
            if job.succeeded and job.image_id:
                return _backup_done(ctx, job.image_id)
            if job.succeeded:
                return [FindBackup(name)]
            if job.failed:
                return _backup_failed(ctx, _backup_failure_text(job), job.error_code, job.fail_reason)
            return _backup_wait(ctx, job.percent)
        case BackupsFound(images=images):
            mine = [i for i in images if i.name == name]
            if any(i.status == "active" for i in mine):
                return _backup_done(ctx, next(i.id for i in mine if i.status == "active"))
            if any(i.status in ("queued", "saving") for i in mine):
                return _backup_wait(ctx, None)
            if mine:
                statuses = ", ".join(sorted({i.status for i in mine}))
                return _backup_failed(ctx, f"The backup image {name} ended {statuses}: IMS could not make it.")
            waited = (ctx.now - (r.backup_sent_at or ctx.now)).total_seconds()
            if waited < cfg.reconcile_grace:
                return [Schedule(cfg.poll_interval / 2, {"job_progress": "Looking for the backup image"})]
            # Nothing with this name after the grace: the create never happened. Send it again, same name, so
            # that IMS itself refuses a duplicate (IMG.0009) should the first one appear after all.
            return [
                Log(logging.INFO, f"{r.id}: no backup image {name}; creating it again"),
                Schedule(0.0, {"backup_sent_at": None, "backup_job_id": None}),
            ]
        case Fault():
            return ctx.backoff(obs)
    raise _unexpected(ctx, obs)


def _backup_done(ctx: _Ctx, image_id: str) -> list[Effect]:
    r = ctx.request
    took = _duration(ctx.now, r.backup_sent_at)
    fields = {
        "backup_image_id": image_id,
        "backup_done_at": ctx.now,
        "poll_failures": 0,
        "next_poll_at": 0.0,
        "job_progress": f"Backup {r.backup_image_name} ready ({took})",
    }
    return [Move(RequestState.SUBMITTING, f"backup {r.backup_image_name} ({image_id}) is ready after {took}", fields)]


def _backup_wait(ctx: _Ctx, percent: float | None) -> list[Effect]:
    r, cfg = ctx.request, ctx.config
    if r.backup_sent_at is not None and (ctx.now - r.backup_sent_at).total_seconds() > cfg.backup_deadline:
        return _backup_failed(
            ctx,
            f"The backup did not finish within {cfg.backup_deadline / 60:.0f} minutes. Check the image "
            f"{r.backup_image_name} in the IMS console",
        )
    share = f" · {percent:.0f}%" if percent is not None else ""
    progress = f"Backing up the system disk{share} · {_duration(ctx.now, r.backup_sent_at)}"
    effects: list[Effect] = [Schedule(cfg.poll_interval, {"job_progress": progress, "poll_failures": 0})]
    if share and progress != r.job_progress:
        effects.append(Tell())  # a new percentage; the bare clock alone is not worth a Slack edit
    return effects


def _backup_failed(ctx: _Ctx, text: str, code: str | None = None, reason: str | None = None) -> list[Effect]:
    """Stop before anything destructive; start the server again when the bot stopped it and the policy says so."""
    r = ctx.request
    failure = f"{text.rstrip('.')}. Nothing was changed: the OS change was not sent."
    stopped_by_bot = r.stop_job_id is not None or r.stop_sent_at is not None
    if stopped_by_bot and r.backup_restart:
        fields = {"backup_failure": failure, "error_code": code, "fail_reason": reason}
        return [Audit("backup_failed", failure), Update(fields), PostStart()]
    return ctx.fail(failure, code=code, reason=reason)


def _backup_failure_text(job: BackupJobView) -> str:
    head = f"IMS failed the backup ({job.error_code})" if job.error_code else "IMS failed the backup"
    reason = (job.fail_reason or "it gave no reason").strip().rstrip(".")
    return f"{head}: {reason}. {job.hint}".strip()


def _duration(now: datetime, since: datetime | None) -> str:
    seconds = max(0, int((now - since).total_seconds())) if since is not None else 0
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# submitting → running | reconciling | failed
def _submitting(ctx: _Ctx, obs: Observation) -> list[Effect]:
    r, cfg = ctx.request, ctx.config
    match obs:
        case Due():
            if r.submit_sent_at is not None:
                detail = (
                    "a change-OS request may already have reached the cloud; reading the server instead of posting "
                    "again"
                )
                return [Move(RequestState.RECONCILING, detail, {"next_poll_at": 0.0})]
            if r.login is LoginMethod.KEYPAIR and not ctx.user_id:
                return ctx.fail(f"{MISSING_USER_ID} Nothing was sent; set it, then submit a new request.")
            return [BuildChange()]
        case PasswordGone():
            return ctx.fail("The admin password is gone (expired or lost). Nothing was sent; submit again.")
        case ChangeInvalid(reason=reason):
            return ctx.fail(f"The change could not be built: {reason}. Nothing was sent; submit a new request.")
        case ChangeReady():
            # Written before the POST: a process that dies after this line never posts again.
            return [Update({"submit_sent_at": ctx.now}), PostChange()]
        case OutcomeUnknown():
            return [Move(RequestState.RECONCILING, "no answer to the change-OS request", {"next_poll_at": 0.0})]
        case Fault(asked=PostChange()):
            if obs.not_now:
                # Nothing happened, so asking again is safe, a few times.
                attempts = r.poll_failures + 1
                if attempts >= MAX_SUBMIT_ATTEMPTS:
                    return ctx.fail(f"The cloud kept refusing the change ({attempts} tries): {obs.hint}", code=obs.code)
                return [Update({"submit_sent_at": None}), *ctx.backoff(obs)]
            if not obs.is_answer:
                return ctx.backoff(obs)  # submit_sent_at stays: the next step reconciles
            return ctx.fail(f"The cloud refused the change: {obs.hint}", code=obs.code, reason=obs.message)
        case Posted(job_id=job_id):
            fields = {
                "job_id": job_id,
                "submitted_at": ctx.now,
                "deadline_at": ctx.now + timedelta(seconds=cfg.deadline),
                "poll_failures": 0,
                "job_progress": "Submitted; waiting for the cloud to start",
            }
            return [ForgetPassword(), Move(RequestState.RUNNING, f"job {job_id}", fields, poll_in=cfg.first_poll)]
        case Fault():
            return ctx.backoff(obs)
    raise _unexpected(ctx, obs)


# reconciling → running | succeeded | failed
def _reconciling(ctx: _Ctx, obs: Observation) -> list[Effect]:
    r, cfg = ctx.request, ctx.config
    match obs:
        case Due():
            return [ReadServer()]
        case ServerSeen(server=server):
            sent = r.submit_sent_at or ctx.now
            if server.rebuilding:
                fields = {
                    "submitted_at": sent,
                    "deadline_at": sent + timedelta(seconds=cfg.deadline),
                    "job_progress": "The cloud is changing the OS (following the server: the job id never came back)",
                }
                detail = "the server is rebuilding: the change was accepted (job id unknown; following the server)"
                return [Move(RequestState.RUNNING, detail, fields, poll_in=cfg.poll_interval)]
            if server.image_id == r.target_image_id and not server.task_state:
                return ctx.succeed(server, "confirmed by reading the server")
            waited = (ctx.now - sent).total_seconds()
            if waited < cfg.reconcile_grace:
                return [Schedule(cfg.poll_interval / 2, {"job_progress": "Checking whether the cloud took it"})]
            return ctx.fail(
                f"The change-OS request got no answer, and {waited:.0f}s later {r.server_name} shows no change: "
                "it was not carried out, and nothing else was sent. Submit a new request."
            )
        case Fault():
            return ctx.backoff(obs)
    raise _unexpected(ctx, obs)


# running → succeeded | failed
def _running(ctx: _Ctx, obs: Observation) -> list[Effect]:
    r = ctx.request
    match obs:
        case Due():
            if r.job_id is None or r.job_status == JOB_GONE:
                return [ReadServer()]
            return [ReadJob(r.job_id)]
        case Fault(asked=ReadJob()) if obs.job_gone:
            # Job records expire (a day after they end, 14 days when unpaid): follow the server instead.
            note = (
                f"The cloud no longer knows job {r.job_id} ({obs.code or obs.status}: job records expire). "
                f"Following {r.server_name} itself until it shows the outcome."
            )
            return [
                Log(logging.INFO, f"{r.id}: job {r.job_id} is gone ({obs.code}); following the server"),
                Audit("job_gone", note),
                Update({"job_status": JOB_GONE, "job_progress": note, "poll_failures": 0}),
                Note(f"🔎 {note}"),
                ReadServer(),
            ]
        case JobSeen(job=job):
            if job.succeeded:
                return [ReadServer(after_job=job.job_id)]
            if job.failed:
                return ctx.fail(failure_text(job), code=job.error_code, reason=job.fail_reason)
            return _keep_following(ctx, progress_text(job), job.status)
        case ServerSeen(server=server, asked=ReadServer(after_job=str() as job_id)):
            if server.image_id == r.target_image_id:
                return ctx.succeed(server, f"job {job_id}")
            return ctx.fail(
                f"The job reported success, but {r.server_name} still shows image {server.image_id}. "
                "Check the server in the console before using it."
            )
        case ServerSeen(server=server):
            status = JOB_GONE if r.job_status == JOB_GONE else "RUNNING"
            if server.rebuilding:
                return _keep_following(ctx, r.job_progress or "Changing the OS", status)
            if server.image_id == r.target_image_id:
                return ctx.succeed(server, "confirmed by reading the server")
            if r.job_id is not None:
                return ctx.fail(
                    f"Job {r.job_id} is gone from the cloud and {r.server_name} is {server.status} with "
                    f"image {server.image_id}, not {r.target_image_name}: the change did not happen. See the ECS "
                    "console's task list for the reason, then submit a new request."
                )
            return ctx.fail(
                f"The change ended without the new image: {r.server_name} shows image {server.image_id}. "
                "The cloud's job id never reached the bot; see the ECS console's task list for the reason."
            )
        case Fault():
            return ctx.backoff(obs)
    raise _unexpected(ctx, obs)


def _keep_following(ctx: _Ctx, progress: str, status: str) -> list[Effect]:
    r, cfg = ctx.request, ctx.config
    interval = cfg.poll_interval
    fields: dict[str, Any] = {"poll_failures": 0, "job_status": status, "job_progress": progress}
    effects: list[Effect] = []
    overdue_now = r.deadline_at is not None and ctx.now > r.deadline_at
    if overdue_now:
        interval *= cfg.overdue_interval_factor
        if not r.overdue:
            fields["overdue"] = True
            effects.append(Audit("overdue", "past the job deadline"))
    effects.append(Schedule(interval, fields))
    if progress != r.job_progress or (overdue_now and not r.overdue):
        effects.append(Tell())
    return effects


def progress_text(job: JobView) -> str:
    if job.status == "PENDING_PAYMENT":
        return PAYMENT_PROGRESS
    if job.status == "INIT":
        return "The cloud is preparing the job"
    subs = job.sub_job_statuses
    if subs:
        done = sum(1 for s in subs if s == "SUCCESS")
        return f"Job {job.status} · sub-jobs {done}/{len(subs)} done"
    return f"Job {job.status}"


def failure_text(job: JobView) -> str:
    """One readable sentence: the code once, each distinct reason once (sub-jobs often repeat the job's), a hint."""
    reasons: list[str] = []
    for message in job.failure_messages:
        if job.error_code and message.startswith(job.error_code + ": "):
            message = message[len(job.error_code) + 2 :]
        message = message.strip().rstrip(".")
        if message and not any(message in seen or seen in message for seen in reasons):
            reasons.append(message)
    head = f"The cloud failed the job ({job.error_code})" if job.error_code else "The cloud failed the job"
    hint = job.hint if job.error_code else ""
    return f"{head}: {'; '.join(reasons) or 'it gave no reason'}. {hint}".strip()
