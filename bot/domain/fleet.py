"""A fleet rollout: one plan, one approval, waves canary first, a health gate, halt on failure. Pure.

`Rollout` is a plain pydantic model: the store keeps it as one JSON document, which is what makes a rollout
restart safe. `step(rollout, event, now)` is the whole engine: it returns the next rollout and the effects the shell
must carry out (start a server's change, read a server's health, re-render the fleet message, reply in its thread).

Each server still goes through the single-server path: `StartServer` asks the shell to create the server's own
change request, keyed `"{rollout.id}:{server_id}"` so that a repeated start finds the request it already made.
After a restart the shell feeds `Recover()`: servers that were being started are started again (idempotently) only
while the rollout may start servers; otherwise the shell settles them (`SettleStart`), never starting a new one.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.domain.policy import Policy, Rule
from bot.domain.request import ID_ALPHABET, UtcDatetime

FLEET_ID_PREFIX = "FL-"
HEALTH_TIMEOUT = timedelta(minutes=10)


def new_fleet_id() -> str:
    return FLEET_ID_PREFIX + "".join(secrets.choice(ID_ALPHABET) for _ in range(6))


class ServerPhase(StrEnum):
    PENDING = "pending"  # its wave has not come, or no slot is free
    STARTING = "starting"  # StartServer was emitted; the change request's id is not known yet
    RUNNING = "running"  # its change request is live
    VERIFYING = "verifying"  # the change succeeded; the health gate waits for ACTIVE on the new image
    HEALTHY = "healthy"
    FAILED = "failed"
    SKIPPED = "skipped"  # never started: the rollout was aborted (or stopped) first
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


IN_FLIGHT = frozenset({ServerPhase.STARTING, ServerPhase.RUNNING, ServerPhase.VERIFYING, ServerPhase.ROLLING_BACK})
SETTLED = frozenset({ServerPhase.HEALTHY, ServerPhase.FAILED, ServerPhase.SKIPPED, ServerPhase.ROLLED_BACK})
SLOT_HOLDERS = frozenset({ServerPhase.STARTING, ServerPhase.RUNNING})


class FleetPhase(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"  # a wave is in progress
    WAITING = "waiting"  # a wave passed its gate; --pause waits for Continue
    PAUSED = "paused"  # an approver paused: no new starts, running changes finish
    HALTED = "halted"  # failures reached --max-failures: no new starts, running changes finish
    ABORTED = "aborted"  # no new starts, ever; running changes finish
    DONE = "done"  # every wave ran (failures below the limit are allowed)
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


NOT_STARTED = frozenset({FleetPhase.REJECTED, FleetPhase.CANCELLED, FleetPhase.EXPIRED})
FINAL = frozenset({FleetPhase.ABORTED, FleetPhase.DONE}) | NOT_STARTED


class FleetServer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    name: str = ""
    wave: int = Field(ge=0)
    phase: ServerPhase = ServerPhase.PENDING
    request_id: str | None = None
    reason: str = ""  # why it failed, or was skipped
    started_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None  # the change request ended (ok or not)
    backup_image_id: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.id


class LeftOut(BaseModel):
    """A server the selector matched but the plan left out, and why (shown in the summary and the thread)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = ""
    reason: str


