"""The fleet's shell: load a rollout, `step` it (bot/domain/fleet.py), save it over the version read, carry out the
effects. Slack-free: what people see goes through a `FleetPresenter`.

Each server still takes the single-server path: `StartServer` stores the server's own change request, already
approved and keyed `"{rollout_id}:{server_id}"`, and the tracker drives it like any other. A repeated start finds
the request made before (`Store.create_child`), so a restart never changes a server twice; a server with another
live change is not started (`NotStarted`), so one live change per server holds across fleets and single changes.
Events of one rollout are handled one at a time in this process; across processes the version guard decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.cloud import CloudError, Server
from bot.domain.fleet import (
    Audit,
    CheckHealth,
    Effect,
    Ended,
    Event,
    Health,
    NotifyChannels,
    NotStarted,
    Recover,
    Refuse,
    RollBack,
    RolledBack,
    Rollout,
    ServerPhase,
    SettleStart,
    Started,
    StartServer,
    Step,
    ThreadReply,
    UpdateStatus,
    step,
)
from bot.domain.policy import Policy
from bot.domain.request import ChangeRequest, LoginMethod, RequestState, StopType
from bot.services.plan import PlanInputs, PlanPolicy, build_change_request, evaluate_plan
from bot.services.planner import Planner
from bot.services.ratelimit import TokenBucket
from bot.store import ServerBusyError, Store

log = logging.getLogger(__name__)

ROLLBACK_SUFFIX = ":rollback"
SAVE_ATTEMPTS = 8


class FleetPresenter(Protocol):
    """What people see of a rollout (bot/slack/fleet_presenter.py implements it)."""

    async def show(self, rollout: Rollout) -> str | None:
        """Post the one fleet message; its ts (None when Slack did not take it)."""
        ...

    def status(self, rollout: Rollout) -> None:
        """Re-render the fleet message: a coalesced edit, never waited for."""
        ...

    async def reply(self, rollout: Rollout, reply: ThreadReply) -> None: ...

    async def notify(self, rollout: Rollout, kind: str) -> None: ...

    async def refuse(self, rollout: Rollout, user_id: str, message: str) -> None: ...


def fleet_key(rollout_id: str, server_id: str) -> str:
    return f"{rollout_id}:{server_id}"


class FleetService:
    def __init__(
        self,
        store: Store,
        planner: Planner,
        policy: Policy,
        presenter: FleetPresenter,
        *,
        get_server: Callable[[str], Awaitable[Server]],
        budget: TokenBucket,
        wake: Callable[[], None] = lambda: None,
        keypair_login: bool = True,
        health_interval: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`get_server` and `budget`: the cloud read of the health gate, paced with the tracker's ECS budget."""
        self.store = store
        self.planner = planner
        self.policy = policy
        self.presenter = presenter
        self._get_server = get_server
        self._budget = budget
        self.wake = wake
        self.keypair_login = keypair_login
        self.health_interval = health_interval
        self._now = now
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.ecs_calls = 0

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # ------------------------------------------------------------------ entry points

    async def create(self, first: Step) -> Rollout:
        """A submitted plan: store it, post its one message, and carry out its first effects (a self-service fleet
        starts at once)."""
        r = first.rollout
        await self.store.create_rollout(r, [e for e in first.effects if isinstance(e, Audit)])
        r = await self._show(r)
        await self._carry_out(r, first.effects)
        return r

    async def handle(self, rollout_id: str, event: Event) -> Rollout | None:
        """One event for one rollout: step, save over the version read (again on a lost race), then the effects."""
        lock = self._locks.setdefault(rollout_id, asyncio.Lock())
        async with lock:
            done = await self._step_and_save(rollout_id, event)
        if done is None:
            return None
        await self._carry_out(done.rollout, done.effects)
        if done.rollout.finished:
            self._locks.pop(rollout_id, None)
        return done.rollout

    async def recover(self) -> None:
        """At the start of a tracker leadership: every unfinished rollout resumes where its document says."""
        for r in await self.store.unfinished_rollouts():
            try:
                if r.message_ts is None:
                    r = await self._show(r)
                await self.handle(r.id, Recover())
                for s in r.servers:  # a change that ended while no process was there to hear it
                    if s.phase is ServerPhase.RUNNING:
                        child = await self.store.child(fleet_key(r.id, s.id))
                        if child is not None and child.is_terminal:
                            await self.child_ended(child)
                    elif s.phase is ServerPhase.ROLLING_BACK:
                        child = await self.store.child(fleet_key(r.id, s.id) + ROLLBACK_SUFFIX)
                        if child is None or child.is_terminal:
                            await self._rolled_back(r.id, s.id, child)
            except Exception:
                log.exception("recovering rollout %s failed; the next leadership tries again", r.id)

    async def child_ended(self, request: ChangeRequest) -> None:
        """The tracker moved a fleet's child request to an end: the rollout hears `Ended` (or `RolledBack`)."""
        if not request.fleet_key:
            return
        rollout_id, _, server_id = request.fleet_key.partition(":")
        if server_id.endswith(ROLLBACK_SUFFIX):
            await self._rolled_back(rollout_id, server_id.removesuffix(ROLLBACK_SUFFIX), request)
            return
        ok = request.state is RequestState.SUCCEEDED
        reason = "" if ok else (request.fail_reason or f"its change request {request.id} ended {request.state.value}")
        await self.handle(rollout_id, Ended(server_id, ok, reason, request.backup_image_id))

    # ------------------------------------------------------------------ the step and its effects

    async def _step_and_save(self, rollout_id: str, event: Event) -> Step | None:
        for _attempt in range(SAVE_ATTEMPTS):
            r = await self.store.get_rollout(rollout_id)
            if r is None:
                return None
            done = step(r, event, self._now())
            audit = [e for e in done.effects if isinstance(e, Audit)]
            audit += [Audit(e.user_id, "refused", e.message) for e in done.effects if isinstance(e, Refuse)]
            if done.rollout.version == r.version:
                if audit:
                    await self.store.record_rollout(r.id, audit)
                return done
            if await self.store.save_rollout(done.rollout, expected_version=r.version, audit=audit):
                return done
        raise RuntimeError(f"rollout {rollout_id} kept changing under this process; the event is dropped")

    async def _show(self, r: Rollout) -> Rollout:
        ts = await self.presenter.show(r)
        if ts is None:
            return r
        lock = self._locks.setdefault(r.id, asyncio.Lock())
        async with lock:
            for _attempt in range(SAVE_ATTEMPTS):
                current = await self.store.get_rollout(r.id)
                if current is None:
                    return r
                shown = current.model_copy(update={"message_ts": ts, "version": current.version + 1})
                if await self.store.save_rollout(shown, expected_version=current.version):
                    return shown
        return r

    async def _carry_out(self, r: Rollout, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case StartServer(server_id=server_id):
                    await self.handle(r.id, await self._start(r, server_id, create=True))
                case SettleStart(server_id=server_id):
                    await self.handle(r.id, await self._start(r, server_id, create=False))
                case CheckHealth(server_id=server_id):
                    self._spawn(self._check_health(r.id, server_id))
                case RollBack(server_id=server_id, backup_image_id=image_id):
                    await self._roll_back(r, server_id, image_id)
                case UpdateStatus():
                    self.presenter.status(r)
                case ThreadReply():
                    self._spawn(self.presenter.reply(r, effect))
                case NotifyChannels(kind=kind):
                    self._spawn(self.presenter.notify(r, kind))
                case Refuse(user_id=user_id, message=message):
                    self._spawn(self.presenter.refuse(r, user_id, message))
                case Audit():
                    pass  # saved with the rollout

    async def _start(self, r: Rollout, server_id: str, *, create: bool) -> Event:
        """The server's own change request: found (a repeated start), or made now, already approved."""
        key = fleet_key(r.id, server_id)
        found = await self.store.child(key)
        if found is not None:
            return Started(server_id, found.id)
        if not create:
            return NotStarted(server_id)
        made = await self._child_request(r, server_id, r.image_id, key)
        if isinstance(made, str):
            return NotStarted(server_id, made)
        try:
            child, created = await self.store.create_child(made, actor=r.decided_by or r.requester)
        except ServerBusyError as exc:
            return NotStarted(server_id, f"it has another live change ({exc.live_request_id}); not changed twice")
        if created:
            await self.store.record(child.id, actor="bot", action="fleet", detail=f"part of {r.id}, wave {r.wave + 1}")
            self.wake()
        return Started(server_id, child.id)

    async def _child_request(
        self, r: Rollout, server_id: str, image_id: str, key: str, *, rollback_of: str | None = None
    ) -> ChangeRequest | str:
        """The request the plan makes for this server now (fresh facts); a sentence when a check blocks it."""
        spec = r.spec
        if spec is None:
            return "the rollout has no change details"
        try:
            facts = await self.planner.facts(server_id, fresh=True, image_id=image_id)
        except CloudError as exc:
            return f"the cloud could not be read: {exc.hint}"
        server = facts.server
        rule = self.policy.rule_for(server.name, server.id, getattr(server, "tags", None) or ())
        if rule is None:
            return "no policy rule covers it"
        inputs = PlanInputs(
            image_id=image_id,
            login=LoginMethod.KEYPAIR,
            keyname=spec.keyname or (server.key_name if server.key_name in facts.keypair_names else None),
            stop_type=StopType(spec.stop_type),
            reason=spec.reason,
            ticket=spec.ticket,
            rollback_of=rollback_of,
        )
        backup = self.policy.backup_mode(rule) != "off"
        plan = evaluate_plan(
            inputs,
            facts.server_facts,
            facts.image(image_id),
            facts.keypair_names,
            PlanPolicy(self.policy, rule, self.keypair_login),
            quota=await self.planner.image_quota() if backup else None,
        )
        if plan.blocking:
            return "; ".join(f"{c.title}: {c.detail}" if c.detail else c.title for c in plan.blocking)[:500]
        request = build_change_request(
            plan, requester=r.requester, origin_channel=r.origin_channel or r.channel, now=self._now()
        )
        return request.model_copy(
            update={
                "state": RequestState.APPROVED,
                "fleet_key": key,
                "approvals_channel": r.channel,
                "approvals": list(r.approvals),
                "decided_by": r.decided_by or r.requester,
                "expires_at": None,
                "notify_channels": [],
            }
        )

    async def _check_health(self, rollout_id: str, server_id: str) -> None:
        """The health gate reads the server at the tracker's pace, within the ECS budget."""
        await asyncio.sleep(self.health_interval)
        await self._budget.acquire()
        self.ecs_calls += 1
        try:
            server = await self._get_server(server_id)
            event = Health(server_id, server.status, server.image_id)
        except CloudError:
            event = Health(server_id, "UNKNOWN", None)
        await self.handle(rollout_id, event)

    async def _roll_back(self, r: Rollout, server_id: str, image_id: str) -> None:
        """A failed server back to its backup: the rollback path, as its own change request. It takes no backup of
        its own: a change that failed mid-rebuild leaves the server in ERROR, which IMS refuses to image, and the
        disk it would save is the failed one."""
        s = r.server(server_id)
        made = await self._child_request(
            r,
            server_id,
            image_id,
            fleet_key(r.id, server_id) + ROLLBACK_SUFFIX,
            rollback_of=s.request_id if s else None,
        )
        if isinstance(made, str):
            await self.handle(r.id, RolledBack(server_id, False, made))
            return
        made = made.model_copy(update={"backup_wanted": False})
        try:
            child, created = await self.store.create_child(made, actor=r.decided_by or r.requester)
        except ServerBusyError as exc:
            await self.handle(r.id, RolledBack(server_id, False, f"it has another live change ({exc.live_request_id})"))
            return
        if created:
            self.wake()
        if child.is_terminal:
            await self._rolled_back(r.id, server_id, child)

    async def _rolled_back(self, rollout_id: str, server_id: str, child: ChangeRequest | None) -> None:
        if child is None:
            await self.handle(rollout_id, RolledBack(server_id, False, "its rollback was never stored"))
            return
        ok = child.state is RequestState.SUCCEEDED
        await self.handle(rollout_id, RolledBack(server_id, ok, "" if ok else child.fail_reason or child.state.value))

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(self._logged(work))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _logged(work: Awaitable[Any]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("fleet work failed; the rollout's stored state says what is left")
