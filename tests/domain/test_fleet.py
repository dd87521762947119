"""The fleet rollout's pure engine: every transition, driven by events, checked by its effects."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain import fleet as f
from bot.domain.fleet import FleetPhase as P
from bot.domain.fleet import ServerPhase as S
from bot.domain.policy import Policy
from bot.domain.waves import cut, parse_waves

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
IMAGE = "67f433d8-ed0e-4321-a8a2-a71838539e09"
REQ, APP, APP2, OTHER = "U01REQ0001", "U01APP0001", "U01APP0002", "U01OTHER01"
SELF_SERVICE = f.FleetApproval(0, (), ("self",))
ONE_APPROVAL = f.FleetApproval(1, ((APP, APP2),), ("web",))


def make(n: int = 12, spec: str = "1,10%,rest", approval: f.FleetApproval = SELF_SERVICE, **kw: object) -> f.Step:
    ids = [(f"srv-{i:03d}", f"web-{i:03d}") for i in range(n)]
    waves = [[pair for pair in ids if pair[0] in wave] for wave in cut([i for i, _ in ids], parse_waves(spec))]
    return f.new_rollout(
        requester=REQ,
        channel="C01CHAN001",
        image_id=IMAGE,
        image_name="ubuntu",
        waves=waves,
        approval=approval,
        now=NOW,
        **kw,  # type: ignore[arg-type]
    )


def kinds(effects: list[f.Effect]) -> list[str]:
    return [type(e).__name__ for e in effects]


def started(effects: list[f.Effect]) -> list[str]:
    return [e.server_id for e in effects if isinstance(e, f.StartServer)]


def phases(r: f.Rollout) -> dict[str, S]:
    return {s.id: s.phase for s in r.servers}


class Shell:
    """Answers effects the way the bot's shell would, with a script of which servers fail."""

    def __init__(self, step: f.Step, fail: set[str] = frozenset(), now: datetime = NOW) -> None:  # type: ignore[assignment]
        self.r, self.pending, self.fail, self.now = step.rollout, list(step.effects), set(fail), now
        self.starts: Counter[str] = Counter()
        self.replies: list[f.ThreadReply] = []
        self.refusals: list[str] = []

    def feed(self, event: f.Event) -> f.Step:
        self.now += timedelta(seconds=30)
        out = f.step(self.r, event, self.now)
        self.r = out.rollout
        self.pending += out.effects
        return out

    def settle(self, limit: int = 10_000) -> None:
        """Carry out effects until none is left (servers end in the order they started)."""
        running: list[str] = []
        for _ in range(limit):
            if self.pending:
                e = self.pending.pop(0)
                if isinstance(e, f.StartServer):
                    self.starts[e.server_id] += 1
                    self.feed(f.Started(e.server_id, f"CR-{e.server_id[-3:]}AAA"))
                    running.append(e.server_id)
                elif isinstance(e, f.CheckHealth):
                    self.feed(f.Health(e.server_id, "ACTIVE", IMAGE))
                elif isinstance(e, f.ThreadReply):
                    self.replies.append(e)
                elif isinstance(e, f.Refuse):
                    self.refusals.append(e.message)
            elif running:
                sid = running.pop(0)
                ok = sid not in self.fail
                self.feed(f.Ended(sid, ok, "" if ok else "Ecs.1002 OpenStack timed out", backup_image_id="bk-" + sid))
            else:
                return
        raise AssertionError("did not settle")


# --- creation and approval ---


def test_self_service_fleet_starts_the_canary_alone() -> None:
    step = make()
    assert step.rollout.phase is P.RUNNING and step.rollout.wave_count == 3
    assert started(step.effects) == ["srv-000"]
    assert "NotifyChannels" in kinds(step.effects) and "UpdateStatus" in kinds(step.effects)


def test_a_fleet_of_12_in_3_waves_succeeds_with_one_end_reply() -> None:
    shell = Shell(make())
    shell.settle()
    r = shell.r
    assert r.phase is P.DONE and r.finished and r.ended_at is not None
    assert set(phases(r).values()) == {S.HEALTHY}
    assert [len(r.in_wave(w)) for w in range(3)] == [1, 2, 9]
    assert max(shell.starts.values()) == 1 and len(shell.starts) == 12
    assert [x.kind for x in shell.replies] == ["approved", "end"]


