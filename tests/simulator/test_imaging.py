"""IMS in the simulator: a private image from a stopped server, its job, the documented refusals, deletion, tags."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.simulator import ManualClock, SimulatorServer

from .conftest import DB_01, PROJECT, UBUNTU_20, UBUNTU_22, WEB_01, Cloud, error_of, key_option

TAGS = [{"key": "ecsbot", "value": "backup"}, {"key": "ecsbot-request", "value": "CR-ABC234"}]


def _body(name: str = "ecsbot-db-01-CR-ABC234-20260101T000000Z", server: str = DB_01, **extra: Any) -> dict[str, Any]:
    return {"name": name, "instance_id": server, "description": "pre-changeos CR-ABC234", "image_tags": TAGS, **extra}


async def _create(cloud: Cloud, **kw: Any) -> httpx.Response:
    return await cloud.post("/v2/cloudimages/action", _body(**kw))


async def _job(cloud: Cloud, job_id: str) -> dict[str, Any]:
    response = await cloud.get(f"/v1/cloudimages/job/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def _images(cloud: Cloud, **query: str) -> list[dict[str, Any]]:
    response = await cloud.get("/v2/cloudimages", **query)
    assert response.status_code == 200, response.text
    return response.json()["images"]


async def _quota(cloud: Cloud) -> dict[str, Any]:
    response = await cloud.get("/v1/cloudimages/quota")
    assert response.status_code == 200, response.text
    return response.json()["quotas"]["resources"][0]


async def test_image_from_a_stopped_server(cloud: Cloud, clock: ManualClock) -> None:
    before = await _quota(cloud)
    created = await _create(cloud)
    assert created.status_code == 200, created.text
    job_id = created.json()["job_id"]
    job = await _job(cloud, job_id)
    assert job["job_type"] == "imsCreateImageByInstance" and job["status"] == "INIT" and job["entities"] == {}
    listed = await _images(cloud, name="ecsbot-db-01-CR-ABC234-20260101T000000Z")
    assert [i["status"] for i in listed] == ["queued"]
    assert (await _quota(cloud))["used"] == before["used"] + 1

    clock.advance(10)
    assert (await _job(cloud, job_id))["status"] == "RUNNING"
    # the server is busy while its disk is imaged: no change, no second image
    assert error_of(await cloud.change_os(DB_01, key_option())) == (501, "Ecs.0603")
    assert error_of(await _create(cloud, name="other")) == (400, "IMG.0010")

    clock.advance(400)
    done = await _job(cloud, job_id)
    assert done["status"] == "SUCCESS" and done["end_time"].endswith("Z") and done["error_code"] is None
    image_id = done["entities"]["image_id"]
    assert done["entities"]["image_name"] == "ecsbot-db-01-CR-ABC234-20260101T000000Z"
    # the same job on the deprecated path
    assert (await cloud.job(job_id))["entities"]["image_id"] == image_id

    (image,) = await _images(cloud, id=image_id)
    assert image["status"] == "active" and image["__imagetype"] == "private" and image["visibility"] == "private"
    assert image["__data_origin"] == f"instance,{DB_01}" and image["__originalimagename"] == UBUNTU_20
    assert image["__support_fc_inject"] == "true"  # ubuntu-20.04 has no Cloud-Init: neither has its backup
    assert image["min_disk"] == 40 and image["owner"] == PROJECT
    assert sorted(image["tags"]) == ["ecsbot-request=CR-ABC234", "ecsbot=backup"]
    assert [i["id"] for i in await _images(cloud, tag="ecsbot-request=CR-ABC234")] == [image_id]


async def test_round_trip_to_the_backup(cloud: Cloud, sim: SimulatorServer, clock: ManualClock) -> None:
    job_id = (await _create(cloud)).json()["job_id"]
    clock.advance(400)
    backup = (await _job(cloud, job_id))["entities"]["image_id"]
    assert (await cloud.change_os(DB_01, key_option(UBUNTU_22))).status_code == 200
    clock.advance(400)
    assert (await cloud.server(DB_01))["image"]["id"] == UBUNTU_22
    assert sim.state.servers[DB_01].os_image_id == UBUNTU_22
    await cloud.stop(DB_01)
    clock.advance(60)
    assert (await cloud.change_os(DB_01, key_option(backup))).status_code == 200
    clock.advance(400)
    server = await cloud.server(DB_01)
    assert server["image"]["id"] == backup  # the ECS shows the image it was given
    state = (await cloud.http.get("/_sim/state")).json()
    (db,) = [s for s in state["servers"] if s["id"] == DB_01]
    assert db["os_image_id"] == UBUNTU_20  # and its disk holds the OS it had before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "x" * 129}, "IMG.0002"),
        ({"name": "bad:name"}, "IMG.0003"),
        ({"name": " lead"}, "IMG.0003"),
        ({"description": "y" * 1025}, "IMG.0004"),
        ({"server": "no-such-server"}, "IMG.0005"),
        ({"tags": ["a.b"]}, "IMG.0001"),  # tags and image_tags together
        ({"image_tags": [{"key": "k" * 37, "value": ""}]}, "IMG.0115"),
        ({"image_tags": [{"key": f"k{n}", "value": ""} for n in range(11)]}, "IMG.0116"),
        ({"flavor": "s6.large.2"}, "IMG.0001"),  # not a field of the request
    ],
)
async def test_documented_refusals(cloud: Cloud, body: dict[str, Any], code: str) -> None:
    assert error_of(await _create(cloud, **body)) == (400, code)


async def test_running_server_is_refused_unless_the_switch_allows(cloud: Cloud, clock: ManualClock) -> None:
    assert error_of(await _create(cloud, server=WEB_01)) == (400, "IMG.0008")
    await cloud.http.post("/_sim/switches", json={"image_from_running": "allow"})
    assert (await _create(cloud, server=WEB_01)).status_code == 200


async def test_duplicate_name_and_quota(cloud: Cloud, clock: ManualClock) -> None:
    assert (await _create(cloud)).status_code == 200
    clock.advance(400)
    await cloud.stop(WEB_01)
    clock.advance(60)
    assert error_of(await _create(cloud, server=WEB_01)) == (400, "IMG.0009")
    used = (await _quota(cloud))["used"]
    await cloud.http.post("/_sim/switches", json={"image_quota": used})
    assert (await _quota(cloud))["quota"] == used
    assert error_of(await _create(cloud, name="another", server=WEB_01)) == (400, "IMG.0015")


@pytest.mark.parametrize("leftover", ["killed", "removed"])
async def test_fault_fails_the_job(cloud: Cloud, clock: ManualClock, leftover: str) -> None:
    await cloud.http.post("/_sim/switches", json={"failed_image": leftover})
    added = await cloud.http.post("/_sim/faults", json={"fail_image_jobs": {"server_id": DB_01}})
    assert added.status_code == 201 and added.json()["fail_image_jobs"][0]["server_id"] == DB_01
    job_id = (await _create(cloud)).json()["job_id"]
    clock.advance(400)
    job = await _job(cloud, job_id)
    assert job["status"] == "FAIL" and job["error_code"] == "Common.0001" and job["fail_reason"]
    assert job["entities"] == {}
    statuses = [i["status"] for i in await _images(cloud, name=_body()["name"])]
    assert statuses == (["killed"] if leftover == "killed" else [])
    assert (await cloud.server(DB_01))["status"] == "SHUTOFF"
    assert (await cloud.change_os(DB_01, key_option())).status_code == 200  # the server is free again


async def test_progress_while_running_when_switched_on(cloud: Cloud, clock: ManualClock) -> None:
    await cloud.http.post("/_sim/switches", json={"image_job_entities": "while_running"})
    job_id = (await _create(cloud)).json()["job_id"]
    clock.advance(100)
    running = await _job(cloud, job_id)
    assert running["status"] == "RUNNING" and running["entities"]["image_id"]
    assert 0 < running["entities"]["process_percent"] < 100


async def test_unknown_image_job(cloud: Cloud) -> None:
    assert error_of(await cloud.get("/v1/cloudimages/job/ff80808200000000000000000000dead")) == (400, "IMG.0023")


async def test_delete_then_gone(cloud: Cloud, clock: ManualClock) -> None:
    job_id = (await _create(cloud)).json()["job_id"]
    (queued,) = await _images(cloud, name=_body()["name"])
    assert error_of(await cloud.request("DELETE", f"/v2/images/{queued['id']}")) == (400, "IMG.0090")
    clock.advance(400)
    image_id = (await _job(cloud, job_id))["entities"]["image_id"]
    deleted = await cloud.request("DELETE", f"/v2/images/{image_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert [i["id"] for i in await _images(cloud, id=image_id)] == [image_id]  # not gone at once
    clock.advance(10)
    assert await _images(cloud, id=image_id) == []
    assert (await cloud.request("DELETE", f"/v2/images/{image_id}")).status_code == 204  # always 204
    assert error_of(await cloud.request("DELETE", f"/v2/images/{UBUNTU_22}")) == (400, "IMG.0094")


async def test_image_tags(cloud: Cloud, clock: ManualClock) -> None:
    job_id = (await _create(cloud)).json()["job_id"]
    clock.advance(400)
    image_id = (await _job(cloud, job_id))["entities"]["image_id"]
    base = f"/v2/{PROJECT}/images/{image_id}/tags"
    assert (await cloud.post(base, {"tag": {"key": "keep", "value": "7d"}})).status_code == 204
    action = {"action": "delete", "tags": [{"key": "ecsbot-request"}, {"key": "missing"}]}
    assert (await cloud.post(f"{base}/action", action)).status_code == 204
    tags = (await cloud.get(base)).json()["tags"]
    assert sorted((t["key"], t["value"]) for t in tags) == [("ecsbot", "backup"), ("keep", "7d")]
    assert (await cloud.request("DELETE", f"{base}/keep")).status_code == 204
    assert (await cloud.request("DELETE", f"{base}/keep")).status_code == 404
    assert error_of(await cloud.get(f"/v2/{PROJECT}/images/00000000-0000-4000-8000-000000000000/tags")) == (
        400,
        "IMG.0027",
    )


async def test_the_shared_catalogue_is_not_changed(clock: ManualClock) -> None:
    """Built catalogues are cached across simulators: an image made in one must not appear in the next."""
    async with SimulatorServer(seed=7, clock=clock, catalogue_size=60) as first:
        client = Cloud(first.base_url)
        assert (await _create(client)).status_code == 200
        count = len(first.state.catalogue)
        await client.aclose()
    async with SimulatorServer(seed=7, clock=clock, catalogue_size=60) as second:
        assert len(second.state.catalogue) == count - 1