class FleetSpec(BaseModel):
    """What each server's own change request is made of, besides its server: the command's choices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keyname: str | None = None
    stop_type: str = "SOFT"
    reason: str = Field(min_length=1)
    ticket: str | None = None
    notify: tuple[str, ...] = ()  # the notify channels: one post at the start and one at the end of the fleet


class Rollout(BaseModel):
    """Everything a fleet rollout is; saved whole after every step."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=new_fleet_id)
    version: int = 0  # +1 per step: the store saves only over the version it read
    requester: str = Field(min_length=1)
    channel: str = Field(min_length=1)
    image_id: str = Field(min_length=1)
    image_name: str = ""
    selector: str = ""  # how the fleet was chosen, in words
    servers: list[FleetServer]
    left_out: list[LeftOut] = Field(default_factory=list)
    wave: int = 0
    phase: FleetPhase = FleetPhase.AWAITING_APPROVAL
    max_failures: int = Field(default=1, ge=1)
    parallel: int = Field(default=5, ge=1)
    pause_between_waves: bool = False
    failures_forgiven: int = 0  # failures already accepted by a Resume after a halt
    # Approval: the strictest among the servers' rules (see `FleetApproval`).
    approvals_required: int = Field(default=1, ge=0)
    approvers: list[list[str]] = Field(default_factory=list)  # one list per rule; a decider is named in each
    approvals: list[str] = Field(default_factory=list)
    decided_by: str | None = None
    decision_note: str | None = None
    created_at: UtcDatetime
    started_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None
    health_timeout_s: float = Field(default=HEALTH_TIMEOUT.total_seconds(), gt=0)
    spec: FleetSpec | None = None
    origin_channel: str = ""  # where the command was typed (told at start and end)
    message_ts: str | None = None  # the one fleet message in `channel`; its thread holds the per-server detail

    @property
    def wave_count(self) -> int:
        return max((s.wave for s in self.servers), default=-1) + 1

    def server(self, server_id: str) -> FleetServer | None:
        return next((s for s in self.servers if s.id == server_id), None)

    def in_wave(self, wave: int) -> list[FleetServer]:
        return [s for s in self.servers if s.wave == wave]

    @property
    def failures(self) -> int:
        return sum(1 for s in self.servers if s.phase in (ServerPhase.FAILED, ServerPhase.ROLLED_BACK))

    @property
    def in_flight(self) -> int:
        return sum(1 for s in self.servers if s.phase in IN_FLIGHT)

    @property
    def finished(self) -> bool:
        return self.ended_at is not None

    def counts(self) -> dict[ServerPhase, int]:
        out = dict.fromkeys(ServerPhase, 0)
        for s in self.servers:
            out[s.phase] += 1
        return out


# ---------------------------------------------------------------------------------------------------------------------
# Approval: the strictest among the servers' rules


@dataclass(frozen=True, slots=True)
class FleetApproval:
    approvals_required: int  # 0: every server's rule is self-service
    approvers: tuple[tuple[str, ...], ...]  # one per distinct rule; a decider must be named in each
    rule_names: tuple[str, ...]

    @classmethod
    def of(cls, policy: Policy, rules: Iterable[Rule]) -> FleetApproval:
        distinct = list({rule.name: rule for rule in rules}.values())
        required = max((policy.approvals_needed(rule) for rule in distinct), default=1)
        approvers = tuple(tuple(sorted(rule.approvers)) for rule in distinct if not rule.self_service)
        return cls(required, approvers, tuple(rule.name for rule in distinct))

    def problem(self) -> str | None:
        """A sentence when nobody could approve the fleet (no person is an approver under every rule)."""
        if self.approvals_required == 0 or len(self.approvers) < 2:
            return None
        users = [{a for a in group if not a.startswith("S")} for group in self.approvers]
        has_groups = any(a.startswith("S") for group in self.approvers for a in group)
        if not has_groups and not set.intersection(*users):
            names = ", ".join(f"'{n}'" for n in self.rule_names)
            return (
                f"The servers fall under rules {names}, and no approver is listed in all of them, so nobody could "
                "approve this fleet. Split it by rule (e.g. select by tag), or ask an admin to align the approvers."
            )
        return None


def max_fleet_problem(policy: Policy, size: int) -> str | None:
    if size > policy.max_fleet_size:
        return (
            f"The fleet has {size} servers; the policy allows at most {policy.max_fleet_size} in one rollout "
            "(max_fleet_size). Narrow the selector, or split the fleet."
        )
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Events and effects

Action = Literal["continue", "pause", "resume", "abort", "rollback"]
GO_ACTIONS: frozenset[str] = frozenset({"continue", "resume", "rollback"})  # an approver, not the requester
STOP_ACTIONS: frozenset[str] = frozenset({"pause", "abort"})  # an approver, or the requester


