"""Decisions on a request (submit, approve, reject, cancel, expire) over a real store, policy and secret box."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pydantic import SecretStr

from bot.domain.policy import Policy
from bot.domain.request import ChangeRequest, LoginMethod, RequestState
from bot.secretbox import SecretBox
from bot.services.workflow import DraftClosed, DraftEnd, PasswordUnavailable, Workflow, request_secret_key
from bot.store import ServerBusyError, SQLiteStore
from tests.support.clocks import DateClock as Clock
from tests.support.requests import change_request

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


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def flow(tmp_path, clock: Clock) -> AsyncIterator[Workflow]:
    store = SQLiteStore(tmp_path / "bot.db", clock=clock)
    woken: list[int] = []
    workflow = Workflow(
        store, Policy.parse(POLICY), SecretBox(SecretBox.generate_key()), wake=lambda: woken.append(1), now=clock
    )
    workflow.woken = woken  # type: ignore[attr-defined]
    yield workflow
    await store.aclose()


def new_request(clock: Clock, **changes) -> ChangeRequest:
    return change_request(at=clock.now, approvals_required=2, **changes)


async def test_two_approvals_from_two_people_are_needed(flow: Workflow, clock: Clock) -> None:
    request = await flow.submit(new_request(clock))
    assert (await flow.approve(request.id, "U01REQ0001", [])).refused  # never one's own
    first = await flow.approve(request.id, "U01APR0001", [])
    assert first.refused is None and first.request.state is RequestState.PENDING_APPROVAL
    assert (await flow.approve(request.id, "U01APR0001", [])).refused  # nobody counts twice
    second = await flow.approve(request.id, "U01GRP0009", ["S01OPS0001"])  # a member of an approver group
    assert second.request.state is RequestState.APPROVED and second.request.approvals == ["U01APR0001", "U01GRP0009"]
    assert flow.woken == [1]  # type: ignore[attr-defined]
    assert (await flow.approve(request.id, "U01APR0002", [])).refused  # already approved
    actions = [e.action for e in await flow.store.audit(request.id)]
    assert actions.count("approve_refused") == 2


async def test_password_is_encrypted_and_gone_after_reject(flow: Workflow, clock: Clock, tmp_path) -> None:
    request = await flow.submit(
        new_request(clock, login=LoginMethod.PASSWORD), password=SecretStr(CANARY)
    )
    blob = await flow.store.get_secret(request_secret_key(request.id))
    assert blob is not None and CANARY.encode() not in blob
    assert (await flow.password_for(request.id)).get_secret_value() == CANARY
    outcome = await flow.reject(request.id, "U01APR0001", [], "not now")
    assert outcome.request.state is RequestState.REJECTED and outcome.request.decision_note == "not now"
    assert await flow.password_for(request.id) is None
    await flow.store.checkpoint()
    for path in tmp_path.iterdir():
        assert CANARY.encode() not in path.read_bytes()


async def test_requester_cancels_until_submission_and_nobody_else_can(flow: Workflow, clock: Clock) -> None:
    request = await flow.submit(new_request(clock))
    assert "Only <@U01REQ0001>" in (await flow.cancel(request.id, "U01APR0001")).refused
    assert (await flow.cancel(request.id, "U01REQ0001")).request.state is RequestState.CANCELLED
    assert "too late" in (await flow.cancel(request.id, "U01REQ0001")).refused
    assert "no change request" in (await flow.cancel("CR-ZZZZZZ", "U01REQ0001")).refused.lower()


async def test_pending_requests_expire_and_lose_their_password(flow: Workflow, clock: Clock) -> None:
    request = await flow.submit(
        new_request(clock, login=LoginMethod.PASSWORD), password=SecretStr(CANARY)
    )
    assert await flow.expire_due() == []
    clock.now += timedelta(hours=1, seconds=1)
    expired = await flow.expire_due()
    assert [r.id for r in expired] == [request.id] and expired[0].state is RequestState.EXPIRED
    assert await flow.password_for(request.id) is None
    assert (await flow.approve(request.id, "U01APR0001", [])).refused


async def test_one_live_request_per_server(flow: Workflow, clock: Clock) -> None:
    first = await flow.submit(new_request(clock))
    with pytest.raises(ServerBusyError) as busy:
        await flow.submit(new_request(clock))
    assert busy.value.live_request_id == first.id


async def test_without_a_secret_key_passwords_are_refused_with_a_reason(tmp_path, clock: Clock) -> None:
    store = SQLiteStore(tmp_path / "b.db", clock=clock)
    workflow = Workflow(store, Policy.parse(POLICY), None, now=clock)
    with pytest.raises(PasswordUnavailable, match="ECSBOT_SECRET_KEY"):
        await workflow.submit(
            new_request(clock, login=LoginMethod.PASSWORD), password=SecretStr(CANARY)
        )
    assert (await workflow.submit(new_request(clock))).state is RequestState.PENDING_APPROVAL
    await store.aclose()


# ------------------------------------------------------------------ drafts: a link lives exactly as long as its form


async def draft_rows(flow: Workflow) -> dict[str, int]:
    query = flow.store.query  # type: ignore[attr-defined]
    return {
        t: (await query(f"SELECT count(*) AS n FROM [{t}]"))[0]["n"] for t in ("tokens", "page_sessions", "secrets")
    }


async def a_live_link_and_session(flow: Workflow, clock: Clock, draft: str = "d1") -> None:
    later = clock.now + timedelta(minutes=10)
    link, session = ("h-link", "h-session") if draft == "d1" else (f"h-link-{draft}", f"h-session-{draft}")
    await flow.store.put_token(
        link, purpose="password", subject=f"{draft}|Linux", user_id="U01REQ0001", expires_at=later
    )
    await flow.store.put_session(session, draft_id=draft, os_type="Linux", user_id="U01REQ0001", expires_at=later)
    await flow.store.put_secret(f"link:{draft}", b"encrypted-link", expires_at=later)


async def test_submitting_revokes_every_link_and_session_of_the_draft_and_records_who_set_it(
    flow: Workflow, clock: Clock
) -> None:
    await a_live_link_and_session(flow, clock)
    await a_live_link_and_session(flow, clock, draft="d2")  # another form: untouched
    await flow.keep_draft_password("d1", SecretStr(CANARY), set_by="U01REQ0001", set_via="slack-signin")
    revoked: list[tuple[str, list[str], bool]] = []
    flow.revoke_hooks.append(lambda draft, digests, why: revoked.append((draft, sorted(digests), why.final)))
    stored = await flow.submit(
        new_request(clock, login=LoginMethod.PASSWORD), draft_id="d1"
    )
    assert revoked == [("d1", ["h-link", "h-session"], True)]
    assert flow.draft_ended("d1") is not None and stored.id in flow.draft_ended("d1").message
    assert await draft_rows(flow) == {"tokens": 1, "page_sessions": 1, "secrets": 2}  # d2's link, the request's
    assert (await flow.password_for(stored.id)).get_secret_value() == CANARY
    (event,) = [e for e in await flow.store.audit(stored.id) if e.action == "password_set"]
    assert event.actor == "U01REQ0001" and "signed in with Slack" in event.detail and CANARY not in event.detail
    with pytest.raises(DraftClosed):
        await flow.keep_draft_password("d1", SecretStr("Other-Pw#1234"), set_by="U01REQ0001", set_via="link")


async def test_a_password_reaches_only_a_live_session(flow: Workflow, clock: Clock) -> None:
    await a_live_link_and_session(flow, clock)
    await flow.close_draft("d1", DraftEnd("closed", final=True))
    assert await draft_rows(flow) == {"tokens": 0, "page_sessions": 0, "secrets": 0}
    with pytest.raises(DraftClosed):
        await flow.keep_draft_password(
            "d1", SecretStr(CANARY), set_by="U01REQ0001", set_via="link", session="h-session"
        )
    await a_live_link_and_session(flow, clock, draft="d3")
    await flow.revoke_draft("d3", DraftEnd("expired", final=False))  # revoked meanwhile, not closed
    kept = await flow.keep_draft_password(
        "d3", SecretStr(CANARY), set_by="U01REQ0001", set_via="link", session="h-session-d3"
    )
    assert kept is False and await flow.store.get_secret("draft:d3") is None


async def test_the_draft_password_expires_after_its_setting_and_takes_the_links(flow: Workflow, clock: Clock) -> None:
    flow.draft_password_ttl = timedelta(minutes=7)
    await flow.keep_draft_password("d1", SecretStr(CANARY), set_by="U01REQ0001", set_via="link")
    await a_live_link_and_session(flow, clock)
    info = await flow.draft_password_info("d1")
    assert info is not None and info.expires_at == clock.now + timedelta(minutes=7) and info.set_via == "link"
    assert not await flow.expire_draft_password("d1")  # not due yet
    clock.now += timedelta(minutes=7)
    assert await flow.draft_password_info("d1") is None
    assert await flow.expire_draft_password("d1")
    assert await draft_rows(flow) == {"tokens": 0, "page_sessions": 0, "secrets": 0}
    assert flow.draft_ended("d1") is None  # the form is still open: it gets a fresh link
