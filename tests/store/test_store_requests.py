import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from bot.domain.request import InvalidTransition, RequestState
from bot.store import RequestNotFound, ServerBusyError

S = RequestState


async def test_create_and_get_round_trip(store, new_request):
    req = new_request(
        notify_channels=["C01INCIDNT1", "C01OTHER001"],
        expires_at=datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        ticket="INC-1",
        next_poll_at=12.5,
        stop_first=True,
    )
    created = await store.create(req, actor="U01REQ0001")
    assert created == req
    assert await store.get(req.id) == req
    assert await store.get("CR-NOPE22") is None
    events = await store.audit(req.id)
    assert [(e.action, e.from_state, e.to_state, e.actor) for e in events] == [
        ("created", None, S.PENDING_APPROVAL, "U01REQ0001")
    ]


async def test_schema_is_idempotent(connect, new_request):
    a = connect()
    req = await a.create(new_request(), actor="u")
    await a.aclose()
    b = connect()
    assert await b.get(req.id) == req


async def test_one_live_request_per_server(store, new_request):
    first = await store.create(new_request(), actor="u")
    with pytest.raises(ServerBusyError) as exc:
        await store.create(new_request(), actor="u")
    assert exc.value.live_request_id == first.id
    assert first.id in str(exc.value)
    # another server is fine
    await store.create(new_request(server_id="srv-2"), actor="u")
    # a terminal state frees the server
    assert await store.transition(first.id, to=S.CANCELLED, expected=S.PENDING_APPROVAL, actor="u")
    again = await store.create(new_request(), actor="u")
    assert await store.live_for_server("srv-1") == again


async def test_count_live_counts_without_reading(store, new_request):
    assert await store.count_live() == 0
    first = await store.create(new_request(), actor="u")
    await store.create(new_request(server_id="srv-2"), actor="u")
    assert await store.count_live() == len(await store.live()) == 2
    await store.transition(first.id, to=S.CANCELLED, expected=S.PENDING_APPROVAL, actor="u")
    assert await store.count_live() == len(await store.live()) == 1


async def test_busy_even_when_the_live_request_moved_on(store, new_request):
    first = await store.create(new_request(), actor="u")
    await store.transition(first.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="a")
    await store.transition(first.id, to=S.SUBMITTING, expected=S.APPROVED, actor="t")
    with pytest.raises(ServerBusyError):
        await store.create(new_request(), actor="u")


async def test_transition_sets_fields_and_audits(store, new_request):
    req = await store.create(new_request(), actor="u")
    moved = await store.transition(
        req.id,
        to=S.APPROVED,
        expected=S.PENDING_APPROVAL,
        actor="U01APR0001",
        detail="looks fine",
        decided_by="U01APR0001",
    )
    assert moved.state is S.APPROVED and moved.decided_by == "U01APR0001"
    assert moved.updated_at >= req.updated_at
    assert await store.get(req.id) == moved
    last = (await store.audit(req.id))[-1]
    assert (last.action, last.from_state, last.to_state, last.actor, last.detail) == (
        "approved",
        S.PENDING_APPROVAL,
        S.APPROVED,
        "U01APR0001",
        "looks fine",
    )


async def test_transition_with_several_expected_states(store, new_request):
    req = await store.create(new_request(), actor="u")
    await store.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="a")
    got = await store.transition(req.id, to=S.CANCELLED, expected=[S.APPROVED, S.STOPPING], actor="u")
    assert got.state is S.CANCELLED and got.finished_at is not None


async def test_lost_race_returns_none_without_audit(store, new_request):
    req = await store.create(new_request(), actor="u")
    assert await store.transition(req.id, to=S.REJECTED, expected=S.PENDING_APPROVAL, actor="a")
    assert await store.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="b") is None
    assert await store.transition("CR-NOPE22", to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="b") is None
    assert [e.action for e in await store.audit(req.id)] == ["created", "rejected"]


