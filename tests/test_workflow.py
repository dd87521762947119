"""Decisions on a request (submit, approve, reject, cancel, expire) over a real store, policy and secret box."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from bot.domain.policy import Policy
from bot.domain.request import ChangeRequest, LoginMethod, RequestState
from bot.secretbox import SecretBox
from bot.store import ServerBusyError, Store
from bot.workflow import PasswordUnavailable, Workflow, request_secret_key

POLICY = """
approvals_channel = "C01APPROVE1"
[[rules]]
name = "all"
servers = ["*"]
requesters = ["U01REQ0001"]
approvers = ["U01APR0001", "U01APR0002", "S01OPS0001"]
approvals_required = 2
images = ["*"]
"""
CANARY = "Canary-Pw-4242!"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def flow(tmp_path, clock: Clock) -> Workflow:
    store = Store(tmp_path / "bot.db", clock=clock)
    woken: list[int] = []
    workflow = Workflow(
        store, Policy.parse(POLICY), SecretBox(SecretBox.generate_key()), wake=lambda: woken.append(1), now=clock
    )
    workflow.woken = woken  # type: ignore[attr-defined]
    return workflow


def new_request(clock: Clock, **changes) -> ChangeRequest:
    fields = dict(
        requester="U01REQ0001",
        origin_channel="C01CHAN001",
        server_id="srv-1",
        server_name="web-01",
        target_image_id="img-1",
        target_image_name="ubuntu-22.04",
        login=LoginMethod.KEYPAIR,
        keyname="ops-key",
        reason="patch",
        approvals_channel="C01APPROVE1",
        approvals_required=2,
        expires_at=clock.now + timedelta(hours=1),
        created_at=clock.now,
        updated_at=clock.now,
    )
    fields.update(changes)
    return ChangeRequest(**fields)


def test_two_approvals_from_two_people_are_needed(flow: Workflow, clock: Clock) -> None:
    request = flow.submit(new_request(clock))
    assert flow.approve(request.id, "U01REQ0001", []).refused  # never one's own
    first = flow.approve(request.id, "U01APR0001", [])
    assert first.refused is None and first.request.state is RequestState.PENDING_APPROVAL
    assert flow.approve(request.id, "U01APR0001", []).refused  # nobody counts twice
    second = flow.approve(request.id, "U01GRP0009", ["S01OPS0001"])  # a member of an approver group
    assert second.request.state is RequestState.APPROVED and second.request.approvals == ["U01APR0001", "U01GRP0009"]
    assert flow.woken == [1]  # type: ignore[attr-defined]
    assert flow.approve(request.id, "U01APR0002", []).refused  # already approved
    actions = [e.action for e in flow.store.audit(request.id)]
    assert actions.count("approve_refused") == 2


def test_password_is_encrypted_and_gone_after_reject(flow: Workflow, clock: Clock, tmp_path) -> None:
    request = flow.submit(
        new_request(clock, login=LoginMethod.PASSWORD, keyname=None, has_password=True), password=SecretStr(CANARY)
    )
    blob = flow.store.get_secret(request_secret_key(request.id))
    assert blob is not None and CANARY.encode() not in blob
    assert flow.password_for(request.id).get_secret_value() == CANARY
    outcome = flow.reject(request.id, "U01APR0001", [], "not now")
    assert outcome.request.state is RequestState.REJECTED and outcome.request.decision_note == "not now"
    assert flow.password_for(request.id) is None
    flow.store.checkpoint()
    for path in tmp_path.iterdir():
        assert CANARY.encode() not in path.read_bytes()


def test_requester_cancels_until_submission_and_nobody_else_can(flow: Workflow, clock: Clock) -> None:
    request = flow.submit(new_request(clock))
    assert "Only <@U01REQ0001>" in flow.cancel(request.id, "U01APR0001").refused
    assert flow.cancel(request.id, "U01REQ0001").request.state is RequestState.CANCELLED
    assert "too late" in flow.cancel(request.id, "U01REQ0001").refused
    assert "no change request" in flow.cancel("CR-ZZZZZZ", "U01REQ0001").refused.lower()


def test_pending_requests_expire_and_lose_their_password(flow: Workflow, clock: Clock) -> None:
    request = flow.submit(
        new_request(clock, login=LoginMethod.PASSWORD, keyname=None, has_password=True), password=SecretStr(CANARY)
    )
    assert flow.expire_due() == []
    clock.now += timedelta(hours=1, seconds=1)
    expired = flow.expire_due()
    assert [r.id for r in expired] == [request.id] and expired[0].state is RequestState.EXPIRED
    assert flow.password_for(request.id) is None
    assert flow.approve(request.id, "U01APR0001", []).refused


def test_one_live_request_per_server(flow: Workflow, clock: Clock) -> None:
    first = flow.submit(new_request(clock))
    with pytest.raises(ServerBusyError) as busy:
        flow.submit(new_request(clock))
    assert busy.value.live_request_id == first.id


def test_without_a_secret_key_passwords_are_refused_with_a_reason(tmp_path, clock: Clock) -> None:
    workflow = Workflow(Store(tmp_path / "b.db", clock=clock), Policy.parse(POLICY), None, now=clock)
    with pytest.raises(PasswordUnavailable, match="ECSBOT_SECRET_KEY"):
        workflow.submit(
            new_request(clock, login=LoginMethod.PASSWORD, keyname=None, has_password=True), password=SecretStr(CANARY)
        )
    assert workflow.submit(new_request(clock)).state is RequestState.PENDING_APPROVAL