@dataclass(frozen=True, slots=True)
class Approve:
    user_id: str
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Reject:
    user_id: str
    groups: frozenset[str] = frozenset()
    note: str = ""


@dataclass(frozen=True, slots=True)
class Cancel:
    user_id: str


@dataclass(frozen=True, slots=True)
class Expire:
    pass


@dataclass(frozen=True, slots=True)
class Click:
    action: Action
    user_id: str
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Started:
    server_id: str
    request_id: str


@dataclass(frozen=True, slots=True)
class NotStarted:
    """The shell found no change request for a server it was settling (or could not create one)."""

    server_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Ended:
    server_id: str
    ok: bool
    reason: str = ""
    backup_image_id: str | None = None


@dataclass(frozen=True, slots=True)
class Health:
    server_id: str
    status: str
    image_id: str | None


@dataclass(frozen=True, slots=True)
class RolledBack:
    server_id: str
    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Recover:
    """Fed once after a (re)start of the process, for every rollout not yet finished."""


Event = Approve | Reject | Cancel | Expire | Click | Started | NotStarted | Ended | Health | RolledBack | Recover


@dataclass(frozen=True, slots=True)
class StartServer:
    """Create (or find) the server's change request, key `"{rollout_id}:{server_id}"`; answer Started/NotStarted."""

    server_id: str


@dataclass(frozen=True, slots=True)
class SettleStart:
    """Find the server's change request without creating one; answer Started or NotStarted."""

    server_id: str


@dataclass(frozen=True, slots=True)
class CheckHealth:
    """Read the server (at the tracker's pace); answer Health."""

    server_id: str


@dataclass(frozen=True, slots=True)
class RollBack:
    server_id: str
    backup_image_id: str


@dataclass(frozen=True, slots=True)
class UpdateStatus:
    """Re-render the one fleet status message (the notifier coalesces: the latest render wins)."""


ReplyKind = Literal["approved", "failure", "halted", "aborted", "end", "rejected", "cancelled", "expired"]


@dataclass(frozen=True, slots=True)
class ThreadReply:
    kind: ReplyKind
    server_id: str | None = None


@dataclass(frozen=True, slots=True)
class NotifyChannels:
    """The notify channels get one message at the start and one at the end of a fleet."""

    kind: Literal["start", "end"]


@dataclass(frozen=True, slots=True)
class Refuse:
    user_id: str
    message: str


@dataclass(frozen=True, slots=True)
class Audit:
    actor: str
    action: str
    detail: str = ""


Effect = (
    StartServer | SettleStart | CheckHealth | RollBack | UpdateStatus | ThreadReply | NotifyChannels | Refuse | Audit
)


@dataclass(frozen=True, slots=True)
class Step:
    rollout: Rollout
    effects: list[Effect]


# ---------------------------------------------------------------------------------------------------------------------
# Deciders


def _named(user_id: str, groups: frozenset[str], members: Sequence[str]) -> bool:
    return user_id in members or not groups.isdisjoint(members)


def may_decide(r: Rollout, action: str, user_id: str, groups: frozenset[str]) -> str | None:
    """None when the user may take `action`; else the sentence that says why not."""
    approver = all(_named(user_id, groups, group) for group in r.approvers) if r.approvers else False
    if r.approvals_required == 0 and user_id == r.requester:
        return None  # self-service everywhere: the requester runs the whole rollout
    if action in STOP_ACTIONS and (approver or user_id == r.requester):
        return None
    if action in GO_ACTIONS and user_id == r.requester:
        return f"You started {r.id} yourself; another approver must decide to {action} it."
    if approver:
        return None
    return f"Only approvers of every server in {r.id} may {action} it."


# ---------------------------------------------------------------------------------------------------------------------
# The step function


def step(rollout: Rollout, event: Event, now: datetime) -> Step:
    """The next rollout and the effects, for one event. Never mutates its input."""
    r = rollout.model_copy(deep=True)
    effects: list[Effect] = []
    changed = _apply(r, event, now, effects)
    if changed:
        _advance(r, now, effects)
        r.version += 1
        if not any(isinstance(e, UpdateStatus) for e in effects):
            effects.append(UpdateStatus())
    return Step(r, effects)


