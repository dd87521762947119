"""Change OS over signed raw HTTP: every documented refusal, the state machine, and the job's life."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.simulator import ManualClock, SimulatorServer

from .conftest import (
    CENTOS_OLD,
    DB_01,
    FAILED_01,
    GOOD_PASSWORD,
    LOCKED_01,
    NODISK_01,
    PROJECT,
    ROCKY_LARGE,
    SMALL_01,
    UBUNTU_22,
    UBUNTU_24_CI,
    USER,
    WEB_01,
    WIN_01,
    WINDOWS_2022,
    Cloud,
    error_of,
    key_option,
)

REFUSALS: list[tuple[str, str, dict[str, Any], bool, int, str]] = [
    ("server missing", "00000000-0000-4000-8000-00000000dead", key_option(), False, 404, "Ecs.0114"),
    ("server locked", LOCKED_01, key_option(), False, 400, "Ecs.0605"),
    ("server running", WEB_01, key_option(), False, 400, "Ecs.0100"),
    ("no system disk", NODISK_01, key_option(), False, 400, "Ecs.0105"),
    ("image missing", DB_01, key_option("11111111-2222-4333-8444-555555555555"), False, 400, "Ecs.0031"),
    ("image not active", DB_01, key_option(CENTOS_OLD), False, 400, "Ecs.0032"),
    ("Cloud-Init image on v1", DB_01, key_option(UBUNTU_24_CI), False, 400, "Ecs.0007"),
    ("non-Cloud-Init image on v2", DB_01, key_option(UBUNTU_22), True, 400, "Ecs.0007"),
    ("key pair unknown", DB_01, key_option(keyname="nobody-key"), False, 400, "Ecs.0314"),
    ("password too short", DB_01, {"adminpass": "Ab1!", "imageid": UBUNTU_22}, False, 400, "Ecs.0011"),
    ("password too long", DB_01, {"adminpass": "Ab1!" * 7, "imageid": UBUNTU_22}, False, 400, "Ecs.0011"),
    ("password two classes", DB_01, {"adminpass": "abcdefgh1234", "imageid": UBUNTU_22}, False, 400, "Ecs.0011"),
    ("password bad char", DB_01, {"adminpass": "Abcdef1!<>", "imageid": UBUNTU_22}, False, 400, "Ecs.0011"),
    ("Windows pw has user", WIN_01, {"adminpass": "Administrator1!", "imageid": WINDOWS_2022}, False, 400, "Ecs.0011"),
    ("Windows pw reversed", WIN_01, {"adminpass": "rotartsinimdA1!", "imageid": WINDOWS_2022}, False, 400, "Ecs.0011"),
    ("Windows pw 3 chars", WIN_01, {"adminpass": "Xy7!strAbc", "imageid": WINDOWS_2022}, False, 400, "Ecs.0011"),
    ("Windows with key pair", WIN_01, key_option(WINDOWS_2022), False, 400, "Ecs.0005"),
    ("Windows on v1", WIN_01, {"adminpass": GOOD_PASSWORD, "imageid": WINDOWS_2022}, False, 400, "Ecs.0007"),
    (
        "both login methods",
        DB_01,
        {"adminpass": GOOD_PASSWORD, "keyname": "ops-key", "userid": USER, "imageid": UBUNTU_22},
        False,
        400,
        "Ecs.0005",
    ),
    ("no login method", DB_01, {"imageid": UBUNTU_22}, False, 400, "Ecs.0005"),
    ("no login method v2", DB_01, {"imageid": UBUNTU_24_CI}, True, 400, "Ecs.0005"),
    ("keyname without userid", DB_01, {"keyname": "ops-key", "imageid": UBUNTU_22}, False, 400, "Ecs.0005"),
    ("no imageid", DB_01, {"keyname": "ops-key", "userid": USER}, False, 400, "Ecs.0005"),
    ("bad mode", DB_01, {**key_option(), "mode": "now"}, False, 400, "Ecs.0005"),
    ("bad encrypted flag", DB_01, {**key_option(), "metadata": {"__system__encrypted": "yes"}}, False, 400, "Ecs.0005"),
    ("user_data on v1", DB_01, {**key_option(), "metadata": {"user_data": "aGk="}}, False, 400, "Ecs.0005"),
    ("BYOL", DB_01, {**key_option(), "metadata": {"BYOL": "true"}}, False, 400, "Ecs.0090"),
]


# The Windows password rules are checked where Windows is allowed at all: switch windows_v1 = "allow".
_ALLOW_WINDOWS = {"Windows pw has user", "Windows pw reversed", "Windows pw 3 chars", "Windows with key pair"}


@pytest.mark.parametrize(
    ("server_id", "option", "v2", "status", "code", "switches"),
    [(*r[1:], {"windows_v1": "allow"} if r[0] in _ALLOW_WINDOWS else {}) for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
async def test_refusals(
    cloud: Cloud,
    sim: SimulatorServer,
    server_id: str,
    option: dict[str, Any],
    v2: bool,
    status: int,
    code: str,
    switches: dict[str, str],
) -> None:
    if switches:
        assert (await cloud.http.post("/_sim/switches", json=switches)).status_code == 200
    before = sim.state.summary()["servers"]
    response = await cloud.change_os(server_id, option, v2=v2)
    assert error_of(response) == (status, code), response.text
    assert response.headers["X-Request-Id"]
    assert response.json()["error"]["message"]
    assert sim.state.jobs == {} and sim.state.summary()["servers"] == before


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"", "Common.0002"), (b"{not json", "Ecs.0005"), (b"[1, 2]", "Ecs.0005"), (b'{"os-reinstall": {}}', "Ecs.0005")],
)
async def test_malformed_bodies(cloud: Cloud, body: bytes, code: str) -> None:
    response = await cloud.request("POST", f"/v1/{PROJECT}/cloudservers/{DB_01}/changeos", body=body)
    assert error_of(response) == (400, code)


async def test_change_runs_init_running_success_and_updates_the_server(
    cloud: Cloud, sim: SimulatorServer, clock: ManualClock
) -> None:
    response = await cloud.change_os(DB_01, key_option(UBUNTU_22))
    assert response.status_code == 200
    job_id = response.json()["job_id"]
    assert len(job_id) == 32

    job = await cloud.job(job_id)
    assert job["status"] == "INIT" and job["job_type"] == "changeOS"
    assert job["entities"]["server_id"] == DB_01 and job["entities"]["sub_jobs_total"] == 1
    assert job["end_time"] == "" and job["error_code"] is None and job["fail_reason"] is None
    server = await cloud.server(DB_01)
    assert server["status"] == "REBUILD"
    assert server["OS-EXT-STS:vm_state"] == "stopped" and server["OS-EXT-STS:task_state"] == "rebuilding"

    clock.advance(6)
    job = await cloud.job(job_id)
    assert job["status"] == "RUNNING" and job["entities"]["sub_jobs"][0]["status"] == "RUNNING"
    clock.advance(170)  # 176 s in: the change lasts 3-5 minutes
    assert (await cloud.job(job_id))["status"] == "RUNNING"

    clock.advance(130)
    job = await cloud.job(job_id)
    assert job["status"] == "SUCCESS" and job["end_time"].endswith("Z") and job["end_time"] > job["begin_time"]
    assert job["entities"]["sub_jobs"][0]["status"] == "SUCCESS"
    server = await cloud.server(DB_01)
    assert server["image"]["id"] == UBUNTU_22
    assert server["metadata"]["image_name"] == "ubuntu-22.04" and server["metadata"]["os_type"] == "Linux"
    assert server["metadata"]["metering.image_id"] == UBUNTU_22 and server["key_name"] == "ops-key"
    assert server["OS-EXT-STS:task_state"] is None and server["status"] == "ACTIVE"


async def test_cloud_init_image_on_v2_with_user_data_only(cloud: Cloud, clock: ManualClock) -> None:
    option = {"imageid": UBUNTU_24_CI, "metadata": {"user_data": "I2Nsb3VkLWNvbmZpZwo="}}
    response = await cloud.change_os(DB_01, option, v2=True)
    assert response.status_code == 200, response.text
    clock.advance(400)
    assert (await cloud.job(response.json()["job_id"]))["status"] == "SUCCESS"
    server = await cloud.server(DB_01)
    assert server["metadata"]["image_name"] == "ubuntu-24.04-cloudinit"


async def test_password_login_and_windows_rules_accept_a_good_password(cloud: Cloud, clock: ManualClock) -> None:
    assert (await cloud.http.post("/_sim/switches", json={"windows_v1": "allow"})).json()["windows_v1"] == "allow"
    response = await cloud.change_os(WIN_01, {"adminpass": GOOD_PASSWORD, "imageid": WINDOWS_2022})
    assert response.status_code == 200, response.text
    clock.advance(400)
    server = await cloud.server(WIN_01)
    assert server["metadata"]["os_type"] == "Windows" and server["key_name"] is None


async def test_server_after_a_failed_change_can_change(cloud: Cloud, clock: ManualClock) -> None:
    before = await cloud.server(FAILED_01)
    assert before["status"] == "ERROR" and before["fault"]["message"]
    response = await cloud.change_os(FAILED_01, key_option())
    assert response.status_code == 200, response.text
    assert (await cloud.server(FAILED_01))["status"] == "REBUILD"
    clock.advance(400)
    after = await cloud.server(FAILED_01)
    assert after["status"] == "ACTIVE" and "fault" not in after


async def test_one_operation_per_server(cloud: Cloud) -> None:
    assert (await cloud.change_os(DB_01, key_option())).status_code == 200
    again = await cloud.change_os(DB_01, key_option())
    assert error_of(again) == (501, "Ecs.0603")
    stop = await cloud.stop(DB_01)
    assert error_of(stop) == (501, "Ecs.0603")


@pytest.mark.parametrize(
    ("server_id", "image_id", "needed", "has"), [(SMALL_01, UBUNTU_22, 40, 20), (DB_01, ROCKY_LARGE, 100, 40)]
)
async def test_image_larger_than_the_system_disk_fails_the_job(
    cloud: Cloud, clock: ManualClock, server_id: str, image_id: str, needed: int, has: int
) -> None:
    response = await cloud.change_os(server_id, key_option(image_id))
    assert response.status_code == 200
    clock.advance(30)
    job = await cloud.job(response.json()["job_id"])
    assert job["status"] == "FAIL" and job["error_code"] == "Ecs.0007"
    assert f"{needed} GB" in job["fail_reason"] and f"{has} GB" in job["fail_reason"]
    sub = job["entities"]["sub_jobs"][0]
    assert sub["status"] == "FAIL" and sub["entities"]["errorcode_message"] == job["fail_reason"]
    server = await cloud.server(server_id)
    assert server["status"] == "SHUTOFF" and server["image"]["id"] != image_id


async def test_with_stop_server_mode_changes_a_running_server(cloud: Cloud, clock: ManualClock) -> None:
    response = await cloud.change_os(WEB_01, {**key_option(), "mode": "withStopServer"})
    assert response.status_code == 200, response.text
    server = await cloud.server(WEB_01)
    assert server["status"] == "ACTIVE" and server["OS-EXT-STS:task_state"] == "powering-off"
    clock.advance(50)
    server = await cloud.server(WEB_01)
    assert server["status"] == "REBUILD" and server["OS-EXT-STS:vm_state"] == "stopped"
    clock.advance(400)
    assert (await cloud.server(WEB_01))["image"]["id"] == UBUNTU_22


async def test_password_never_leaks(cloud: Cloud, sim: SimulatorServer, clock: ManualClock) -> None:
    canary = "Canary!7xQz9Secret"
    weak_canary = "canarycanary"
    ok = await cloud.change_os(DB_01, {"adminpass": canary, "imageid": UBUNTU_22})
    refused = await cloud.change_os(SMALL_01, {"adminpass": weak_canary, "imageid": UBUNTU_22})
    assert ok.status_code == 200 and refused.status_code == 400
    clock.advance(400)
    seen = [refused.text, repr(sim), repr(sim.state), str(sim.state.summary())]
    for path in ("/_sim/requests", "/_sim/state", "/_sim/faults"):
        seen.append((await cloud.http.get(path)).text)
    seen.append((await cloud.job(ok.json()["job_id"])).__repr__())
    seen.append(str(await cloud.server(DB_01)))
    for text in seen:
        assert canary not in text and weak_canary not in text