@pytest.mark.parametrize(
    ("event", "phase", "refused"),
    [
        (f.Approve(REQ, frozenset()), P.AWAITING_APPROVAL, "yourself"),
        (f.Approve(OTHER), P.AWAITING_APPROVAL, "Only approvers"),
        (f.Approve(APP), P.RUNNING, None),
        (f.Approve("U01GROUPMEM", frozenset({APP2})), P.RUNNING, None),  # named through a user group
        (f.Reject(APP, note="not now"), P.REJECTED, None),
        (f.Reject(OTHER), P.AWAITING_APPROVAL, "Only approvers"),
        (f.Cancel(OTHER), P.AWAITING_APPROVAL, "can cancel it"),
        (f.Cancel(REQ), P.CANCELLED, None),
        (f.Expire(), P.EXPIRED, None),
        (f.Click("resume", APP), P.AWAITING_APPROVAL, "does not apply"),
        (f.Click("abort", REQ), P.AWAITING_APPROVAL, "does not apply"),
    ],
)
def test_approval_transitions(event: f.Event, phase: P, refused: str | None) -> None:
    r = make(approval=ONE_APPROVAL).rollout
    assert r.phase is P.AWAITING_APPROVAL
    out = f.step(r, event, NOW)
    assert out.rollout.phase is phase
    messages = [e.message for e in out.effects if isinstance(e, f.Refuse)]
    if refused:
        assert refused in messages[0] and out.rollout.version == r.version
    else:
        assert not messages and out.rollout.version == r.version + 1
    if phase is P.RUNNING:
        assert started(out.effects) == ["srv-000"]
    if phase in f.NOT_STARTED:
        assert out.rollout.finished and not started(out.effects)
    assert r.phase is P.AWAITING_APPROVAL  # the input is never mutated


def test_two_approvals_and_the_strictest_rule() -> None:
    policy = Policy.parse(
        """
        [[rules]]
        name = "web"
        servers = ["web-*"]
        requesters = ["U01REQ0001"]
        approvers = ["U01APP0001", "U01APP0002"]
        images = ["*"]
        [[rules]]
        name = "db"
        servers = ["db-*"]
        requesters = ["U01REQ0001"]
        approvers = ["U01APP0001", "U01APP0002", "U01APP0003"]
        approvals_required = 2
        images = ["*"]
        [[rules]]
        name = "dev"
        servers = ["dev-*"]
        requesters = ["U01REQ0001"]
        self_service = true
        images = ["*"]
        """
    )
    rules = [policy.rule_for(n, n) for n in ("web-1", "db-1", "dev-1", "web-2")]
    approval = f.FleetApproval.of(policy, [r for r in rules if r])
    assert approval.approvals_required == 2 and approval.rule_names == ("web", "db", "dev")
    assert approval.problem() is None
    r = make(approval=approval).rollout
    one = f.step(r, f.Approve(APP), NOW)
    assert one.rollout.phase is P.AWAITING_APPROVAL and not started(one.effects)
    again = f.step(one.rollout, f.Approve(APP), NOW)
    assert "already approved" in again.effects[0].message  # type: ignore[union-attr]
    assert f.step(one.rollout, f.Approve("U01APP0003"), NOW).rollout.phase is P.AWAITING_APPROVAL  # not a web approver
    assert f.step(one.rollout, f.Approve(APP2), NOW).rollout.phase is P.RUNNING
    self_only = f.FleetApproval.of(policy, [r for r in (rules[2],) if r])
    assert self_only.approvals_required == 0


def test_no_common_approver_and_max_fleet_size() -> None:
    split = f.FleetApproval(1, (("U01A000001",), ("U01B000001",)), ("a", "b"))
    assert "nobody could approve this fleet" in (split.problem() or "")
    assert Policy.parse("").max_fleet_size == 100
    policy = Policy.parse("max_fleet_size = 3")
    assert f.max_fleet_problem(policy, 3) is None
    assert "at most 3" in (f.max_fleet_problem(policy, 4) or "")
    with pytest.raises(ValueError, match="between 1 and 1000"):
        Policy.parse("max_fleet_size = 0")


# --- running ---


