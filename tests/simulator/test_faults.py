"""Fault injection and the /_sim/ admin API: error rates, latency, 429 bursts, failing jobs, dropped answers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.simulator import ManualClock, SimulatorServer
from sandbox.simulator.fixtures import default_fixtures_path
from tests.support.waiting import until

from .conftest import APP_01_B, DB_01, FAILED_01, PROJECT, SMALL_01, UBUNTU_22, WEB_01, Cloud, error_of, key_option

JOB_PATH = f"/v1/{PROJECT}/jobs/ff80808200000000000000000000dead"
SERVER_PATH = f"/v1/{PROJECT}/cloudservers/{WEB_01}"


async def _fault(cloud: Cloud, spec: dict[str, Any] | list[dict[str, Any]]) -> httpx.Response:
    response = await cloud.http.post("/_sim/faults", json=spec)
    assert response.status_code == 201, response.text
    return response


async def test_error_rate_one_fails_only_that_route_until_cleared(cloud: Cloud) -> None:
    await _fault(cloud, {"route": "show_server", "error_rate": 1.0, "status": 503, "code": "Common.0001"})
    for _ in range(3):
        response = await cloud.get(SERVER_PATH)
        assert error_of(response) == (503, "Common.0001") and response.headers["X-Request-Id"]
    assert (await cloud.get(f"/v1/{PROJECT}/cloudservers/detail")).status_code == 200
    listed = (await cloud.http.get("/_sim/faults")).json()
    assert listed["rules"][0]["route"] == "show_server"
    assert (await cloud.http.delete("/_sim/faults")).json() == {"rules": [], "fail_jobs": []}
    assert (await cloud.get(SERVER_PATH)).status_code == 200


async def _pattern(seed: int) -> list[int]:
    async with SimulatorServer(seed=seed, clock=ManualClock()) as sim:
        client = Cloud(sim.base_url)
        try:
            await _fault(client, {"route": "show_server", "error_rate": 0.5, "status": 500})
            return [(await client.get(SERVER_PATH)).status_code for _ in range(40)]
        finally:
            await client.aclose()


async def test_error_rate_is_drawn_from_the_seed() -> None:
    first, again, other = await _pattern(11), await _pattern(11), await _pattern(12)
    assert first == again and first != other
    assert 8 <= first.count(500) <= 32 and set(first) == {200, 500}


async def test_latency_is_added(cloud: Cloud) -> None:
    await _fault(cloud, {"route": "show_server", "latency_ms": 250})
    started = time.monotonic()
    assert (await cloud.get(SERVER_PATH)).status_code == 200
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    await cloud.get(f"/v2.1/{PROJECT}/os-keypairs")
    assert time.monotonic() - started < 0.25


async def test_burst_of_429_then_normal(cloud: Cloud) -> None:
    await _fault(cloud, {"route": "*", "burst_429": 3, "retry_after": 2})
    for _ in range(3):
        response = await cloud.get(SERVER_PATH)
        assert response.status_code == 429 and response.headers["Retry-After"] == "2"
        body = response.json()
        assert body["error_code"] == "APIGW.0308" and body["request_id"] == response.headers["X-Request-Id"]
    assert (await cloud.get(SERVER_PATH)).status_code == 200
    assert (await cloud.http.get("/_sim/faults")).json()["rules"][0]["burst_429_left"] == 0


async def test_fail_jobs_for_one_server(cloud: Cloud, clock: ManualClock) -> None:
    spec = {"fail_jobs": {"server_id": DB_01, "error_code": "Ecs.1002", "fail_reason": "OpenStack access timed out."}}
    await _fault(cloud, spec)
    other = await cloud.change_os(APP_01_B, key_option())
    failing = await cloud.change_os(DB_01, key_option())
    clock.advance(400)
    assert (await cloud.job(other.json()["job_id"]))["status"] == "SUCCESS"
    job = await cloud.job(failing.json()["job_id"])
    assert (job["status"], job["error_code"], job["fail_reason"]) == ("FAIL", "Ecs.1002", "OpenStack access timed out.")
    assert job["entities"]["sub_jobs"][0]["entities"]["errorcode_message"] == "OpenStack access timed out."
    server = await cloud.server(DB_01)
    assert server["status"] == "ERROR" and "Ecs.1002" in server["fault"]["message"]
    assert server["image"]["id"] != UBUNTU_22
    retry = await cloud.change_os(DB_01, key_option())  # allowed after a failed change; the fault was used up
    clock.advance(400)
    assert (await cloud.job(retry.json()["job_id"]))["status"] == "SUCCESS"


async def test_fail_jobs_without_server_hits_the_next_change(cloud: Cloud, clock: ManualClock) -> None:
    await _fault(cloud, {"fail_jobs": {}})
    job_id = (await cloud.change_os(FAILED_01, key_option())).json()["job_id"]
    clock.advance(400)
    job = await cloud.job(job_id)
    assert job["status"] == "FAIL" and job["error_code"] == "Ecs.1002" and job["fail_reason"]


async def test_dropped_answer_still_carries_out_the_change(cloud: Cloud, sim: SimulatorServer) -> None:
    await _fault(cloud, {"route": "change_os", "drop_response": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        await cloud.change_os(DB_01, key_option())
    server = await cloud.server(DB_01)
    assert server["status"] == "REBUILD"
    assert [j["server_id"] for j in sim.state.summary()["jobs"]] == [DB_01]
    log = (await cloud.http.get("/_sim/requests", params={"route": "change_os_v1"})).json()["requests"]
    assert log[0]["dropped"] is True and log[0]["status"] is None
    answered = await cloud.change_os(SMALL_01, key_option())
    assert answered.status_code == 200


async def test_a_request_cut_mid_body_changes_nothing_and_is_not_a_simulator_bug(
    sim: SimulatorServer, cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    """A caller killed while sending: the cloud never sees a whole request, so it does nothing."""
    before = await cloud.server(DB_01)
    host, port = cloud.host.split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    path = f"/v1/{PROJECT}/cloudservers/{DB_01}/changeos"
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {cloud.host}\r\nContent-Length: 400\r\n\r\n{{\"os-change".encode())
    await writer.drain()
    await until(lambda: any(r["route"] == "change_os_v1" for r in sim.requests), timeout=5, what="the request")
    writer.close()  # gone before the body's other 390 bytes
    await writer.wait_closed()
    await until(lambda: sim.requests[-1].get("cut"), timeout=5, what="the cut logged")
    assert sim.requests[-1]["status"] is None and not sim.state.summary()["jobs"]
    assert await cloud.server(DB_01) == before
    assert "simulator bug" not in caplog.text


async def test_refused_change_is_answered_and_keeps_the_drop(cloud: Cloud) -> None:
    await _fault(cloud, {"route": "change_os_v1", "drop_response": 1})
    assert error_of(await cloud.change_os(WEB_01, key_option())) == (400, "Ecs.0100")
    with pytest.raises(httpx.RemoteProtocolError):
        await cloud.change_os(DB_01, key_option())


async def test_faults_from_the_fixtures_file(tmp_path: Path) -> None:
    fault = '\n[[faults]]\nroute = "list_keypairs"\nerror_rate = 1.0\nstatus = 500\ncode = "Common.0001"\n'
    path = tmp_path / "sim.toml"
    path.write_text(default_fixtures_path().read_text() + fault)
    async with SimulatorServer(path, clock=ManualClock()) as sim:
        client = Cloud(sim.base_url)
        try:
            assert error_of(await client.get(f"/v2.1/{PROJECT}/os-keypairs")) == (500, "Common.0001")
            assert (await client.get(SERVER_PATH)).status_code == 200
            await client.http.delete("/_sim/faults")
            assert (await client.get(f"/v2.1/{PROJECT}/os-keypairs")).status_code == 200
            await client.http.post("/_sim/reset")  # reset restores the fixtures' faults
            assert (await client.get(f"/v2.1/{PROJECT}/os-keypairs")).status_code == 500
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"route": "reboot", "error_rate": 1}, "unknown route"),
        ({"route": "show_job", "error_rate": 2}, "error_rate"),
        ({"route": "show_job", "colour": "red"}, "colour"),
        ({"route": "show_job", "drop_response": 1}, "drop_response"),
    ],
)
async def test_admin_rejects_bad_fault_specs(cloud: Cloud, spec: dict[str, Any], needle: str) -> None:
    response = await cloud.http.post("/_sim/faults", json=spec)
    assert response.status_code == 400 and needle in response.json()["error"]
    not_json = await cloud.http.post("/_sim/faults", content=b"{")
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]


async def test_request_log_counts_calls_without_secrets(cloud: Cloud) -> None:
    await cloud.get(SERVER_PATH)
    await cloud.get(JOB_PATH)
    await cloud.http.get(SERVER_PATH)  # unsigned
    body = (await cloud.http.get("/_sim/requests")).json()
    assert body["count"] == 3
    assert [(e["route"], e["status"]) for e in body["requests"]] == [
        ("show_server", 200),
        ("show_job", 400),
        ("show_server", 401),
    ]
    assert set(body["requests"][0]) == {"method", "path", "route", "status", "time", "request_id", "credential"}
    assert body["requests"][0]["credential"] == "permanent"
    assert body["requests"][0]["path"] == SERVER_PATH and body["requests"][0]["time"].endswith("Z")
    only_jobs = (await cloud.http.get("/_sim/requests", params={"route": "show_job"})).json()
    assert only_jobs["count"] == 1
    assert "SIMULATORAK" not in str(body) and "simulator-secret" not in str(body)
    await cloud.http.delete("/_sim/requests")
    assert (await cloud.http.get("/_sim/requests")).json()["count"] == 0


async def test_reset_reloads_fixtures_and_clears_the_log(cloud: Cloud, clock: ManualClock) -> None:
    await cloud.change_os(DB_01, key_option())
    clock.advance(400)
    assert (await cloud.server(DB_01))["image"]["id"] == UBUNTU_22
    assert (await cloud.http.post("/_sim/reset")).json() == {"reset": True}
    assert (await cloud.http.get("/_sim/requests")).json()["count"] == 0
    assert (await cloud.server(DB_01))["status"] == "SHUTOFF"
    state = (await cloud.http.get("/_sim/state")).json()
    assert state["jobs"] == [] and len(state["servers"]) == 21


async def test_advance_moves_simulated_time(cloud: Cloud) -> None:
    job_id = (await cloud.stop(WEB_01)).json()["job_id"]
    assert (await cloud.http.post("/_sim/advance", json={"seconds": 60})).status_code == 200
    assert (await cloud.job(job_id))["status"] == "SUCCESS"
    assert (await cloud.http.post("/_sim/advance", json={"minutes": 1})).status_code == 400
