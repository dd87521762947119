"""The tracker against a misbehaving cloud, in one process (LocalStack): overdue jobs, failed jobs, 5xx and 429 on
the job route, and the shared ECS request budget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from bot.domain.request import ChangeRequest, RequestState
from sandbox.devtools.stack import APPROVALS_CHANNEL, REQUESTER, LocalStack, StackOptions
from sandbox.simulator.faults import FaultSpec
from sandbox.simulator.fixtures import Fixtures, ServerFixture, Timing, VolumeFixture, load_fixtures
from sandbox.simulator.server import SimulatorServer
from tests.support.requests import approved_request
from tests.support.sim_ids import DB_01, UBUNTU_20

from .conftest import approve_through_slack, wait_state

pytestmark = pytest.mark.timeout(40)

ENDED = (RequestState.SUCCEEDED, RequestState.FAILED)


def with_servers(base: Fixtures, count: int) -> Fixtures:
    """`count` extra SHUTOFF servers bench-NNNN, each with a 40 GB system disk."""
    extra = [
        ServerFixture(
            id=f"5e1a0000-0000-4000-8000-{i:012d}",
            name=f"bench-{i:04d}",
            status="SHUTOFF",
            image_id=UBUNTU_20,
            key_name="ops-key",
            volumes=[VolumeFixture(id=f"5e1b0000-0000-4000-8000-{i:012d}", size=40)],
        )
        for i in range(count)
    ]
    return base.model_copy(update={"servers": [*base.servers, *extra]})


async def started(options: StackOptions, fixtures: Fixtures) -> LocalStack:
    stack = LocalStack(options)
    stack.sim = SimulatorServer(fixtures, speed=options.speed, seed=options.seed)
    return await stack.start()


def show_job_statuses(stack: LocalStack) -> list[int]:
    return [r["status"] for r in stack.sim.requests if r["route"] == "show_job"]


@pytest.fixture
async def slow_stack() -> AsyncIterator[LocalStack]:
    """Changes of about 3 s (speed 40), polled every 0.2 s, with a 0.5 s job deadline: every job runs overdue."""
    timing = Timing(job_init=(3.0, 3.0), change_running=(120.0, 120.0))
    options = StackOptions(speed=40.0, deadline=0.5, poll_interval=0.2)
    stack = await started(options, load_fixtures().model_copy(update={"timing": timing}))
    try:
        yield stack
    finally:
        await stack.stop()


async def test_overdue_job_tells_people_and_still_succeeds(slow_stack: LocalStack) -> None:
    stack = slow_stack
    assert stack.rt is not None
    request = await approve_through_slack(stack, "db-01 ubuntu-22.04 --key ops-key --reason 'overdue test'")

    async def marked() -> ChangeRequest | None:
        current = await stack.rt.store.get(request.id)
        return current if current is not None and current.overdue else None

    overdue = await stack.slack.wait_until(marked, timeout=10, what="the request marked overdue")
    assert overdue.state is RequestState.RUNNING  # overdue is a flag, not an end: the bot keeps checking
    assert any(e.action == "overdue" for e in await stack.rt.store.audit(request.id))

    async def told() -> bool:
        r = await stack.rt.store.get(request.id)
        if r is None or r.status_ts is None:
            return False
        message = stack.slack.message(APPROVALS_CHANNEL, r.status_ts)
        shown = [str(message.blocks), *(str(v.blocks) for v in message.history)]
        return any("Taking longer than expected" in s for s in shown)

    await stack.slack.wait_until(told, timeout=10, what="the status message saying it takes longer")
    final = await wait_state(stack, request.id, *ENDED)
    assert final.state is RequestState.SUCCEEDED, final.result
    assert final.overdue


async def test_failed_job_explains_the_cloud_reason(stack: LocalStack) -> None:
    assert stack.rt is not None
    reason = "The system disk could not be rebuilt (simulated)."
    stack.sim.faults.add(
        FaultSpec.model_validate({"fail_jobs": {"server_id": DB_01, "error_code": "Ecs.1002", "fail_reason": reason}})
    )
    request = await approve_through_slack(stack, "db-01 ubuntu-22.04 --key ops-key --reason 'fail test'")
    final = await wait_state(stack, request.id, *ENDED)
    assert final.state is RequestState.FAILED
    assert final.error_code == "Ecs.1002" and final.fail_reason == reason
    assert final.result is not None and "Ecs.1002" in final.result and reason in final.result
    job = stack.sim.state.jobs[final.job_id or ""]
    assert job.sub_jobs[0].fail_reason == reason  # what the sub-job's errorcode_message carries

    def said() -> list[str]:
        assert final.approval_ts is not None
        return [m.text for m in stack.slack.thread(APPROVALS_CHANNEL, final.approval_ts) if reason in m.text]

    replies = await stack.slack.wait_until(said, timeout=10, what="the failure in the thread")
    assert "Failed" in replies[0] and f"<@{REQUESTER}>" in replies[0]


async def test_5xx_and_429_on_the_job_route_still_end_succeeded(stack: LocalStack) -> None:
    assert stack.rt is not None
    for spec in (
        {"route": "show_job", "burst_429": 2, "retry_after": 1},
        {"route": "show_job", "error_rate": 0.5, "status": 500, "code": "Common.0001"},
    ):
        stack.sim.faults.add(FaultSpec.model_validate(spec))
    request = await approve_through_slack(stack, "db-01 ubuntu-22.04 --key ops-key --reason 'flaky job route'")
    final = await wait_state(stack, request.id, *ENDED, timeout=30)
    assert final.state is RequestState.SUCCEEDED, final.result
    statuses = show_job_statuses(stack)
    assert statuses.count(429) == 2 and 500 in statuses and 200 in statuses, statuses
    assert len([r for r in stack.sim.requests if r["route"] == "change_os_v1"]) == 1


def _max_in_window(times: list[float], window: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_ecs_budget_holds_across_many_jobs() -> None:
    rate, jobs = 8.0, 16
    options = StackOptions(ecs_rate=rate, poll_interval=0.3, first_poll=0.05)
    stack = await started(options, with_servers(load_fixtures(), jobs))
    try:
        assert stack.rt is not None
        for i in range(jobs):
            request = approved_request(f"5e1a0000-0000-4000-8000-{i:012d}", f"bench-{i:04d}")
            await stack.rt.store.create(request, actor="t")
        stack.rt.tracker.wake()
        # Unthrottled, the first instant alone would carry 2 calls per job (read the server, post the change).
        await stack.slack.wait_until(lambda: len(stack.sim.requests) >= 4 * rate, timeout=10, what="load")
    finally:
        calls: list[dict[str, Any]] = list(stack.sim.requests)
        await stack.stop()
    times = sorted(datetime.fromisoformat(c["time"]).timestamp() for c in calls)
    assert len(times) >= 3 * rate
    burst = max(1, int(rate))
    assert _max_in_window(times, 1.0) <= rate + burst, _max_in_window(times, 1.0)
    span = times[-1] - times[0]
    assert len(times) <= burst + rate * span + 1  # the long-run pace is the budget too
