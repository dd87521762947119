"""Stop and start through jobs: ACTIVE → powering-off → SHUTOFF, and the refusals of the action API."""

from __future__ import annotations

import pytest

from sandbox.simulator import ManualClock

from .conftest import DB_01, LOCKED_01, PROJECT, WEB_01, Cloud, error_of

ACTION = f"/v1/{PROJECT}/cloudservers/action"


async def test_soft_stop_goes_through_powering_off(cloud: Cloud, clock: ManualClock) -> None:
    response = await cloud.stop(WEB_01)
    assert response.status_code == 200
    job_id = response.json()["job_id"]
    server = await cloud.server(WEB_01)
    assert server["status"] == "ACTIVE" and server["OS-EXT-STS:task_state"] == "powering-off"

    clock.advance(2)
    job = await cloud.job(job_id)
    assert job["status"] == "RUNNING" and job["job_type"] == "batchStopServers"
    assert job["entities"]["sub_jobs"][0]["entities"]["server_id"] == WEB_01
    clock.advance(17)  # 19 s: a soft stop takes 20-40 s
    assert (await cloud.job(job_id))["status"] == "RUNNING"
    clock.advance(22)
    job = await cloud.job(job_id)
    assert job["status"] == "SUCCESS" and job["end_time"]
    server = await cloud.server(WEB_01)
    assert server["status"] == "SHUTOFF" and server["OS-EXT-STS:vm_state"] == "stopped"
    assert server["OS-EXT-STS:power_state"] == 4 and server["OS-EXT-STS:task_state"] is None


async def test_hard_stop_is_quicker(cloud: Cloud, clock: ManualClock) -> None:
    job_id = (await cloud.stop(WEB_01, "HARD")).json()["job_id"]
    clock.advance(11)
    assert (await cloud.job(job_id))["status"] == "SUCCESS"


async def test_stopping_a_stopped_server_succeeds_quickly(cloud: Cloud, clock: ManualClock) -> None:
    job_id = (await cloud.stop(DB_01)).json()["job_id"]
    assert (await cloud.server(DB_01))["status"] == "SHUTOFF"
    clock.advance(2.5)
    assert (await cloud.job(job_id))["status"] == "SUCCESS"


async def test_start_brings_a_server_back(cloud: Cloud, clock: ManualClock) -> None:
    response = await cloud.post(ACTION, {"os-start": {"servers": [{"id": DB_01}]}})
    assert response.status_code == 200
    assert (await cloud.server(DB_01))["OS-EXT-STS:task_state"] == "powering-on"
    clock.advance(25)
    job = await cloud.job(response.json()["job_id"])
    assert job["status"] == "SUCCESS" and job["job_type"] == "batchStartServers"
    assert (await cloud.server(DB_01))["status"] == "ACTIVE"


async def test_stop_refusals(cloud: Cloud) -> None:
    assert error_of(await cloud.stop(LOCKED_01)) == (400, "Ecs.0605")
    assert error_of(await cloud.stop("00000000-0000-4000-8000-00000000dead")) == (404, "Ecs.0114")
    assert (await cloud.stop(WEB_01)).status_code == 200
    assert error_of(await cloud.stop(WEB_01)) == (501, "Ecs.0603")


@pytest.mark.parametrize(
    "body",
    [
        {"os-stop": {"servers": []}},
        {"os-stop": {"servers": [{"id": WEB_01}], "type": "GENTLE"}},
        {"os-stop": {}},
        {"os-reboot": {"servers": [{"id": WEB_01}]}},
        {"os-stop": {"servers": [{"id": WEB_01}]}, "os-start": {"servers": [{"id": WEB_01}]}},
    ],
)
async def test_malformed_actions_are_ecs_0005(cloud: Cloud, body: dict[str, object]) -> None:
    assert error_of(await cloud.post(ACTION, body)) == (400, "Ecs.0005")


async def test_unknown_job_is_common_0011(cloud: Cloud) -> None:
    assert error_of(await cloud.get(f"/v1/{PROJECT}/jobs/ff80808200000000000000000000dead")) == (400, "Common.0011")


async def test_finished_jobs_disappear_after_a_day(cloud: Cloud, clock: ManualClock) -> None:
    job_id = (await cloud.stop(WEB_01)).json()["job_id"]
    clock.advance(60)
    assert (await cloud.job(job_id))["status"] == "SUCCESS"
    clock.advance(86_400)
    assert error_of(await cloud.get(f"/v1/{PROJECT}/jobs/{job_id}")) == (400, "Common.0011")