async def test_invalid_transition_is_a_bug_not_a_race(store, new_request):
    req = await store.create(new_request(), actor="u")
    with pytest.raises(InvalidTransition):
        await store.transition(req.id, to=S.RUNNING, expected=S.PENDING_APPROVAL, actor="x")
    with pytest.raises(InvalidTransition):
        await store.transition(req.id, to=S.CANCELLED, expected=[S.APPROVED, S.RUNNING], actor="x")
    assert (await store.get(req.id)).state is S.PENDING_APPROVAL


async def test_transition_refuses_unknown_or_fixed_fields_and_bad_values(store, new_request):
    req = await store.create(new_request(), actor="u")
    with pytest.raises(ValueError, match="not fields"):
        await store.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="a", password="x")
    with pytest.raises(ValueError, match="cannot be set"):
        await store.update(req.id, state=S.APPROVED)
    with pytest.raises(ValidationError):
        await store.update(req.id, poll_failures=-1)
    assert await store.get(req.id) == req
    assert len(await store.audit(req.id)) == 1


async def test_update_non_state_fields(store, new_request):
    req = await store.create(new_request(), actor="u")
    got = await store.update(req.id, status_channel="C01STATUS01", status_ts="1700000000.000100", next_poll_at=99.5)
    assert (got.status_ts, got.next_poll_at, got.state) == ("1700000000.000100", 99.5, S.PENDING_APPROVAL)
    assert await store.get(req.id) == got
    with pytest.raises(RequestNotFound):
        await store.update("CR-NOPE22", status_ts="1")


async def test_queries(store, new_request):
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    a = await store.create(new_request(server_id="a", created_at=t0, expires_at=t0 + timedelta(minutes=5)), actor="u")
    b = await store.create(new_request(server_id="b", created_at=t0 + timedelta(seconds=1)), actor="u")
    c = await store.create(new_request(server_id="c", created_at=t0 + timedelta(seconds=2)), actor="u")
    await store.transition(b.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="x")
    await store.transition(c.id, to=S.REJECTED, expected=S.PENDING_APPROVAL, actor="x")
    assert [r.id for r in await store.live()] == [a.id, b.id]
    assert [r.id for r in await store.in_states(S.APPROVED, S.REJECTED)] == [b.id, c.id]
    assert await store.in_states() == []
    assert [r.id for r in await store.recent(2)] == [c.id, b.id]
    assert await store.live_for_server("c") is None
    assert await store.due_for_expiry(t0 + timedelta(minutes=4)) == []
    assert [r.id for r in await store.due_for_expiry(t0 + timedelta(minutes=5))] == [a.id]


async def test_add_approval(store, new_request):
    req = await store.create(new_request(approvals_required=2), actor="u")
    one = await store.add_approval(req.id, "U01APR0001", actor="U01APR0001")
    assert one.approvals == ["U01APR0001"]
    assert await store.add_approval(req.id, "U01APR0001", actor="U01APR0001") is None  # twice
    two = await store.add_approval(req.id, "U01APR0002", actor="U01APR0002")
    assert two.approvals == ["U01APR0001", "U01APR0002"]
    await store.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="U01APR0002")
    assert await store.add_approval(req.id, "U01APR0003", actor="U01APR0003") is None  # no longer pending
    assert await store.add_approval("CR-NOPE22", "U01APR0003", actor="x") is None
    actions = [e.action for e in await store.audit(req.id)]
    assert actions == ["created", "approval", "approval", "approved"]


async def test_record_and_audit_order(store, new_request):
    req = await store.create(new_request(), actor="u")
    await store.record(req.id, actor="U01REQ0001", action="refused", detail="tried to approve own request")
    events = await store.audit(req.id)
    assert events[-1].action == "refused" and events[-1].from_state is None
    with pytest.raises(RequestNotFound):
        await store.record("CR-NOPE22", actor="x", action="y")


# --- races: two stores (two connections) on one database, calls in flight together -------------------------------