def _apply(r: Rollout, event: Event, now: datetime, fx: list[Effect]) -> bool:
    """Apply one event; False when it changes nothing (a duplicate, or a refused click)."""
    if isinstance(event, Approve | Reject | Cancel | Expire):
        return _decide_approval(r, event, now, fx)
    if isinstance(event, Click):
        return _click(r, event, now, fx)
    if isinstance(event, Recover):
        for each in r.servers:
            if each.phase is ServerPhase.STARTING:
                fx.append(StartServer(each.id) if r.phase is FleetPhase.RUNNING else SettleStart(each.id))
            elif each.phase is ServerPhase.VERIFYING:
                fx.append(CheckHealth(each.id))
        fx.append(UpdateStatus())
        return False
    s = r.server(event.server_id)
    if s is None:
        return False
    if isinstance(event, Started):
        if s.phase is not ServerPhase.STARTING:
            return False
        s.phase, s.request_id = ServerPhase.RUNNING, event.request_id
        s.started_at = s.started_at or now
        return True
    if isinstance(event, NotStarted):
        if s.phase is not ServerPhase.STARTING:
            return False
        if r.phase in (FleetPhase.RUNNING, FleetPhase.WAITING) or event.reason:
            _fail(r, s, event.reason or "its change could not be started", now, fx)
        else:
            s.phase, s.reason = ServerPhase.SKIPPED, f"not started: the rollout is {r.phase.value}"
        return True
    if isinstance(event, Ended):
        if s.phase not in (ServerPhase.RUNNING, ServerPhase.STARTING):
            return False
        s.ended_at, s.backup_image_id = now, event.backup_image_id
        if event.ok:
            s.phase = ServerPhase.VERIFYING
            fx.append(CheckHealth(s.id))
        else:
            _fail(r, s, event.reason or "the change failed", now, fx)
        return True
    if isinstance(event, Health):
        if s.phase is not ServerPhase.VERIFYING:
            return False
        if event.status.upper() == "ACTIVE" and event.image_id == r.image_id:
            s.phase = ServerPhase.HEALTHY
            return True
        waited = (now - (s.ended_at or now)).total_seconds()
        if waited < r.health_timeout_s:
            fx.append(CheckHealth(s.id))
            return False
        on = "the new image" if event.image_id == r.image_id else f"image {event.image_id or 'unknown'}"
        minutes = math.ceil(r.health_timeout_s / 60)
        _fail(r, s, f"health gate: {event.status or 'no status'} on {on} after {minutes} min", now, fx)
        return True
    if isinstance(event, RolledBack):
        if s.phase is not ServerPhase.ROLLING_BACK:
            return False
        if event.ok:
            s.phase = ServerPhase.ROLLED_BACK
        else:
            s.phase, s.reason = ServerPhase.FAILED, f"{s.reason}; roll back failed: {event.reason or 'unknown'}"
            fx.append(ThreadReply("failure", s.id))
        return True
    return False


def _fail(r: Rollout, s: FleetServer, reason: str, now: datetime, fx: list[Effect]) -> None:
    s.phase, s.reason = ServerPhase.FAILED, reason
    s.ended_at = s.ended_at or now
    fx.append(ThreadReply("failure", s.id))
    halting = r.phase in (FleetPhase.RUNNING, FleetPhase.WAITING, FleetPhase.PAUSED)
    if halting and r.failures - r.failures_forgiven >= r.max_failures:
        r.phase = FleetPhase.HALTED
        fx.append(ThreadReply("halted"))
        fx.append(Audit("bot", "halted", f"{r.failures} failed (limit {r.max_failures})"))


