"""Jobs that vanish or look different, on demand; the server goes on so a client can follow it instead.
Also through the bot's client (`CloudClient.get_job`), which must read each shape."""

from __future__ import annotations

from typing import Any

import pytest

from bot.cloud import CloudAPIError, CloudClient, Credentials, Endpoints
from sandbox.simulator import ManualClock, SimulatorServer

from .conftest import AK, DB_01, PROJECT, SK, UBUNTU_22, USER, Cloud, error_of, key_option


async def _fault(cloud: Cloud, spec: dict[str, Any]) -> dict[str, Any]:
    response = await cloud.http.post("/_sim/faults", json=spec)
    assert response.status_code == 201, response.text
    return response.json()


def _client(sim: SimulatorServer) -> CloudClient:
    return CloudClient(
        Credentials(AK, SK, PROJECT, USER),  # type: ignore[arg-type]
        Endpoints(ecs=sim.base_url, ims=sim.base_url, evs=sim.base_url),
    )


async def _start(cloud: Cloud) -> str:
    response = await cloud.change_os(DB_01, key_option())
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


async def test_expired_on_demand_while_the_server_goes_on(
    cloud: Cloud, sim: SimulatorServer, clock: ManualClock
) -> None:
    job_id = await _start(cloud)
    clock.advance(30)
    body = await _fault(cloud, {"expire_jobs": {"job_id": job_id}})
    assert body["expired_jobs"] == 1
    assert error_of(await cloud.get(f"/v1/{PROJECT}/jobs/{job_id}")) == (400, "Common.0011")
    async with _client(sim) as client:
        with pytest.raises(CloudAPIError) as caught:
            await client.get_job(job_id)
        assert caught.value.code == "Common.0011"
    server = await cloud.server(DB_01)
    assert (server["status"], server["OS-EXT-STS:task_state"]) == ("REBUILD", "rebuilding")
    clock.advance(400)
    server = await cloud.server(DB_01)
    assert server["image"] == {"id": UBUNTU_22} and server["OS-EXT-STS:task_state"] is None
    assert server["status"] == "ACTIVE"


async def test_expire_every_job(cloud: Cloud) -> None:
    await _start(cloud)
    assert (await _fault(cloud, {"expire_jobs": {}}))["expired_jobs"] == 1


async def test_job_ttl_switch(cloud: Cloud, clock: ManualClock) -> None:
    await cloud.http.post("/_sim/switches", json={"job_ttl": 60})
    job_id = await _start(cloud)
    clock.advance(59)
    assert (await cloud.job(job_id))["status"] == "RUNNING"
    clock.advance(2)
    assert error_of(await cloud.get(f"/v1/{PROJECT}/jobs/{job_id}")) == (400, "Common.0011")
    assert (await cloud.server(DB_01))["status"] == "REBUILD"


async def test_changeos_without_sub_jobs(cloud: Cloud, sim: SimulatorServer, clock: ManualClock) -> None:
    await cloud.http.post("/_sim/switches", json={"changeos_sub_jobs": False})
    job_id = await _start(cloud)
    clock.advance(400)
    job = await cloud.job(job_id)
    assert job["entities"] == {"server_id": DB_01} and job["status"] == "SUCCESS"
    async with _client(sim) as client:
        parsed = await client.get_job(job_id)
    assert parsed.sub_jobs == [] and parsed.server_id == DB_01 and parsed.succeeded


@pytest.mark.parametrize("shape", ["empty", "missing"])
async def test_entities_empty_or_missing(cloud: Cloud, sim: SimulatorServer, clock: ManualClock, shape: str) -> None:
    job_id = await _start(cloud)
    await _fault(cloud, {"job_entities": shape})
    clock.advance(400)
    job = await cloud.job(job_id)
    assert job["status"] == "SUCCESS"
    assert (job.get("entities", "absent")) == ({} if shape == "empty" else "absent")
    async with _client(sim) as client:
        parsed = await client.get_job(job_id)
    assert parsed.succeeded and parsed.server_id is None
    await cloud.http.delete("/_sim/faults")
    assert (await cloud.job(job_id))["entities"]["server_id"] == DB_01


