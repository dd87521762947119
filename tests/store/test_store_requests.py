import threading
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from bot.domain.request import InvalidTransition, RequestState
from bot.store import RequestNotFound, ServerBusyError, Store, StoreError

S = RequestState


def test_create_and_get_round_trip(store, new_request):
    req = new_request(
        notify_channels=["C01INCIDNT1", "C01OTHER001"],
        expires_at=datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        ticket="INC-1",
        next_poll_at=12.5,
        stop_first=True,
    )
    created = store.create(req, actor="U01REQ0001")
    assert created == req
    assert store.get(req.id) == req
    assert store.get("CR-NOPE22") is None
    events = store.audit(req.id)
    assert [(e.action, e.from_state, e.to_state, e.actor) for e in events] == [
        ("created", None, S.PENDING_APPROVAL, "U01REQ0001")
    ]


def test_datetimes_are_stored_as_iso_utc_text(store, new_request):
    req = store.create(new_request(expires_at=datetime(2030, 1, 1, tzinfo=UTC)), actor="u")
    row = next(store.db.query("SELECT created_at, expires_at, notify_channels FROM requests WHERE id=?", [req.id]))
    assert row["expires_at"] == "2030-01-01T00:00:00.000000+00:00"
    assert row["created_at"].endswith("+00:00")
    assert row["notify_channels"] == "[]"


def test_schema_is_idempotent(db_path, new_request):
    with Store(db_path) as a:
        req = a.create(new_request(), actor="u")
    with Store(db_path) as b:
        assert b.get(req.id) == req


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "no" / "such" / "x.db")


def test_pragmas(store):
    assert next(store.db.query("PRAGMA journal_mode"))["journal_mode"] == "wal"
    assert next(store.db.query("PRAGMA secure_delete"))["secure_delete"] == 1
    assert next(store.db.query("PRAGMA foreign_keys"))["foreign_keys"] == 1
    assert next(store.db.query("PRAGMA busy_timeout"))["timeout"] >= 1000


def test_one_live_request_per_server(store, new_request):
    first = store.create(new_request(), actor="u")
    with pytest.raises(ServerBusyError) as exc:
        store.create(new_request(), actor="u")
    assert exc.value.live_request_id == first.id
    assert first.id in str(exc.value)
    # another server is fine
    store.create(new_request(server_id="srv-2"), actor="u")
    # a terminal state frees the server
    assert store.transition(first.id, to=S.CANCELLED, expected=S.PENDING_APPROVAL, actor="u")
    again = store.create(new_request(), actor="u")
    assert store.live_for_server("srv-1") == again


def test_count_live_counts_without_reading(store, new_request):
    assert store.count_live() == 0
    first = store.create(new_request(), actor="u")
    store.create(new_request(server_id="srv-2"), actor="u")
    assert store.count_live() == len(store.live()) == 2
    store.transition(first.id, to=S.CANCELLED, expected=S.PENDING_APPROVAL, actor="u")
    assert store.count_live() == len(store.live()) == 1


def test_busy_even_when_the_live_request_moved_on(store, new_request):
    first = store.create(new_request(), actor="u")
    store.transition(first.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="a")
    store.transition(first.id, to=S.SUBMITTING, expected=S.APPROVED, actor="t")
    with pytest.raises(ServerBusyError):
        store.create(new_request(), actor="u")


def test_transition_sets_fields_and_audits(store, new_request):
    req = store.create(new_request(), actor="u")
    moved = store.transition(
        req.id,
        to=S.APPROVED,
        expected=S.PENDING_APPROVAL,
        actor="U01APR0001",
        detail="looks fine",
        decided_by="U01APR0001",
    )
    assert moved.state is S.APPROVED and moved.decided_by == "U01APR0001"
    assert moved.updated_at >= req.updated_at
    assert store.get(req.id) == moved
    last = store.audit(req.id)[-1]
    assert (last.action, last.from_state, last.to_state, last.actor, last.detail) == (
        "approved",
        S.PENDING_APPROVAL,
        S.APPROVED,
        "U01APR0001",
        "looks fine",
    )


def test_transition_with_several_expected_states(store, new_request):
    req = store.create(new_request(), actor="u")
    store.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="a")
    got = store.transition(req.id, to=S.CANCELLED, expected=[S.APPROVED, S.STOPPING], actor="u")
    assert got.state is S.CANCELLED and got.finished_at is not None


def test_lost_race_returns_none_without_audit(store, new_request):
    req = store.create(new_request(), actor="u")
    assert store.transition(req.id, to=S.REJECTED, expected=S.PENDING_APPROVAL, actor="a")
    assert store.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="b") is None
    assert store.transition("CR-NOPE22", to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="b") is None
    assert [e.action for e in store.audit(req.id)] == ["created", "rejected"]


def test_invalid_transition_is_a_bug_not_a_race(store, new_request):
    req = store.create(new_request(), actor="u")
    with pytest.raises(InvalidTransition):
        store.transition(req.id, to=S.RUNNING, expected=S.PENDING_APPROVAL, actor="x")
    with pytest.raises(InvalidTransition):
        store.transition(req.id, to=S.CANCELLED, expected=[S.APPROVED, S.RUNNING], actor="x")
    assert store.get(req.id).state is S.PENDING_APPROVAL


def test_transition_refuses_unknown_or_fixed_fields_and_bad_values(store, new_request):
    req = store.create(new_request(), actor="u")
    with pytest.raises(ValueError, match="not fields"):
        store.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="a", password="x")
    with pytest.raises(ValueError, match="cannot be set"):
        store.update(req.id, state=S.APPROVED)
    with pytest.raises(ValidationError):
        store.update(req.id, poll_failures=-1)
    assert store.get(req.id) == req
    assert len(store.audit(req.id)) == 1