def test_parallelism_bounds_starts_within_a_wave() -> None:
    r = make(n=10, spec="1,rest", parallel=3).rollout
    shell = Shell(f.Step(r, []))
    shell.feed(f.Started("srv-000", "CR-000AAA"))
    shell.feed(f.Ended("srv-000", True))
    out = shell.feed(f.Health("srv-000", "ACTIVE", IMAGE))
    assert started(out.effects) == ["srv-001", "srv-002", "srv-003"] and shell.r.wave == 1
    for sid in ("srv-001", "srv-002", "srv-003"):
        shell.feed(f.Started(sid, "CR-" + sid[-3:] + "AAA"))
    out = shell.feed(f.Ended("srv-002", True))
    assert started(out.effects) == ["srv-004"]  # one slot freed; a verifying server holds none


def test_health_gate_waits_then_fails_after_the_timeout() -> None:
    r = make(n=3, spec="1,rest", max_failures=1).rollout
    r = f.step(r, f.Started("srv-000", "CR-000AAA"), NOW).rollout
    r = f.step(r, f.Ended("srv-000", True), NOW).rollout
    assert r.server("srv-000").phase is S.VERIFYING  # type: ignore[union-attr]
    soon = f.step(r, f.Health("srv-000", "SHUTOFF", IMAGE), NOW + timedelta(minutes=1))
    assert soon.rollout.version == r.version and kinds(soon.effects) == ["CheckHealth"]
    wrong = f.step(r, f.Health("srv-000", "ACTIVE", "old-image"), NOW + timedelta(minutes=11))
    s = wrong.rollout.server("srv-000")
    assert s is not None and s.phase is S.FAILED and "image old-image" in s.reason
    assert wrong.rollout.phase is P.HALTED and not started(wrong.effects)


def test_failure_in_wave_1_halts_and_wave_2_never_starts_until_resume() -> None:
    shell = Shell(make(n=12, approval=ONE_APPROVAL), fail={"srv-001"})
    shell.feed(f.Approve(APP))
    shell.settle()
    r = shell.r
    assert r.phase is P.HALTED and r.wave == 1
    assert phases(r)["srv-001"] is S.FAILED and phases(r)["srv-002"] is S.HEALTHY  # the running one finished
    assert all(phases(r)[f"srv-{i:03d}"] is S.PENDING for i in range(3, 12))
    assert [x.kind for x in shell.replies] == ["approved", "failure", "halted"]
    assert "Ecs.1002" in (r.server("srv-001").reason)  # type: ignore[union-attr]
    shell.feed(f.Click("resume", REQ))
    assert shell.r.phase is P.HALTED and "another approver" in shell.pending[-1].message  # type: ignore[union-attr]
    shell.feed(f.Click("resume", APP))
    assert shell.r.phase is P.RUNNING and shell.r.failures_forgiven == 1
    shell.settle()
    assert shell.r.phase is P.DONE and shell.r.failures == 1
    assert Counter(phases(shell.r).values()) == {S.HEALTHY: 11, S.FAILED: 1}


def test_max_failures_two_keeps_going_after_one() -> None:
    shell = Shell(make(n=12, max_failures=2), fail={"srv-001"})
    shell.settle()
    assert shell.r.phase is P.DONE and shell.r.failures == 1


def test_abort_lets_running_changes_finish_and_starts_none() -> None:
    shell = Shell(make(n=12, parallel=4))
    shell.feed(f.Started("srv-000", "CR-000AAA"))
    shell.feed(f.Ended("srv-000", True))
    shell.feed(f.Health("srv-000", "ACTIVE", IMAGE))
    shell.feed(f.Started("srv-001", "CR-001AAA"))  # wave 2 = srv-001, srv-002; both started
    shell.feed(f.Started("srv-002", "CR-002AAA"))
    shell.pending.clear()
    out = shell.feed(f.Click("abort", OTHER))
    assert "Only approvers" in out.effects[0].message  # type: ignore[union-attr]
    out = shell.feed(f.Click("abort", REQ))  # the requester may always stop
    r = shell.r
    assert r.phase is P.ABORTED and not r.finished
    assert phases(r)["srv-001"] is S.RUNNING and phases(r)["srv-003"] is S.SKIPPED
    out = shell.feed(f.Ended("srv-001", True))
    assert kinds(out.effects)[0] == "CheckHealth" and not started(out.effects)
    shell.feed(f.Health("srv-001", "ACTIVE", IMAGE))
    out = shell.feed(f.Ended("srv-002", False, "boom"))
    assert shell.r.phase is P.ABORTED and not started(out.effects) and shell.r.finished  # the last one ended
    assert [e.kind for e in out.effects if isinstance(e, f.ThreadReply)] == ["failure", "end"]  # no halt
    assert Counter(phases(shell.r).values()) == {S.HEALTHY: 2, S.FAILED: 1, S.SKIPPED: 9}
    assert not started(f.step(shell.r, f.Recover(), NOW).effects)


