"""CloudClient over real HTTP against the FakeCloud in conftest: wire format, parsing, errors, retries."""

from __future__ import annotations

import json
import socket
import time

import pytest

from bot.app import cloud_client
from bot.cloud import (
    USER_AGENT,
    ChangeOsOption,
    CloudAPIError,
    CloudClient,
    CloudUnreachableError,
    Endpoints,
    ImageQuery,
    OutcomeUnknownError,
    RetryPolicy,
    StopType,
    ThrottledError,
)
from bot.config import Settings

from .conftest import (
    AK,
    IMAGE_ID,
    JOB_ID,
    PROJECT_ID,
    SERVER_ID,
    SK,
    USER_ID,
    FakeCloud,
    Reply,
    make_client,
)

P = PROJECT_ID
SERVER_PATH = f"/v1/{P}/cloudservers/{SERVER_ID}"
JOB_PATH = f"/v1/{P}/jobs/{JOB_ID}"
CHANGEOS_PATH = f"{SERVER_PATH}/changeos"
ACTION_PATH = f"/v1/{P}/cloudservers/action"
SERVER_JSON = {"server": {"id": SERVER_ID, "name": "web-01", "status": "SHUTOFF", "image": {"id": IMAGE_ID}}}
KEY_OPTION = ChangeOsOption(imageid=IMAGE_ID, keyname="kp-ops", userid=USER_ID)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------ wire format


