from datetime import UTC, datetime, timedelta, timezone
from itertools import product

import pytest
from pydantic import ValidationError

from bot.domain.request import (
    ID_ALPHABET,
    ID_PATTERN,
    LIVE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    AuditEvent,
    ChangeRequest,
    InvalidTransition,
    LoginMethod,
    RequestState,
    StopType,
    can_transition,
    new_request_id,
)
from tests.support.requests import change_request

S = RequestState

ALLOWED = {
    (S.PENDING_APPROVAL, S.APPROVED),
    (S.PENDING_APPROVAL, S.REJECTED),
    (S.PENDING_APPROVAL, S.CANCELLED),
    (S.PENDING_APPROVAL, S.EXPIRED),
    (S.APPROVED, S.STOPPING),
    (S.APPROVED, S.BACKING_UP),
    (S.APPROVED, S.SUBMITTING),
    (S.APPROVED, S.CANCELLED),
    (S.APPROVED, S.FAILED),
    (S.STOPPING, S.BACKING_UP),
    (S.STOPPING, S.SUBMITTING),
    (S.STOPPING, S.FAILED),
    (S.BACKING_UP, S.SUBMITTING),
    (S.BACKING_UP, S.FAILED),
    (S.STOPPING, S.CANCELLED),
    (S.SUBMITTING, S.RUNNING),
    (S.SUBMITTING, S.RECONCILING),
    (S.SUBMITTING, S.FAILED),
    (S.RECONCILING, S.RUNNING),
    (S.RECONCILING, S.SUCCEEDED),
    (S.RECONCILING, S.FAILED),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
}


make = change_request


@pytest.mark.parametrize(("a", "b"), sorted(ALLOWED))
def test_every_allowed_transition(a, b):
    assert can_transition(a, b)
    assert b in TRANSITIONS[a]


def test_exactly_the_allowed_transitions_and_nothing_else():
    table = {(a, b) for a, b in product(RequestState, RequestState) if can_transition(a, b)}
    assert table == ALLOWED


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.PENDING_APPROVAL, S.RUNNING),
        (S.PENDING_APPROVAL, S.SUBMITTING),
        (S.APPROVED, S.SUCCEEDED),
        (S.RUNNING, S.CANCELLED),
        (S.SUBMITTING, S.CANCELLED),
        (S.SUCCEEDED, S.FAILED),
        (S.FAILED, S.RUNNING),
        (S.EXPIRED, S.APPROVED),
        (S.REJECTED, S.APPROVED),
        (S.APPROVED, S.APPROVED),
        (S.BACKING_UP, S.CANCELLED),
        (S.BACKING_UP, S.RUNNING),
    ],
)
def test_forbidden_transitions(a, b):
    assert not can_transition(a, b)


def test_can_transition_accepts_strings_and_rejects_nonsense():
    assert can_transition("pending_approval", "approved")
    assert not can_transition("pending_approval", "bogus")
    assert not can_transition("bogus", "approved")


def test_live_and_terminal_partition_the_states():
    assert set(RequestState) == LIVE_STATES | TERMINAL_STATES
    assert not LIVE_STATES & TERMINAL_STATES
    assert {S.SUCCEEDED, S.FAILED, S.REJECTED, S.CANCELLED, S.EXPIRED} == TERMINAL_STATES
    for s in TERMINAL_STATES:
        assert not TRANSITIONS[s]


def test_invalid_transition_message():
    err = InvalidTransition(S.RUNNING, S.CANCELLED)
    assert isinstance(err, ValueError)
    assert "running" in str(err) and "cancelled" in str(err)


def test_request_ids_are_unambiguous():
    ids = {new_request_id() for _ in range(500)}
    assert len(ids) > 490
    for rid in ids:
        assert ID_PATTERN.match(rid)
        assert not set(rid[3:]) & set("01OIL")
    assert set(ID_ALPHABET).isdisjoint("01OIL")


def test_defaults_and_live():
    r = make()
    assert r.state is S.PENDING_APPROVAL
    assert r.is_live and not r.is_terminal
    assert r.created_at.tzinfo is not None
    assert r.login is LoginMethod.KEYPAIR and r.stop_type is StopType.SOFT
    assert r.model_copy(update={"state": S.SUCCEEDED}).is_live is False