def test_abort_with_nothing_in_flight_ends_at_once() -> None:
    shell = Shell(make(n=3, spec="1,rest", pause_between_waves=True))
    shell.settle()
    assert shell.r.phase is P.WAITING
    out = shell.feed(f.Click("abort", APP))
    assert "Only approvers" in out.effects[0].message  # type: ignore[union-attr]  # self-service: no approvers
    out = shell.feed(f.Click("abort", REQ))
    assert shell.r.phase is P.ABORTED and shell.r.finished
    assert [e.kind for e in out.effects if isinstance(e, f.ThreadReply)] == ["aborted", "end"]
    assert any(isinstance(e, f.NotifyChannels) and e.kind == "end" for e in out.effects)


def test_pause_between_waves_waits_for_continue() -> None:
    shell = Shell(make(n=3, spec="1,rest", approval=ONE_APPROVAL, pause_between_waves=True))
    shell.feed(f.Approve(APP))
    shell.settle()
    assert shell.r.phase is P.WAITING and shell.r.wave == 0
    out = shell.feed(f.Click("continue", REQ))
    assert "another approver" in out.effects[0].message  # type: ignore[union-attr]
    out = shell.feed(f.Click("continue", APP2))
    assert shell.r.phase is P.RUNNING and shell.r.wave == 1 and started(out.effects) == ["srv-001", "srv-002"]
    shell.settle()
    assert shell.r.phase is P.DONE  # no Continue after the last wave


def test_pause_and_resume() -> None:
    shell = Shell(make(n=12, approval=ONE_APPROVAL))
    shell.feed(f.Approve(APP))
    shell.pending.clear()
    shell.feed(f.Started("srv-000", "CR-000AAA"))
    shell.feed(f.Click("pause", REQ))
    assert shell.r.phase is P.PAUSED
    shell.feed(f.Ended("srv-000", True))
    out = shell.feed(f.Health("srv-000", "ACTIVE", IMAGE))
    assert not started(out.effects) and shell.r.wave == 0
    out = shell.feed(f.Click("resume", APP))
    assert shell.r.phase is P.RUNNING and started(out.effects) == ["srv-001", "srv-002"]


@pytest.mark.parametrize(
    ("phase", "action", "allowed"),
    [
        (P.RUNNING, "continue", False),
        (P.RUNNING, "pause", True),
        (P.RUNNING, "resume", False),
        (P.RUNNING, "abort", True),
        (P.RUNNING, "rollback", False),
        (P.WAITING, "continue", True),
        (P.WAITING, "pause", True),
        (P.PAUSED, "pause", False),
        (P.PAUSED, "resume", True),
        (P.HALTED, "resume", True),
        (P.HALTED, "abort", True),
        (P.HALTED, "pause", False),
        (P.ABORTED, "abort", False),
        (P.ABORTED, "resume", False),
        (P.DONE, "abort", False),
        (P.DONE, "rollback", True),
    ],
)
def test_click_table(phase: P, action: f.Action, allowed: bool) -> None:
    r = make(n=3, approval=ONE_APPROVAL).rollout.model_copy(update={"phase": phase})
    r.servers[0].phase, r.servers[0].backup_image_id = S.FAILED, "bk-0"
    out = f.step(r, f.Click(action, APP), NOW)
    refused = [e for e in out.effects if isinstance(e, f.Refuse)]
    assert (not refused) is allowed, refused
    assert any(isinstance(e, f.Audit) and e.action == action for e in out.effects) is allowed


def test_rollback_failed_servers_with_backups() -> None:
    shell = Shell(make(n=12, spec="1,rest", approval=ONE_APPROVAL), fail={"srv-000"})
    shell.feed(f.Approve(APP))
    shell.settle()
    assert shell.r.phase is P.HALTED
    out = shell.feed(f.Click("rollback", APP2))
    assert [(e.server_id, e.backup_image_id) for e in out.effects if isinstance(e, f.RollBack)] == [
        ("srv-000", "bk-srv-000")
    ]
    shell.feed(f.RolledBack("srv-000", True))
    assert phases(shell.r)["srv-000"] is S.ROLLED_BACK and shell.r.failures == 1
    out = shell.feed(f.Click("rollback", APP2))
    assert "No failed server" in out.effects[0].message  # type: ignore[union-attr]