async def test_pending_payment_then_paid(cloud: Cloud, sim: SimulatorServer, clock: ManualClock) -> None:
    await _fault(cloud, {"hold_jobs": {"server_id": DB_01, "status": "PENDING_PAYMENT", "seconds": 120}})
    job_id = await _start(cloud)
    clock.advance(100)
    job = await cloud.job(job_id)
    assert job["status"] == "PENDING_PAYMENT" and job["end_time"] == ""
    server = await cloud.server(DB_01)
    assert (server["status"], server["OS-EXT-STS:task_state"]) == ("SHUTOFF", None), "unpaid: nothing happens yet"
    assert error_of(await cloud.stop(DB_01)) == (501, "Ecs.0603"), "but the server is taken"
    async with _client(sim) as client:
        assert (await client.get_job(job_id)).status == "PENDING_PAYMENT"
    clock.advance(30)
    assert (await cloud.server(DB_01))["status"] == "REBUILD"
    clock.advance(400)
    assert (await cloud.job(job_id))["status"] == "SUCCESS"


async def test_init_forever_until_the_record_expires(cloud: Cloud, clock: ManualClock) -> None:
    await _fault(cloud, {"hold_jobs": {"status": "INIT"}})
    job_id = await _start(cloud)
    clock.advance(3600)
    job = await cloud.job(job_id)
    assert job["status"] == "INIT" and all(s["status"] == "INIT" for s in job["entities"]["sub_jobs"])
    assert (await cloud.server(DB_01))["status"] == "SHUTOFF"
    await _fault(cloud, {"expire_jobs": {"job_id": job_id}})
    assert error_of(await cloud.get(f"/v1/{PROJECT}/jobs/{job_id}")) == (400, "Common.0011")


async def test_unpaid_job_record_goes_after_fourteen_days(cloud: Cloud, clock: ManualClock) -> None:
    await _fault(cloud, {"hold_jobs": {"status": "PENDING_PAYMENT"}})
    job_id = await _start(cloud)
    clock.advance(13 * 86_400)
    assert (await cloud.job(job_id))["status"] == "PENDING_PAYMENT"
    clock.advance(2 * 86_400)
    assert error_of(await cloud.get(f"/v1/{PROJECT}/jobs/{job_id}")) == (400, "Common.0011")


async def test_fail_with_reason_and_code(cloud: Cloud, sim: SimulatorServer, clock: ManualClock) -> None:
    await _fault(cloud, {"fail_jobs": {"error_code": "Ecs.1002", "fail_reason": "OpenStack access timed out."}})
    job_id = await _start(cloud)
    clock.advance(400)
    job = await cloud.job(job_id)
    assert (job["status"], job["error_code"], job["fail_reason"]) == (
        "FAIL",
        "Ecs.1002",
        "OpenStack access timed out.",
    )
    assert job["entities"]["sub_jobs"][0]["entities"]["errorcode_message"] == "OpenStack access timed out."
    async with _client(sim) as client:
        parsed = await client.get_job(job_id)
    assert (parsed.status, parsed.error_code, parsed.fail_reason) == ("FAIL", "Ecs.1002", "OpenStack access timed out.")


async def test_hold_and_entities_specs_are_validated(cloud: Cloud) -> None:
    for bad in ({"hold_jobs": {"status": "WAITING"}}, {"job_entities": "some"}, {"expire_jobs": {"id": "x"}}):
        response = await cloud.http.post("/_sim/faults", json=bad)
        assert response.status_code == 400, bad


async def test_no_retry_after_on_throttling_unless_asked(cloud: Cloud) -> None:
    await _fault(cloud, {"route": "show_server", "burst_429": 1})
    response = await cloud.get(f"/v1/{PROJECT}/cloudservers/{DB_01}")
    assert error_of(response) == (429, "APIGW.0308") and "Retry-After" not in response.headers
    assert set(response.json()) == {"error_msg", "error_code", "request_id"}
    await _fault(cloud, {"route": "show_server", "burst_429": 1, "retry_after": 3})
    response = await cloud.get(f"/v1/{PROJECT}/cloudservers/{DB_01}")
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"


async def test_fault_log_admin_shapes(cloud: Cloud) -> None:
    await _fault(cloud, {"hold_jobs": {"status": "INIT"}, "job_entities": "empty"})
    listed = (await cloud.http.get("/_sim/faults")).json()
    assert listed["hold_jobs"][0]["status"] == "INIT" and listed["job_entities"] == "empty"
    cleared = (await cloud.http.delete("/_sim/faults")).json()
    assert cleared == {"rules": [], "fail_jobs": []}