def test_update_non_state_fields(store, new_request):
    req = store.create(new_request(), actor="u")
    got = store.update(req.id, status_channel="C01STATUS01", status_ts="1700000000.000100", next_poll_at=99.5)
    assert (got.status_ts, got.next_poll_at, got.state) == ("1700000000.000100", 99.5, S.PENDING_APPROVAL)
    assert store.get(req.id) == got
    with pytest.raises(RequestNotFound):
        store.update("CR-NOPE22", status_ts="1")


def test_queries(store, new_request):
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    a = store.create(new_request(server_id="a", created_at=t0, expires_at=t0 + timedelta(minutes=5)), actor="u")
    b = store.create(new_request(server_id="b", created_at=t0 + timedelta(seconds=1)), actor="u")
    c = store.create(new_request(server_id="c", created_at=t0 + timedelta(seconds=2)), actor="u")
    store.transition(b.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="x")
    store.transition(c.id, to=S.REJECTED, expected=S.PENDING_APPROVAL, actor="x")
    assert [r.id for r in store.live()] == [a.id, b.id]
    assert [r.id for r in store.in_states(S.APPROVED, S.REJECTED)] == [b.id, c.id]
    assert store.in_states() == []
    assert [r.id for r in store.recent(2)] == [c.id, b.id]
    assert store.live_for_server("c") is None
    assert store.due_for_expiry(t0 + timedelta(minutes=4)) == []
    assert [r.id for r in store.due_for_expiry(t0 + timedelta(minutes=5))] == [a.id]


def test_add_approval(store, new_request):
    req = store.create(new_request(approvals_required=2), actor="u")
    one = store.add_approval(req.id, "U01APR0001", actor="U01APR0001")
    assert one.approvals == ["U01APR0001"]
    assert store.add_approval(req.id, "U01APR0001", actor="U01APR0001") is None  # twice
    two = store.add_approval(req.id, "U01APR0002", actor="U01APR0002")
    assert two.approvals == ["U01APR0001", "U01APR0002"]
    store.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="U01APR0002")
    assert store.add_approval(req.id, "U01APR0003", actor="U01APR0003") is None  # no longer pending
    assert store.add_approval("CR-NOPE22", "U01APR0003", actor="x") is None
    actions = [e.action for e in store.audit(req.id)]
    assert actions == ["created", "approval", "approval", "approved"]


def test_record_and_audit_order(store, new_request):
    req = store.create(new_request(), actor="u")
    store.record(req.id, actor="U01REQ0001", action="refused", detail="tried to approve own request")
    events = store.audit(req.id)
    assert events[-1].action == "refused" and events[-1].from_state is None
    with pytest.raises(RequestNotFound):
        store.record("CR-NOPE22", actor="x", action="y")


# --- races: two Store objects (two connections) on one file, two threads ----------------------------------------------


def _race(fns):
    barrier = threading.Barrier(len(fns))
    results = [None] * len(fns)
    errors = []

    def run(i, fn):
        try:
            barrier.wait(timeout=5)
            results[i] = fn()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors, errors
    return results


def test_transition_race_exactly_one_wins(db_path, new_request):
    a, b = Store(db_path), Store(db_path)
    try:
        for i in range(15):
            req = a.create(new_request(server_id=f"srv-{i}"), actor="u")
            results = _race(
                [
                    lambda r=req: a.transition(r.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor="A"),
                    lambda r=req: b.transition(r.id, to=S.REJECTED, expected=S.PENDING_APPROVAL, actor="B"),
                ]
            )
            winners = [r for r in results if r is not None]
            assert len(winners) == 1
            assert a.get(req.id).state is winners[0].state
            transitions = [e for e in a.audit(req.id) if e.to_state is not None and e.from_state is not None]
            assert len(transitions) == 1 and transitions[0].to_state is winners[0].state
    finally:
        a.close()
        b.close()


def test_same_transition_race_in_one_store_from_threads(store, new_request):
    req = store.create(new_request(), actor="u")
    results = _race(
        [
            lambda i=i: store.transition(req.id, to=S.APPROVED, expected=S.PENDING_APPROVAL, actor=f"T{i}")
            for i in range(8)
        ]
    )
    assert sum(r is not None for r in results) == 1
    assert [e.action for e in store.audit(req.id)].count("approved") == 1


def test_create_race_one_live_per_server(db_path, new_request):
    a, b = Store(db_path), Store(db_path)
    try:
        outcomes = []

        def attempt(s):
            try:
                return s.create(new_request(), actor="u")
            except ServerBusyError as exc:
                outcomes.append(exc)
                return None

        results = _race([lambda: attempt(a), lambda: attempt(b)])
        created = [r for r in results if r is not None]
        assert len(created) == 1 and len(outcomes) == 1
        assert outcomes[0].live_request_id == created[0].id
    finally:
        a.close()
        b.close()


def test_add_approval_race_counts_each_approver_once(db_path, new_request):
    a, b = Store(db_path), Store(db_path)
    try:
        req = a.create(new_request(approvals_required=3), actor="u")
        users = ["U01APR0001", "U01APR0002", "U01APR0001", "U01APR0002", "U01APR0003", "U01APR0003"]
        stores = [a, b] * 3
        _race([lambda s=s, u=u: s.add_approval(req.id, u, actor=u) for s, u in zip(stores, users, strict=True)])
        final = a.get(req.id)
        assert sorted(final.approvals) == ["U01APR0001", "U01APR0002", "U01APR0003"]
        assert [e.action for e in a.audit(req.id)].count("approval") == 3
    finally:
        a.close()
        b.close()
