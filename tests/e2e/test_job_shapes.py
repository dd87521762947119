"""Jobs as a real account shows them: records that expire, INIT and PENDING_PAYMENT, entities missing, and agency
keys that expire while a change runs. Each shape is produced on demand by the simulator, end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bot.cloud import MetadataCredentials
from bot.domain.request import RequestState
from sandbox.devtools.stack import LocalStack, StackOptions
from sandbox.simulator.faults import FaultSpec, HoldJobs
from sandbox.simulator.fixtures import AgencySettings, load_fixtures
from sandbox.simulator.server import SimulatorServer
from tests.support.sim_ids import DB_01

from .conftest import approve_through_slack, wait_state

pytestmark = pytest.mark.timeout(60)

COMMAND = "db-01 ubuntu-22.04 --key ops-key --reason job shapes"


@pytest.fixture
async def slow_stack() -> AsyncIterator[LocalStack]:
    """At speed 200 a change takes 1-1.5 s: room for a test to act while the job runs (expire it, watch it held)."""
    async with LocalStack(StackOptions(speed=200.0)) as s:
        yield s


async def running(stack: LocalStack) -> str:
    """Submit and approve through Slack; returns the request id once the job id is known."""
    request = await approve_through_slack(stack, COMMAND)
    assert stack.rt is not None

    async def job_known() -> bool:
        current = await stack.rt.store.get(request.id)
        return current is not None and current.job_id is not None

    await stack.slack.wait_until(job_known, what="the job id")
    return request.id


async def test_an_expired_job_ends_by_following_the_server(slow_stack: LocalStack) -> None:
    stack = slow_stack
    request_id = await running(stack)
    async with httpx.AsyncClient() as client:
        answer = await client.post(stack.sim.base_url + "/_sim/faults", json={"expire_jobs": {}})
        assert answer.status_code == 201, answer.text
    done = await wait_state(stack, request_id, RequestState.SUCCEEDED, RequestState.FAILED)
    assert done.state is RequestState.SUCCEEDED, done.result
    assert stack.rt is not None
    assert any(e.action == "job_gone" for e in await stack.rt.store.audit(request_id))
    thread = stack.slack.thread(done.approvals_channel, done.approval_ts or "")
    assert any("no longer knows job" in m.text for m in thread), [m.text for m in thread]


@pytest.mark.parametrize(
    ("status", "said"), [("PENDING_PAYMENT", "waits for payment"), ("INIT", "preparing the job")]
)
async def test_held_jobs_say_why_they_wait_then_finish(slow_stack: LocalStack, status: str, said: str) -> None:
    stack = slow_stack
    stack.sim.faults.add(FaultSpec(hold_jobs=HoldJobs(server_id=DB_01, status=status, seconds=240)))
    request_id = await running(stack)
    assert stack.rt is not None

    async def saying() -> bool:
        return said in (getattr(await stack.rt.store.get(request_id), "job_progress", None) or "")

    await stack.slack.wait_until(saying, what=f"progress saying {said!r}")
    done = await wait_state(stack, request_id, RequestState.SUCCEEDED, RequestState.FAILED)
    assert done.state is RequestState.SUCCEEDED, done.result


@pytest.mark.parametrize("entities", ["empty", "missing"])
async def test_jobs_without_entities_still_end(stack: LocalStack, entities: str) -> None:
    stack.sim.faults.add(FaultSpec(job_entities=entities))
    request_id = await running(stack)
    done = await wait_state(stack, request_id, RequestState.SUCCEEDED, RequestState.FAILED)
    assert done.state is RequestState.SUCCEEDED, done.result


async def test_a_failed_job_shows_its_code_and_reason(stack: LocalStack) -> None:
    stack.sim.faults.add(FaultSpec.model_validate({"fail_jobs": {"error_code": "Ecs.0007", "fail_reason": "Bad X."}}))
    request_id = await running(stack)
    done = await wait_state(stack, request_id, RequestState.FAILED)
    assert done.error_code == "Ecs.0007" and "Bad X" in (done.result or "")


async def test_agency_keys_are_renewed_during_a_running_change_without_a_failed_call() -> None:
    # Keys of 1.5 s (the bot renews them 0.5 s before they expire) under a change of 2-4 s (speed 80).
    fixtures = load_fixtures().model_copy(update={"agency": AgencySettings(lifetime=1.5, renew_before=0.75)})
    options = StackOptions(speed=80.0, agency=True)
    stack = LocalStack(options)
    stack.sim = SimulatorServer(fixtures, speed=options.speed, seed=options.seed)
    async with stack:
        assert stack.rt is not None
        source = stack.rt.cloud.credentials
        assert isinstance(source, MetadataCredentials)
        request_id = await running(stack)
        done = await wait_state(stack, request_id, RequestState.SUCCEEDED, RequestState.FAILED, timeout=40)
        assert done.state is RequestState.SUCCEEDED, done.result
        cloud_calls = [e for e in stack.sim.requests if e.get("credential")]
        assert cloud_calls and {e["credential"] for e in cloud_calls} == {"agency"}
        assert [e for e in cloud_calls if e["status"] == 401] == []
        assert source.refreshes >= 2  # the keys were renewed while the change ran


async def test_gateway_throttling_without_retry_after_is_backed_off(stack: LocalStack) -> None:
    stack.sim.faults.add(FaultSpec(route="show_job", burst_429=4, status=429, code="APIGW.0308"))
    request_id = await running(stack)
    done = await wait_state(stack, request_id, RequestState.SUCCEEDED, RequestState.FAILED)
    assert done.state is RequestState.SUCCEEDED, done.result
    throttled = [e for e in stack.sim.requests if e["route"] == "show_job" and e["status"] == 429]
    assert len(throttled) == 4  # every one was answered like the gateway: 429 APIGW.0308, and no Retry-After