def _decide_approval(r: Rollout, event: Approve | Reject | Cancel | Expire, now: datetime, fx: list[Effect]) -> bool:
    if r.phase is not FleetPhase.AWAITING_APPROVAL:
        if not isinstance(event, Expire):
            fx.append(Refuse(event.user_id, f"{r.id} is no longer waiting for approval (it is {r.phase.value})."))
        return False
    if isinstance(event, Expire):
        r.phase, r.ended_at = FleetPhase.EXPIRED, now
        fx += [ThreadReply("expired"), Audit("bot", "expired")]
        return True
    if isinstance(event, Cancel):
        if event.user_id != r.requester:
            fx.append(Refuse(event.user_id, f"Only <@{r.requester}>, who asked for {r.id}, can cancel it."))
            return False
        r.phase, r.ended_at, r.decided_by = FleetPhase.CANCELLED, now, event.user_id
        fx += [ThreadReply("cancelled"), Audit(event.user_id, "cancelled")]
        return True
    if event.user_id == r.requester:
        fx.append(Refuse(event.user_id, f"You asked for {r.id} yourself; another approver must review it."))
        return False
    if not r.approvers or not all(_named(event.user_id, event.groups, group) for group in r.approvers):
        fx.append(Refuse(event.user_id, f"Only approvers of every server in {r.id} may approve or reject it."))
        return False
    if isinstance(event, Reject):
        r.phase, r.ended_at, r.decided_by = FleetPhase.REJECTED, now, event.user_id
        r.decision_note = event.note or None
        fx += [ThreadReply("rejected"), Audit(event.user_id, "rejected", event.note)]
        return True
    if event.user_id in r.approvals:
        fx.append(Refuse(event.user_id, f"You have already approved {r.id}; it needs someone else as well."))
        return False
    r.approvals.append(event.user_id)
    fx.append(Audit(event.user_id, "approved", f"{len(r.approvals)} of {r.approvals_required}"))
    if len(r.approvals) >= r.approvals_required:
        start(r, now, fx)
    return True


def start(r: Rollout, now: datetime, fx: list[Effect]) -> None:
    """Approval complete (or none needed): the first wave may go. The shell calls it for a self-service fleet."""
    r.phase, r.started_at = FleetPhase.RUNNING, now
    r.decided_by = r.approvals[-1] if r.approvals else r.requester
    fx += [ThreadReply("approved"), NotifyChannels("start")]


def _click(r: Rollout, event: Click, now: datetime, fx: list[Effect]) -> bool:
    why = may_decide(r, event.action, event.user_id, event.groups)
    if why is not None:
        fx.append(Refuse(event.user_id, why))
        return False
    allowed: Mapping[str, frozenset[FleetPhase]] = {
        "continue": frozenset({FleetPhase.WAITING}),
        "pause": frozenset({FleetPhase.RUNNING, FleetPhase.WAITING}),
        "resume": frozenset({FleetPhase.PAUSED, FleetPhase.HALTED}),
        "abort": frozenset({FleetPhase.RUNNING, FleetPhase.WAITING, FleetPhase.PAUSED, FleetPhase.HALTED}),
        "rollback": frozenset({FleetPhase.HALTED, FleetPhase.ABORTED, FleetPhase.DONE}),
    }
    if r.phase not in allowed[event.action]:
        fx.append(Refuse(event.user_id, f"{r.id} is {r.phase.value.replace('_', ' ')}; {event.action} does not apply."))
        return False
    detail = ""
    if event.action == "continue":
        r.wave += 1
        r.phase = FleetPhase.RUNNING
        detail = f"wave {r.wave + 1}"
    elif event.action == "pause":
        r.phase = FleetPhase.PAUSED
    elif event.action == "resume":
        if r.phase is FleetPhase.HALTED:
            r.failures_forgiven = r.failures
            detail = f"{r.failures} failure(s) accepted"
        r.phase = FleetPhase.RUNNING
    elif event.action == "abort":
        r.phase = FleetPhase.ABORTED
        for s in r.servers:
            if s.phase is ServerPhase.PENDING:
                s.phase, s.reason = ServerPhase.SKIPPED, f"aborted by <@{event.user_id}>"
        fx.append(ThreadReply("aborted"))
    else:
        targets = [s for s in r.servers if s.phase is ServerPhase.FAILED and s.backup_image_id]
        if not targets:
            fx.append(Refuse(event.user_id, f"No failed server of {r.id} has a backup to roll back to."))
            return False
        for s in targets:
            assert s.backup_image_id is not None
            s.phase = ServerPhase.ROLLING_BACK
            fx.append(RollBack(s.id, s.backup_image_id))
        detail = ", ".join(s.label for s in targets)
    fx.append(Audit(event.user_id, event.action, detail))
    return True


