"""The cloud client's IMS backup calls against the simulator over loopback: create, job, find, quota, delete."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.cloud import CloudAPIError, CloudClient, Credentials, Endpoints, OutcomeUnknownError, RetryPolicy
from sandbox.simulator import ManualClock, SimulatorServer
from sandbox.simulator.faults import FaultSpec
from tests.support.sim_ids import DB_01, UBUNTU_20, WEB_01

from .conftest import AK, PROJECT_ID, SK, USER_ID, FakeCloud, Reply, make_client

SMALL_01 = "7a9f4d3b-0000-4f00-8000-000000000007"  # stopped
NAME = "ecsbot-db-01-CR-ABC234-20260101T000000Z"
TAGS = {"ecsbot": "backup", "ecsbot-request": "CR-ABC234", "ecsbot-server": DB_01}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(seed=5, clock=clock, catalogue_size=60) as server:
        yield server


@pytest.fixture
async def client(sim: SimulatorServer) -> AsyncIterator[CloudClient]:
    fast = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02, total_timeout=5.0)
    credentials = Credentials(AK, SK, PROJECT_ID, USER_ID)  # type: ignore[arg-type]
    url = sim.base_url
    async with CloudClient(credentials, Endpoints(ecs=url, ims=url, evs=url), retry=fast) as c:
        yield c


async def test_backup_round(client: CloudClient, sim: SimulatorServer, clock: ManualClock) -> None:
    quota = await client.image_quota()
    assert quota.quota == 50 and quota.free == 50 - quota.used

    job_id = await client.create_image(DB_01, NAME, description="before CR-ABC234", tags=TAGS)
    job = await client.get_image_job(job_id)
    assert job.job_type == "imsCreateImageByInstance" and job.status == "INIT" and job.image_id is None
    assert not job.failed and not job.succeeded

    (found,) = await client.find_images(name=NAME)
    assert found.status == "queued" and found.tag_map == TAGS
    assert [i.id for i in await client.find_images(tag=("ecsbot-request", "CR-ABC234"))] == [found.id]
    assert (await client.image_quota()).used == quota.used + 1

    clock.advance(400)
    done = await client.get_image_job(job_id)
    assert done.succeeded and done.image_id == found.id and done.entities.image_name == NAME
    assert done.end_time is not None and done.error_code is None
    image = await client.get_image(found.id)
    assert image is not None and image.status == "active" and image.source_server_id == DB_01
    assert image.parent_image_id == UBUNTU_20 and image.support_fc_inject == "true" and not image.cloud_init
    assert image.description == "before CR-ABC234" and image.created_at is not None

    await client.delete_image(found.id)
    assert not await client.image_gone(found.id)
    clock.advance(10)
    assert await client.image_gone(found.id)
    await client.delete_image(found.id)  # 204 again: repeating a delete is harmless


async def test_refusals_are_typed(client: CloudClient, sim: SimulatorServer) -> None:
    with pytest.raises(CloudAPIError) as running:
        await client.create_image(WEB_01, NAME, tags=TAGS)
    assert (running.value.status, running.value.code) == (400, "IMG.0008") and "stopped" in running.value.hint
    await client.create_image(DB_01, NAME, tags=TAGS)
    with pytest.raises(CloudAPIError) as busy:
        await client.create_image(DB_01, NAME + "-2")
    assert busy.value.code == "IMG.0010"
    sim.state.set_switches({"image_quota": 0})
    with pytest.raises(CloudAPIError) as quota:
        await client.create_image(SMALL_01, NAME + "-3")
    assert quota.value.code == "IMG.0015" and "prune" in quota.value.hint
    with pytest.raises(CloudAPIError) as gone:
        await client.get_image_job("ff80808200000000000000000000dead")
    assert gone.value.code == "IMG.0023"


async def test_progress_when_the_cloud_gives_it(client: CloudClient, sim: SimulatorServer, clock: ManualClock) -> None:
    sim.state.set_switches({"image_job_entities": "while_running"})
    job_id = await client.create_image(DB_01, NAME)
    clock.advance(120)
    job = await client.get_image_job(job_id)
    assert job.status == "RUNNING" and job.entities.process_percent is not None
    assert 0 < job.entities.process_percent < 100


async def test_lost_answer_is_outcome_unknown_and_the_image_is_found(client: CloudClient, sim: SimulatorServer) -> None:
    sim.faults.add(FaultSpec(route="create_image", drop_response=1))
    with pytest.raises(OutcomeUnknownError) as lost:
        await client.create_image(DB_01, NAME, tags=TAGS)
    assert lost.value.operation == "create_image" and lost.value.server_id == DB_01
    (image,) = await client.find_images(name=NAME)  # it was carried out: find it, never create a second
    assert image.tag_map["ecsbot-request"] == "CR-ABC234"
    with pytest.raises(CloudAPIError) as again:
        await client.create_image(DB_01, NAME, tags=TAGS)
    assert again.value.code in ("IMG.0009", "IMG.0010")


async def test_wire_forms(cloud: FakeCloud) -> None:
    """Exactly what the SDK sends (reference §16, §18, §19), checked on a scripted stand-in."""
    cloud.script("POST", "/v2/cloudimages/action", Reply(json={"job_id": "8a12fc664fb4daa3014fb4e581380005"}))
    cloud.script("DELETE", f"/v2/images/{UBUNTU_20}", Reply(status=204, body=b""))
    cloud.script("POST", f"/v1/{PROJECT_ID}/cloudservers/action", Reply(json={"job_id": "j1"}))
    async with make_client(cloud.base_url) as client:
        tags = {"chatops": "backup"}
        await client.create_image(DB_01, "bak-web01-20240101T120000Z", description="pre-changeos", tags=tags)
        await client.delete_image(UBUNTU_20)
        await client.start_server(DB_01)
    create, delete, start = cloud.seen
    assert create.body == (
        b'{"description": "pre-changeos", "image_tags": [{"key": "chatops", "value": "backup"}], '
        b'"instance_id": "7a9f4d3b-0000-4f00-8000-000000000002", "name": "bak-web01-20240101T120000Z"}'
    )
    assert create.headers["Content-Type"] == "application/json;charset=utf-8" and create.signature_ok
    assert create.headers["X-Project-Id"] == PROJECT_ID
    assert delete.method == "DELETE" and delete.body == b"" and delete.signature_ok
    assert start.body == b'{"os-start": {"servers": [{"id": "7a9f4d3b-0000-4f00-8000-000000000002"}]}}'


async def test_success_without_job_id_is_outcome_unknown(cloud: FakeCloud) -> None:
    cloud.script("POST", "/v2/cloudimages/action", Reply(json={}))
    async with make_client(cloud.base_url) as client:
        with pytest.raises(OutcomeUnknownError):
            await client.create_image(DB_01, NAME)


async def test_throttled_ims_is_retried_for_reads(cloud: FakeCloud) -> None:
    cloud.script(
        "GET",
        "/v1/cloudimages/quota",
        Reply(status=400, json={"error": {"code": "IMG.0060", "message": "flow control"}}),
        Reply(json={"quotas": {"resources": [{"type": "image", "used": 3, "quota": 20, "min": 1, "max": 1000}]}}),
    )
    async with make_client(cloud.base_url) as client:
        quota = await client.image_quota()
    assert (quota.used, quota.quota, quota.free) == (3, 20, 17)
    assert len(cloud.requests_to("/v1/cloudimages/quota")) == 2