def test_duplicates_and_strays_change_nothing() -> None:
    r = make(n=3).rollout
    for event in (
        f.Started("nope", "CR-XXXXXX"),
        f.Ended("srv-001", True),  # still pending: an end it never started
        f.Health("srv-000", "ACTIVE", IMAGE),
        f.RolledBack("srv-000", True),
        f.NotStarted("srv-002"),
    ):
        out = f.step(r, event, NOW)
        assert out.rollout == r and not [e for e in out.effects if not isinstance(e, f.CheckHealth)]
    once = f.step(r, f.Started("srv-000", "CR-000AAA"), NOW).rollout
    assert f.step(once, f.Started("srv-000", "CR-000BBB"), NOW).rollout.server("srv-000").request_id == "CR-000AAA"  # type: ignore[union-attr]


# --- restart safety ---


@pytest.mark.parametrize(
    ("phase", "effect"), [(P.RUNNING, "StartServer"), (P.ABORTED, "SettleStart"), (P.PAUSED, "SettleStart")]
)
def test_recover_restarts_only_what_may_start(phase: P, effect: str) -> None:
    r = make(n=3).rollout.model_copy(update={"phase": phase})
    assert r.servers[0].phase is S.STARTING
    r.servers[1].phase = S.VERIFYING
    out = f.step(r, f.Recover(), NOW)
    assert kinds(out.effects) == [effect, "CheckHealth", "UpdateStatus"] and out.rollout == r
    settled = f.step(r, f.NotStarted("srv-000"), NOW).rollout
    expected = S.FAILED if phase is P.RUNNING else S.SKIPPED
    assert settled.server("srv-000").phase is expected  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", range(25))
def test_a_kill_at_any_point_resumes_exactly(seed: int) -> None:
    """Random failures and kills: the JSON document alone carries the rollout; no server starts twice."""
    rng = random.Random(seed)
    fail = {f"srv-{i:03d}" for i in range(20) if rng.random() < 0.1}
    shell = Shell(make(n=20, spec="1,25%,rest", parallel=3, max_failures=3), fail=fail)
    created: set[str] = set()
    for _ in range(2000):
        if rng.random() < 0.15:  # SIGKILL: lose the effects not carried out, reload the saved document
            shell.r = f.Rollout.model_validate_json(shell.r.model_dump_json())
            shell.pending = list(f.step(shell.r, f.Recover(), shell.now).effects)
        if not shell.pending:
            running = [s.id for s in shell.r.servers if s.phase is S.RUNNING]
            if running:
                sid = rng.choice(running)
                shell.feed(f.Ended(sid, sid not in fail, "boom"))
                continue
            if shell.r.phase is P.HALTED:
                shell.feed(f.Click("resume", APP))  # self-service: the requester would; an approver may not
                shell.feed(f.Click("resume", REQ))
                continue
            break
        e = shell.pending.pop(0)
        if isinstance(e, f.StartServer | f.SettleStart):
            if isinstance(e, f.StartServer):
                created.add(e.server_id)  # the store creates the request once per key
            if e.server_id in created:
                shell.feed(f.Started(e.server_id, "CR-" + e.server_id[-3:] + "AAA"))
            else:
                shell.feed(f.NotStarted(e.server_id))
        elif isinstance(e, f.CheckHealth):
            shell.feed(f.Health(e.server_id, "ACTIVE", IMAGE))
    r = shell.r
    assert r.phase is P.DONE and r.finished, r.phase
    assert all(s.phase in (S.HEALTHY, S.FAILED) for s in r.servers)
    assert {s.id for s in r.servers if s.phase is S.FAILED} == fail
    assert created == {s.id for s in r.servers}


def test_eta_and_counts() -> None:
    r = make(n=12, parallel=2).rollout
    assert f.eta(r, NOW) is None
    r = f.step(r, f.Started("srv-000", "CR-000AAA"), NOW).rollout
    r = f.step(r, f.Ended("srv-000", True), NOW + timedelta(minutes=4)).rollout
    r = f.step(r, f.Health("srv-000", "ACTIVE", IMAGE), NOW + timedelta(minutes=4)).rollout
    left = f.eta(r, NOW + timedelta(minutes=4))
    assert left == timedelta(minutes=4) * 6  # 11 to go, 2 at a time; 2 just started
    assert r.counts()[S.HEALTHY] == 1 and r.counts()[S.STARTING] == 2