def _advance(r: Rollout, now: datetime, fx: list[Effect]) -> None:
    """Start what may start; move past a wave whose every server is settled; finish when nothing is left."""
    while r.phase is FleetPhase.RUNNING:
        wave = r.in_wave(r.wave)
        slots = r.parallel - sum(1 for s in r.servers if s.phase in SLOT_HOLDERS)
        for s in wave:
            if slots <= 0:
                break
            if s.phase is ServerPhase.PENDING:
                s.phase, s.started_at = ServerPhase.STARTING, now
                fx.append(StartServer(s.id))
                slots -= 1
        if not all(s.phase in SETTLED for s in wave):
            return
        if r.wave + 1 >= r.wave_count:
            r.phase = FleetPhase.DONE
        elif r.pause_between_waves:
            r.phase = FleetPhase.WAITING
            fx.append(Audit("bot", "waiting", f"wave {r.wave + 1} passed its health gate"))
        else:
            r.wave += 1
    if r.phase in (FleetPhase.DONE, FleetPhase.ABORTED) and r.in_flight == 0 and r.ended_at is None:
        r.ended_at = now
        fx += [ThreadReply("end"), NotifyChannels("end"), Audit("bot", r.phase.value)]


# ---------------------------------------------------------------------------------------------------------------------
# Reading a rollout


def eta(r: Rollout, now: datetime) -> timedelta | None:
    """Time left: the mean server duration so far, times the rounds of `parallel` still to run. None until known."""
    done = [s.ended_at - s.started_at for s in r.servers if s.started_at and s.ended_at]
    if not done or r.finished:
        return None
    mean = sum(done, timedelta()) / len(done)
    pending = sum(1 for s in r.servers if s.phase is ServerPhase.PENDING)
    running = [now - s.started_at for s in r.servers if s.phase in SLOT_HOLDERS and s.started_at]
    left_of_running = max((mean - t for t in running), default=timedelta())
    return max(left_of_running, timedelta()) + mean * math.ceil(pending / r.parallel)


def new_rollout(
    *,
    requester: str,
    channel: str,
    image_id: str,
    image_name: str,
    waves: Sequence[Sequence[tuple[str, str]]],
    approval: FleetApproval,
    now: datetime,
    max_failures: int = 1,
    parallel: int = 5,
    pause_between_waves: bool = False,
    selector: str = "",
    left_out: Sequence[LeftOut] = (),
    spec: FleetSpec | None = None,
    origin_channel: str = "",
) -> Step:
    """A rollout from planned waves of (server id, name). A self-service fleet starts at once."""
    r = Rollout(
        requester=requester,
        channel=channel,
        image_id=image_id,
        image_name=image_name,
        selector=selector,
        servers=[FleetServer(id=sid, name=name, wave=i) for i, wave in enumerate(waves) for sid, name in wave],
        left_out=list(left_out),
        max_failures=max_failures,
        parallel=parallel,
        pause_between_waves=pause_between_waves,
        approvals_required=approval.approvals_required,
        approvers=[list(group) for group in approval.approvers],
        created_at=now,
        spec=spec,
        origin_channel=origin_channel,
    )
    effects: list[Effect] = [Audit(requester, "requested", f"{len(r.servers)} servers in {r.wave_count} waves")]
    if approval.approvals_required == 0:
        start(r, now, effects)
        _advance(r, now, effects)
    effects.append(UpdateStatus())
    return Step(r, effects)