async def test_get_looks_like_the_sdk(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("GET", SERVER_PATH, Reply(json=SERVER_JSON))
    server = await client.get_server(SERVER_ID)
    assert server.name == "web-01" and server.image_id == IMAGE_ID
    [seen] = cloud.seen
    assert seen.signature_ok and seen.query == "" and seen.body == b""
    h = {k.lower(): v for k, v in seen.headers.items()}
    assert h["content-type"] == "application/json"
    assert h["user-agent"] == USER_AGENT
    assert h["x-project-id"] == P
    assert h["host"] == cloud.base_url.removeprefix("http://")  # with the port, as the SDK sends it
    assert "content-length" not in h
    assert h["authorization"].startswith(
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, Signature="
    )


async def test_post_looks_like_the_sdk(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("POST", CHANGEOS_PATH, Reply(json={"job_id": JOB_ID}))
    assert await client.change_os(SERVER_ID, KEY_OPTION) == JOB_ID
    [seen] = cloud.seen
    assert seen.signature_ok
    h = {k.lower(): v for k, v in seen.headers.items()}
    assert h["content-type"] == "application/json;charset=utf-8"
    assert seen.body == KEY_OPTION.to_body()
    assert h["content-length"] == str(len(seen.body))


async def test_change_os_v2_path_and_body(cloud: FakeCloud, client: CloudClient) -> None:
    path = f"/v2/{P}/cloudservers/{SERVER_ID}/changeos"
    cloud.script("POST", path, Reply(json={"job_id": "j2"}))
    option = ChangeOsOption(
        imageid=IMAGE_ID, adminpass="Pa55w0rd!x", mode="withStopServer", metadata={"__system__encrypted": "0"}
    )
    assert await client.change_os(SERVER_ID, option, cloud_init=True) == "j2"
    assert cloud.seen[0].path == path and cloud.seen[0].body == option.to_body(cloud_init=True)


async def test_stop_server(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("POST", ACTION_PATH, Reply(json={"job_id": "stop-1"}))
    assert await client.stop_server(SERVER_ID) == "stop-1"
    assert await client.stop_server(SERVER_ID, StopType.HARD) == "stop-1"
    assert [s.body for s in cloud.seen] == [
        f'{{"os-stop": {{"servers": [{{"id": "{SERVER_ID}"}}], "type": "SOFT"}}}}'.encode(),
        f'{{"os-stop": {{"servers": [{{"id": "{SERVER_ID}"}}], "type": "HARD"}}}}'.encode(),
    ]


async def test_path_params_are_fully_quoted(cloud: FakeCloud, client: CloudClient) -> None:
    with pytest.raises(CloudAPIError):
        await client.get_server("../jobs/x y")
    assert cloud.seen[0].path == f"/v1/{P}/cloudservers/..%2Fjobs%2Fx%20y"
    assert cloud.seen[0].signature_ok


async def test_find_servers_sends_the_signed_canonical_query(cloud: FakeCloud, client: CloudClient) -> None:
    servers = [
        {"id": "1", "name": "web 01"},
        {"id": "2", "name": "web 01-old"},
        {"id": "3", "name": "WEB 01"},
    ]
    cloud.script("GET", f"/v1/{P}/cloudservers/detail", Reply(json={"count": 3, "servers": servers}))
    found = await client.find_servers("web 01")
    assert [s.id for s in found] == ["1"]
    assert cloud.seen[0].query == "limit=1000&name=web%2001" and cloud.seen[0].signature_ok
    listed = await client.list_servers(status="ACTIVE", offset=2, limit=5)
    assert len(listed) == 3
    assert cloud.seen[1].query == "limit=5&offset=2&status=ACTIVE" and cloud.seen[1].signature_ok


async def test_images_use_the_ims_path_and_query(cloud: FakeCloud, client: CloudClient) -> None:
    image = {"id": IMAGE_ID, "name": "Ubuntu 22.04", "status": "active", "__os_type": "Linux", "min_disk": 40}
    cloud.script("GET", "/v2/cloudimages", Reply(json={"images": [image]}), Reply(json={"images": []}))
    got = await client.get_image(IMAGE_ID)
    assert got is not None and got.min_disk == 40 and got.os_type == "Linux"
    assert cloud.seen[0].query == f"id={IMAGE_ID}"
    assert await client.get_image(IMAGE_ID) is None
    await client.list_images(os_type="Linux", name="Ubuntu 22.04", status="active", limit=10, marker="m")
    assert cloud.seen[2].query == "__os_type=Linux&limit=10&marker=m&name=Ubuntu%2022.04&status=active"
    assert all(s.signature_ok and s.headers["X-Project-Id"] == P for s in cloud.seen)


async def test_keypairs_volume_and_job(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script(
        "GET",
        f"/v2.1/{P}/os-keypairs",
        Reply(json={"keypairs": [{"keypair": {"name": "kp-ops", "fingerprint": "aa", "type": "ssh"}}]}),
    )
    cloud.script(
        "GET", f"/v2/{P}/cloudvolumes/vol-1", Reply(json={"volume": {"id": "vol-1", "size": 40, "bootable": "true"}})
    )
    cloud.script(
        "GET",
        JOB_PATH,
        Reply(json={"job_id": JOB_ID, "status": "RUNNING", "job_type": "changeOS", "entities": [], "end_time": ""}),
    )
    assert [k.name for k in await client.list_keypairs()] == ["kp-ops"]
    volume = await client.get_volume("vol-1")
    assert volume.size == 40 and volume.bootable
    job = await client.get_job(JOB_ID)
    assert job.status == "RUNNING" and job.sub_jobs == [] and job.end_time is None


async def test_endpoints_with_a_base_path(cloud: FakeCloud) -> None:
    cloud.script("GET", f"/ecs{SERVER_PATH}", Reply(json=SERVER_JSON))
    async with CloudClient(
        make_client(cloud.base_url).credentials,
        Endpoints.for_region("x", ecs=cloud.base_url + "/ecs/", ims=cloud.base_url, evs=cloud.base_url),
        retry=RetryPolicy(max_attempts=1),
    ) as client:
        assert (await client.get_server(SERVER_ID)).id == SERVER_ID
    assert cloud.seen[0].signature_ok


# ------------------------------------------------------------------------------------------ errors


async def test_missing_server_is_ecs_0114(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script(
        "GET",
        SERVER_PATH,
        Reply(
            404,
            {"error": {"message": "Instance could not be found.", "code": "Ecs.0114"}},
            headers={"X-Request-Id": "r-1"},
        ),
    )
    with pytest.raises(CloudAPIError) as info:
        await client.get_server(SERVER_ID)
    assert (info.value.status, info.value.code, info.value.request_id) == (404, "Ecs.0114", "r-1")
    assert len(cloud.seen) == 1  # a 4xx is not retried


async def test_nova_style_404_is_normalised(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("GET", SERVER_PATH, Reply(404, {"itemNotFound": {"message": "not found", "code": 404}}))
    with pytest.raises(CloudAPIError) as info:
        await client.get_server(SERVER_ID)
    assert (info.value.status, info.value.code) == (404, "Ecs.0114")


async def test_wrong_secret_key_reports_the_signature(cloud: FakeCloud) -> None:
    async with make_client(cloud.base_url, secret_key="not-the-right-key") as client:
        with pytest.raises(CloudAPIError) as info:
            await client.get_job(JOB_ID)
    assert info.value.code == "APIGW.0301" and "signature" in str(info.value)
    assert not cloud.seen[0].signature_ok


async def test_unexpected_success_bodies(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("GET", SERVER_PATH, Reply(json={"id": SERVER_ID}), Reply(body=b"<html>", status=200))
    with pytest.raises(CloudAPIError, match="no 'server' object"):
        await client.get_server(SERVER_ID)
    with pytest.raises(CloudAPIError, match="not JSON"):
        await client.get_server(SERVER_ID)
    cloud.script("GET", JOB_PATH, Reply(json={"status": "RUNNING"}), Reply(json=[]))
    assert (await client.get_job(JOB_ID)).job_id == JOB_ID  # an answer without its own id is tolerated
    with pytest.raises(CloudAPIError, match="not a JSON object"):
        await client.get_job(JOB_ID)


async def test_write_error_answer_is_raised_not_retried(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("POST", CHANGEOS_PATH, Reply(400, {"error": {"code": "Ecs.0605", "message": "ECS locked."}}))
    with pytest.raises(CloudAPIError) as info:
        await client.change_os(SERVER_ID, KEY_OPTION)
    assert info.value.code == "Ecs.0605" and "unlock" in info.value.hint
    assert len(cloud.seen) == 1


# ------------------------------------------------------------------------------------------ retries (reads)


async def test_429_with_retry_after_then_200(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script(
        "GET",
        JOB_PATH,
        Reply(429, {"error_code": "APIGW.0308", "error_msg": "throttled"}, headers={"Retry-After": "0.2"}),
        Reply(json={"job_id": JOB_ID, "status": "SUCCESS"}),
    )
    started = time.monotonic()
    job = await client.get_job(JOB_ID)
    assert job.succeeded and len(cloud.seen) == 2
    assert time.monotonic() - started >= 0.2  # Retry-After honoured, not the 10 ms backoff


async def test_503_then_200(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("GET", SERVER_PATH, Reply(503, body=b"busy"), Reply(json=SERVER_JSON))
    assert (await client.get_server(SERVER_ID)).id == SERVER_ID
    assert len(cloud.seen) == 2
    assert cloud.seen[0].headers["X-Sdk-Date"] and all(s.signature_ok for s in cloud.seen)


async def test_flow_limit_202_is_retried(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script(
        "GET",
        JOB_PATH,
        Reply(202, {"error": {"code": "Common.0024", "message": "Flow limit exceeded."}}),
        Reply(json={"job_id": JOB_ID, "status": "INIT"}),
    )
    assert (await client.get_job(JOB_ID)).status == "INIT"
    assert len(cloud.seen) == 2


async def test_persistent_5xx_gives_the_last_error(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("GET", SERVER_PATH, Reply(501, {"error": {"code": "Ecs.0603", "message": "busy"}}))
    with pytest.raises(CloudAPIError) as info:
        await client.get_server(SERVER_ID)
    assert info.value.code == "Ecs.0603" and info.value.status == 501
    assert len(cloud.seen) == 3  # FAST_RETRY.max_attempts


async def test_retry_after_beyond_the_deadline_gives_up_at_once(cloud: FakeCloud) -> None:
    cloud.script(
        "GET", JOB_PATH, Reply(429, {"error_code": "APIGW.0308", "error_msg": "t"}, headers={"Retry-After": "60"})
    )
    policy = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05, total_timeout=2.0)
    async with make_client(cloud.base_url, retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(ThrottledError) as info:
            await client.get_job(JOB_ID)
    assert info.value.retry_after == 60 and time.monotonic() - started < 1.0
    assert len(cloud.seen) == 1


async def test_read_timeout_is_retried_then_unreachable(cloud: FakeCloud) -> None:
    cloud.script("GET", SERVER_PATH, Reply(action="hang"))
    async with make_client(cloud.base_url, timeout=0.2) as client:
        with pytest.raises(CloudUnreachableError) as info:
            await client.get_server(SERVER_ID)
    assert "ReadTimeout" in str(info.value)
    assert len(cloud.seen) == 3


async def test_dropped_read_is_retried(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("GET", SERVER_PATH, Reply(action="close"), Reply(json=SERVER_JSON))
    assert (await client.get_server(SERVER_ID)).id == SERVER_ID
    assert len(cloud.seen) == 2


async def test_refused_connection_read() -> None:
    async with make_client(f"http://127.0.0.1:{_free_port()}") as client:
        with pytest.raises(CloudUnreachableError, match="ConnectError"):
            await client.list_keypairs()


# ------------------------------------------------------------------------------------------ writes: never blind


async def test_write_dropped_without_answer_is_outcome_unknown(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("POST", CHANGEOS_PATH, Reply(action="close"), Reply(json={"job_id": "second"}))
    with pytest.raises(OutcomeUnknownError) as info:
        await client.change_os(SERVER_ID, KEY_OPTION)
    assert (info.value.operation, info.value.server_id) == ("change_os", SERVER_ID)
    assert len(cloud.requests_to(CHANGEOS_PATH)) == 1  # it did reach the cloud, and was not resent


async def test_write_timeout_is_outcome_unknown(cloud: FakeCloud) -> None:
    cloud.script("POST", ACTION_PATH, Reply(action="hang"))
    async with make_client(cloud.base_url, timeout=0.2) as client:
        with pytest.raises(OutcomeUnknownError, match="ReadTimeout"):
            await client.stop_server(SERVER_ID)
    assert len(cloud.seen) == 1


async def test_write_5xx_is_an_answer(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("POST", CHANGEOS_PATH, Reply(503, {"error": {"code": "Common.0001", "message": "oops"}}))
    with pytest.raises(CloudAPIError) as info:
        await client.change_os(SERVER_ID, KEY_OPTION)
    assert not isinstance(info.value, OutcomeUnknownError) and info.value.status == 503
    assert len(cloud.seen) == 1


async def test_write_429_is_throttled_for_the_caller(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script(
        "POST",
        ACTION_PATH,
        Reply(429, {"error": {"code": "Common.1503", "message": "flow"}}, headers={"Retry-After": "3"}),
    )
    with pytest.raises(ThrottledError) as info:
        await client.stop_server(SERVER_ID)
    assert info.value.retry_after == 3.0 and len(cloud.seen) == 1


async def test_write_success_without_job_id_is_outcome_unknown(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("POST", CHANGEOS_PATH, Reply(json={"order_id": "o-1"}))
    with pytest.raises(OutcomeUnknownError, match="without a job_id"):
        await client.change_os(SERVER_ID, KEY_OPTION)


async def test_refused_write_is_unreachable_not_unknown() -> None:
    async with make_client(f"http://127.0.0.1:{_free_port()}") as client:
        with pytest.raises(CloudUnreachableError, match="nothing was changed"):
            await client.change_os(SERVER_ID, KEY_OPTION)


# ------------------------------------------------------------------------------------------ construction


def test_endpoints_for_region() -> None:
    eps = Endpoints.for_region("my-kualalumpur-1")
    assert eps.ecs == "https://ecs.my-kualalumpur-1.myhuaweicloud.com"
    assert eps.ims == "https://ims.my-kualalumpur-1.myhuaweicloud.com"
    assert eps.evs == "https://evs.my-kualalumpur-1.myhuaweicloud.com"
    over = Endpoints.for_region("my-kualalumpur-1", ecs="http://127.0.0.1:9000/", ims="ims.example.com")
    assert over.ecs == "http://127.0.0.1:9000" and over.ims == "https://ims.example.com"
    with pytest.raises(ValueError, match="not an http"):
        Endpoints.for_region("r", ecs="ftp://x")


async def test_the_root_builds_the_client_from_settings(cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        HUAWEICLOUD_SDK_AK=AK,
        HUAWEICLOUD_SDK_SK=SK,
        HUAWEICLOUD_PROJECT_ID=P,
        HUAWEICLOUD_USER_ID=USER_ID,
        ECS_ENDPOINT=cloud.base_url,
        IMS_ENDPOINT=cloud.base_url,
    )
    cloud.script("GET", JOB_PATH, Reply(json={"job_id": JOB_ID, "status": "SUCCESS"}))
    async with cloud_client(settings) as client:
        assert client.credentials.user_id == USER_ID
        assert client.endpoints.evs == "https://evs.my-kualalumpur-1.myhuaweicloud.com"
        assert (await client.get_job(JOB_ID)).succeeded
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK, HUAWEICLOUD_PROJECT_ID"):
        cloud_client(Settings(_env_file=None))  # type: ignore[call-arg]


def test_retry_policy_validation_and_jitter() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    policy = RetryPolicy(base_delay=0.5, max_delay=2.0)
    delays = [policy.backoff(attempt) for attempt in range(10) for _ in range(20)]
    assert all(0 <= d <= 2.0 for d in delays) and len(set(delays)) > 100
    assert max(policy.backoff(0) for _ in range(200)) <= 0.5


async def test_connections_are_reused(cloud: FakeCloud, client: CloudClient) -> None:
    cloud.script("GET", JOB_PATH, Reply(json={"job_id": JOB_ID, "status": "RUNNING"}))
    for _ in range(5):
        await client.get_job(JOB_ID)
    assert len(cloud.seen) == 5
    assert len(cloud.connections) == 1  # one keep-alive connection served every call


def test_body_is_json_exactly_once() -> None:
    assert json.loads(KEY_OPTION.to_body())["os-change"]["userid"] == USER_ID


async def test_the_catalogue_follows_markers_to_the_end(cloud: FakeCloud, client: CloudClient) -> None:
    def page(*ids: str) -> Reply:
        return Reply(json={"images": [{"id": i, "name": f"img-{i}", "status": "active"} for i in ids]})

    cloud.script("GET", "/v2/cloudimages", page("a", "b"), page("c", "d"), page("e"))
    query = ImageQuery(imagetype="gold", architecture="arm")
    catalogue = await client.catalogue(query, page_size=2)
    assert [i.id for i in catalogue.images] == ["a", "b", "c", "d", "e"] and catalogue.complete
    assert [s.query for s in cloud.seen] == [
        "__imagetype=gold&architecture=arm&limit=2&status=active&virtual_env_type=FusionCompute",
        "__imagetype=gold&architecture=arm&limit=2&marker=b&status=active&virtual_env_type=FusionCompute",
        "__imagetype=gold&architecture=arm&limit=2&marker=d&status=active&virtual_env_type=FusionCompute",
    ]


async def test_the_catalogue_stops_at_its_bound_and_says_so(
    cloud: FakeCloud, client: CloudClient, caplog: pytest.LogCaptureFixture
) -> None:
    pages = [Reply(json={"images": [{"id": f"{n}-{k}"} for k in range(2)]}) for n in range(3)]
    cloud.script("GET", "/v2/cloudimages", *pages)
    catalogue = await client.catalogue(ImageQuery(), page_size=2, max_images=3)
    assert len(catalogue.images) == 3 and not catalogue.complete
    assert "cut at 3 images" in caplog.text