async def test_transition_race_exactly_one_wins(connect, new_request):
    a, b = connect(), connect()
    for i in range(15):
        req = await a.create(new_request(server_id=f"srv-{i}"), actor="u")
        results = await asyncio.gather(
            a.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="A"),
            b.transition(req.id, to=S.REJECTED, expected=S.PENDING_APPROVAL, actor="B"),
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert (await a.get(req.id)).state is winners[0].state
        transitions = [e for e in await a.audit(req.id) if e.to_state is not None and e.from_state is not None]
        assert len(transitions) == 1 and transitions[0].to_state is winners[0].state


async def test_same_transition_race_in_one_store(store, new_request):
    req = await store.create(new_request(), actor="u")
    results = await asyncio.gather(
        *(store.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor=f"T{i}") for i in range(8))
    )
    assert sum(r is not None for r in results) == 1
    assert [e.action for e in await store.audit(req.id)].count("approved") == 1


async def test_create_race_one_live_per_server(connect, new_request):
    a, b = connect(), connect()
    outcomes = await asyncio.gather(
        a.create(new_request(), actor="u"), b.create(new_request(), actor="u"), return_exceptions=True
    )
    created = [r for r in outcomes if not isinstance(r, BaseException)]
    refused = [r for r in outcomes if isinstance(r, BaseException)]
    assert len(created) == 1 and len(refused) == 1
    assert isinstance(refused[0], ServerBusyError) and refused[0].live_request_id == created[0].id


async def test_add_approval_race_counts_each_approver_once(connect, new_request):
    a, b = connect(), connect()
    req = await a.create(new_request(approvals_required=3), actor="u")
    users = ["U01APR0001", "U01APR0002", "U01APR0001", "U01APR0002", "U01APR0003", "U01APR0003"]
    stores = [a, b] * 3
    await asyncio.gather(*(s.add_approval(req.id, u, actor=u) for s, u in zip(stores, users, strict=True)))
    final = await a.get(req.id)
    assert sorted(final.approvals) == ["U01APR0001", "U01APR0002", "U01APR0003"]
    assert [e.action for e in await a.audit(req.id)].count("approval") == 3


async def test_mark_sent_lets_exactly_one_process_post(connect, new_request):
    """The stamp before a POST is the race two leaders (an old one waking up) would run: one wins, once."""
    a, b = connect(), connect()
    now = datetime.now(UTC)
    req = await a.create(new_request(state=S.SUBMITTING), actor="bot")
    results = await asyncio.gather(
        a.mark_sent(req.id, "submit_sent_at", state=S.SUBMITTING, at=now),
        b.mark_sent(req.id, "submit_sent_at", state=S.SUBMITTING, at=now),
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].submit_sent_at == now
    assert await a.mark_sent(req.id, "submit_sent_at", state=S.SUBMITTING, at=now) is None  # stamped already
    assert await a.mark_sent(req.id, "stop_sent_at", state=S.STOPPING, at=now) is None  # not in that state
    assert await a.mark_sent("CR-NOPE22", "stop_sent_at", state=S.STOPPING, at=now) is None
    with pytest.raises(ValueError, match="mark_sent stamps"):
        await a.mark_sent(req.id, "job_id", state=S.SUBMITTING, at=now)


async def test_mark_sent_writes_its_companions_with_the_stamp_or_not_at_all(connect, new_request):
    """The backup's stamp carries the image's name (how a restarted bot finds the image): both land, once."""
    a, b = connect(), connect()
    now = datetime.now(UTC)
    req = await a.create(new_request(state=S.BACKING_UP, backup_wanted=True), actor="bot")
    results = await asyncio.gather(
        a.mark_sent(req.id, "backup_sent_at", state=S.BACKING_UP, at=now, backup_image_name="ecsbot-a"),
        b.mark_sent(req.id, "backup_sent_at", state=S.BACKING_UP, at=now, backup_image_name="ecsbot-b"),
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    stored = await a.get(req.id)
    assert stored.backup_sent_at == now and stored.backup_image_name == winners[0].backup_image_name
    with pytest.raises(ValueError, match="not fields"):
        await a.mark_sent(req.id, "backup_sent_at", state=S.BACKING_UP, at=now, password="x")
