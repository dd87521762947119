"""The official Python SDK (huaweicloudsdkecs), unchanged, against the simulator: every reply parses fully."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkecs.v2 import (
    BatchStopServersOption,
    BatchStopServersRequest,
    BatchStopServersRequestBody,
    ChangeServerOsWithoutCloudInitOption,
    ChangeServerOsWithoutCloudInitRequest,
    ChangeServerOsWithoutCloudInitRequestBody,
    EcsClient,
    ListServersDetailsRequest,
    NovaListKeypairsRequest,
    ServerId,
    ShowJobRequest,
    ShowServerRequest,
)

from sandbox.simulator import ManualClock, SimulatorServer
from tests.support.waiting import until

from .conftest import AK, DB_01, PROJECT, SK, UBUNTU_20, UBUNTU_22, USER, WEB_01


def _client(base_url: str, sk: str = SK) -> Any:
    return (
        EcsClient.new_builder().with_credentials(BasicCredentials(AK, sk, PROJECT)).with_endpoints([base_url]).build()
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_sdk_reads_and_writes_parse_fully(fast_sim: SimulatorServer) -> None:
    client = _client(fast_sim.base_url)

    shown = (await asyncio.to_thread(client.show_server, ShowServerRequest(server_id=WEB_01))).server
    assert shown.id == WEB_01 and shown.name == "web-01" and shown.status == "ACTIVE"
    assert shown.os_ext_st_svm_state == "active" and shown.os_ext_st_stask_state is None
    assert shown.os_ext_st_spower_state == 1 and shown.locked is False
    assert shown.image.id == UBUNTU_20 and shown.metadata["image_name"] == "ubuntu-20.04"
    assert shown.flavor.vcpus == "2" and shown.flavor.ram == "4096"
    boot = [v for v in shown.os_extended_volumesvolumes_attached if v.boot_index == "0"]
    assert len(boot) == 1 and boot[0].device == "/dev/vda"
    assert shown.addresses and next(iter(shown.addresses.values()))[0].addr == "192.168.0.11"

    listed = await asyncio.to_thread(client.list_servers_details, ListServersDetailsRequest(name="app-01"))
    assert listed.count == 2 and sorted(s.name for s in listed.servers) == ["app-01", "app-01"]

    keypairs = await asyncio.to_thread(client.nova_list_keypairs, NovaListKeypairsRequest())
    assert sorted(k.keypair.name for k in keypairs.keypairs) == ["deploy-key", "ops-key"]
    assert all(k.keypair.fingerprint.startswith("SHA256:") for k in keypairs.keypairs)

    stop_body = BatchStopServersRequestBody(os_stop=BatchStopServersOption(servers=[ServerId(id=WEB_01)], type="SOFT"))
    stop = await asyncio.to_thread(client.batch_stop_servers, BatchStopServersRequest(body=stop_body))
    assert stop.job_id and len(stop.job_id) == 32

    async def stopped() -> bool:
        job = await asyncio.to_thread(client.show_job, ShowJobRequest(job_id=stop.job_id))
        return job.status == "SUCCESS"

    await until(stopped, timeout=10, what="the stop job")
    after = (await asyncio.to_thread(client.show_server, ShowServerRequest(server_id=WEB_01))).server
    assert after.status == "SHUTOFF" and after.os_ext_st_svm_state == "stopped"

    option = ChangeServerOsWithoutCloudInitOption(keyname="ops-key", userid=USER, imageid=UBUNTU_22)
    request = ChangeServerOsWithoutCloudInitRequest(
        server_id=DB_01, body=ChangeServerOsWithoutCloudInitRequestBody(os_change=option)
    )
    change = await asyncio.to_thread(client.change_server_os_without_cloud_init, request)
    assert change.job_id

    job = await asyncio.to_thread(client.show_job, ShowJobRequest(job_id=change.job_id))
    assert job.job_type == "changeOS" and job.status in ("INIT", "RUNNING")
    assert job.entities.server_id == DB_01 and job.entities.sub_jobs_total == 1
    assert job.entities.sub_jobs[0].entities.server_id == DB_01
    assert job.end_time == "" and job.error_code is None

    async def changed() -> bool:
        return (await asyncio.to_thread(client.show_job, ShowJobRequest(job_id=change.job_id))).status == "SUCCESS"

    await until(changed, timeout=10, what="the change-OS job")
    done = await asyncio.to_thread(client.show_job, ShowJobRequest(job_id=change.job_id))
    assert done.end_time.endswith("Z") and done.entities.sub_jobs[0].status == "SUCCESS"
    server = (await asyncio.to_thread(client.show_server, ShowServerRequest(server_id=DB_01))).server
    assert server.image.id == UBUNTU_22 and server.metadata["image_name"] == "ubuntu-22.04"


async def test_sdk_sees_documented_errors(fast_sim: SimulatorServer) -> None:
    client = _client(fast_sim.base_url)
    with pytest.raises(ClientRequestException) as missing:
        await asyncio.to_thread(client.show_server, ShowServerRequest(server_id="no-such-server"))
    assert (missing.value.status_code, missing.value.error_code) == (404, "Ecs.0114")
    assert missing.value.request_id

    wrong = _client(fast_sim.base_url, sk="not-the-secret-key-000000000000000000000")
    with pytest.raises(ClientRequestException) as denied:
        await asyncio.to_thread(wrong.show_server, ShowServerRequest(server_id=WEB_01))
    assert (denied.value.status_code, denied.value.error_code) == (401, "APIGW.0301")


async def test_ims_sdk_backup_calls_parse_fully(sim: SimulatorServer, clock: ManualClock) -> None:
    """huaweicloudsdkims, unchanged: create an image from a server, follow its job, read the quota, delete it."""
    from huaweicloudsdkims.v2 import (
        CreateImageRequest,
        CreateImageRequestBody,
        GlanceDeleteImageRequest,
        ImsClient,
        ShowImageQuotaRequest,
        ShowJobProgressRequest,
        TagKeyValue,
    )

    ims = ImsClient.new_builder().with_credentials(BasicCredentials(AK, SK, PROJECT)).with_endpoints([sim.base_url])
    client = ims.build()
    quota = await asyncio.to_thread(client.show_image_quota, ShowImageQuotaRequest())
    (images,) = [r for r in quota.quotas.resources if r.type == "image"]
    assert images.quota == 50 and isinstance(images.used, int)

    body = CreateImageRequestBody(
        name="bak-db01-20240101T120000Z", instance_id=DB_01, image_tags=[TagKeyValue(key="chatops", value="backup")]
    )
    created = await asyncio.to_thread(client.create_image, CreateImageRequest(body=body))
    assert created.job_id
    clock.advance(400)
    job = await asyncio.to_thread(client.show_job_progress, ShowJobProgressRequest(job_id=created.job_id))
    assert job.status == "SUCCESS" and job.job_type == "imsCreateImageByInstance"
    assert job.entities.image_name == "bak-db01-20240101T120000Z" and job.entities.image_id

    deleted = await asyncio.to_thread(
        client.glance_delete_image, GlanceDeleteImageRequest(image_id=job.entities.image_id)
    )
    assert deleted.status_code == 204

    with pytest.raises(ClientRequestException) as running:
        body = CreateImageRequestBody(name="bak-web01", instance_id=WEB_01)
        await asyncio.to_thread(client.create_image, CreateImageRequest(body=body))
    assert (running.value.status_code, running.value.error_code) == (400, "IMG.0008")