def test_reason_is_stripped_and_bounded():
    assert make(reason="  disk full \n").reason == "disk full"
    with pytest.raises(ValidationError):
        make(reason="   ")
    with pytest.raises(ValidationError):
        make(reason="x" * 501)
    assert len(make(reason="x" * 500).reason) == 500


def test_naive_datetime_refused_and_aware_converted_to_utc():
    with pytest.raises(ValidationError):
        make(expires_at=datetime(2030, 1, 1, 12, 0))
    r = make(expires_at=datetime(2030, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=8))))
    assert r.expires_at == datetime(2030, 1, 1, 4, 0, tzinfo=UTC)
    assert r.expires_at.utcoffset() == timedelta(0)


def test_login_consistency():
    with pytest.raises(ValidationError):
        make(keyname=None)  # key pair login without a key
    with pytest.raises(ValidationError):
        make(login=LoginMethod.PASSWORD, keyname="ops-key")  # password login still naming a key
    r = make(login=LoginMethod.PASSWORD, keyname=None, has_password=True)
    assert r.keyname is None


def test_approvals_required_at_least_one_and_no_password_field():
    with pytest.raises(ValidationError):
        make(approvals_required=0)
    with pytest.raises(ValidationError):
        make(password="hunter2")  # extra fields are forbidden; there is no password field at all
    assert not any("pass" in name and name != "has_password" for name in ChangeRequest.model_fields)


def test_frozen_with_model_copy():
    r = make()
    with pytest.raises(ValidationError):
        r.state = S.APPROVED
    assert r.model_copy(update={"state": S.APPROVED}).state is S.APPROVED


def test_fingerprint_is_stable_and_shaped():
    a = make()
    b = make(id=a.id)
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 9 and a.fingerprint()[4] == "-"
    # a known value: a changed canonical form would silently invalidate approvals of requests in flight
    assert a.fingerprint() == "f994-70a8"


@pytest.mark.parametrize(
    "change",
    [
        {"server_id": "srv-2"},
        {"target_image_id": "img-2"},
        {"keyname": "other-key"},
        {"login": LoginMethod.PASSWORD, "keyname": None},
        {"stop_first": True},
        {"stop_type": StopType.HARD},
        {"backup_wanted": True},
    ],
)
def test_fingerprint_changes_with_each_approved_parameter(change):
    a = make()
    assert make(**change).fingerprint() != a.fingerprint()


def test_fingerprint_without_backup_is_unchanged():
    """Requests stored before backups existed keep their fingerprint: `backup` is only hashed when wanted."""
    assert "backup" not in make().approved_parameters()
    assert make(backup_wanted=True).approved_parameters()["backup"] is True


def test_rollback_of_is_a_request_id():
    with pytest.raises(ValueError):
        make(rollback_of="not-an-id")
    assert make(rollback_of="CR-ABCDEF").rollback_of == "CR-ABCDEF"


def test_fingerprint_has_password_sensitivity():
    a = make(login=LoginMethod.PASSWORD, keyname=None, has_password=False)
    b = make(login=LoginMethod.PASSWORD, keyname=None, has_password=True)
    assert a.fingerprint() != b.fingerprint()


@pytest.mark.parametrize(
    "change",
    [
        {"reason": "another reason"},
        {"ticket": "INC-1"},
        {"notify_channels": ["C01INCIDNT1"]},
        {"status_ts": "123.456"},
        {"server_name": "renamed"},
        {"state": S.RUNNING},
        {"backup_image_id": "img-9", "backup_job_id": "j", "rollback_of": "CR-ABCDEF"},
    ],
)
def test_fingerprint_ignores_other_fields(change):
    assert make(**change).fingerprint() == make().fingerprint()


def test_summary_is_one_line():
    r = make(reason="multi\nline")
    s = r.summary()
    assert "\n" not in s
    assert r.id in s and "web-01" in s and "ubuntu-22.04" in s and "pending approval" in s


def test_audit_event_model():
    e = AuditEvent(
        request_id="CR-ABCDEF",
        at=datetime.now(UTC),
        actor="U1",
        action="approved",
        from_state="pending_approval",
        to_state="approved",
    )
    assert e.from_state is S.PENDING_APPROVAL and e.detail == ""
