"""Temporary AK/SK with a security token, and ECS agency credentials from the metadata service that expire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.cloud.signer import parse_date
from sandbox.simulator import ManualClock, SimulatorServer
from sandbox.simulator.auth import check_signature
from sandbox.simulator.credentials import Credential, CredentialBook
from sandbox.simulator.fixtures import AgencySettings, load_fixtures
from tests.support.waiting import until

from .conftest import PROJECT, WEB_01, Cloud

SERVER_PATH = f"/v1/{PROJECT}/cloudservers/{WEB_01}"

# The SDK's own vectors for temporary credentials (reference §22), copied here: the token is signed.
TMP_AK, TMP_SK, TMP_TOKEN = "EXAMPLETMPAK0000000", "EXAMPLETMPSK000000000000000000000000000", "EXAMPLE-SECURITY-TOKEN"
TMP_HEADERS = {
    "Content-Type": "application/json;charset=UTF-8",
    "X-Project-Id": PROJECT,
    "X-Sdk-Date": "20240101T120000Z",
    "X-Security-Token": TMP_TOKEN,
    "Host": "ims.my-kualalumpur-1.myhuaweicloud.com",
}
TMP_BODY = (
    b'{"image_tags": [{"key": "chatops", "value": "backup"}], "instance_id": '
    b'"7a9f4d3b-0000-4f00-8000-000000000001", "name": "bak-web01-20240101T120000Z"}'
)
TMP_SIGNED = "content-type;host;x-project-id;x-sdk-date;x-security-token"
TMP_SIG = "b932b788748f807d7c0c823bb2e302b2cee4b5289a8c826be73ef685dc9c49aa"


def test_sdk_vector_for_temporary_credentials_verifies() -> None:
    moment = parse_date("20240101T120000Z")
    book = CredentialBook(Credential("PERMANENTAK000000000", "x"), AgencySettings(), wall=lambda: moment.timestamp())
    book.issued[TMP_AK] = Credential(TMP_AK, TMP_SK, TMP_TOKEN, moment.timestamp() + 900, "temporary")
    auth = f"SDK-HMAC-SHA256 Access={TMP_AK}, SignedHeaders={TMP_SIGNED}, Signature={TMP_SIG}"
    args: dict[str, Any] = {
        "credentials": book,
        "method": "POST",
        "path": "/v2/cloudimages/action",
        "query": [],
        "now": moment,
    }
    credential, denied = check_signature(headers={**TMP_HEADERS, "Authorization": auth}, body=TMP_BODY, **args)
    assert denied is None and credential is not None and credential.source == "temporary"
    wrong = {**TMP_HEADERS, "X-Security-Token": "OTHER", "Authorization": auth}
    assert "invalid" in str(check_signature(headers=wrong, body=TMP_BODY, **args)[1])
    book.wall = lambda: moment.timestamp() + 901
    assert "expired" in str(check_signature(headers={**TMP_HEADERS, "Authorization": auth}, body=TMP_BODY, **args)[1])


async def _temporary(cloud: Cloud, ttl: float = 900) -> dict[str, str]:
    response = await cloud.http.post("/_sim/credentials", json={"ttl": ttl})
    assert response.status_code == 201, response.text
    return response.json()["credential"]


def _as(cloud: Cloud, credential: dict[str, str]) -> Cloud:
    return Cloud(cloud.base_url, ak=credential["access"], sk=credential["secret"])


def _denied(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error_code"] == "APIGW.0301" and set(body) == {"error_msg", "error_code", "request_id"}
    return str(body["error_msg"])


async def test_temporary_credentials_work_with_their_signed_token(cloud: Cloud) -> None:
    credential = await _temporary(cloud)
    assert credential["expires_at"].endswith("Z") and credential["access"].startswith("TMP")
    datetime.strptime(credential["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    temp = _as(cloud, credential)
    try:
        token = {"X-Security-Token": credential["securitytoken"]}
        ok = await temp.request("GET", SERVER_PATH, headers=token)
        assert ok.status_code == 200, ok.text
        log = (await cloud.http.get("/_sim/requests")).json()["requests"]
        assert log[-1]["credential"] == "temporary" and credential["securitytoken"] not in str(log)
        assert "missing" in _denied(await temp.request("GET", SERVER_PATH))
        assert "invalid" in _denied(await temp.request("GET", SERVER_PATH, headers={"X-Security-Token": "forged"}))

        def unsigned(headers: dict[str, str]) -> None:
            headers["X-Security-Token"] = credential["securitytoken"]

        assert "signed" in _denied(await temp.request("GET", SERVER_PATH, tamper=unsigned))
    finally:
        await temp.aclose()
    assert "permanent" in _denied(await cloud.request("GET", SERVER_PATH, headers={"X-Security-Token": "t"}))


async def test_expired_temporary_credentials_are_refused(cloud: Cloud) -> None:
    credential = await _temporary(cloud, ttl=-1)
    temp = _as(cloud, credential)
    try:
        response = await temp.request("GET", SERVER_PATH, headers={"X-Security-Token": credential["securitytoken"]})
        assert "expired" in _denied(response)
    finally:
        await temp.aclose()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_the_official_sdk_signs_temporary_credentials_as_we_accept_them(cloud: Cloud) -> None:
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkecs.v2 import EcsClient, ShowServerRequest

    credential = await _temporary(cloud)
    basic = BasicCredentials(credential["access"], credential["secret"], PROJECT).with_security_token(
        credential["securitytoken"]
    )
    client = EcsClient.new_builder().with_credentials(basic).with_endpoints([cloud.base_url]).build()
    reply = await asyncio.to_thread(client.show_server, ShowServerRequest(server_id=WEB_01))
    assert reply.server.name == "web-01"


# ---------------------------------------------------------------------------------------------- agency


@pytest.fixture
async def short_agency() -> AsyncIterator[Cloud]:
    """Agency credentials that live 1.2 s and are renewed 0.6 s before they expire."""
    fixtures = load_fixtures()
    agency = AgencySettings(lifetime=1.2, renew_before=0.6)
    async with SimulatorServer(
        fixtures.model_copy(update={"agency": agency}), clock=ManualClock(), catalogue_size=0
    ) as sim:
        cloud = Cloud(sim.base_url)
        yield cloud
        await cloud.aclose()


async def _securitykey(cloud: Cloud, headers: dict[str, str] | None = None) -> httpx.Response:
    return await cloud.http.get("/openstack/latest/securitykey", headers=headers or {})


async def _use(cloud: Cloud, credential: dict[str, str]) -> httpx.Response:
    agent = _as(cloud, credential)
    try:
        return await agent.request("GET", SERVER_PATH, headers={"X-Security-Token": credential["securitytoken"]})
    finally:
        await agent.aclose()


async def test_agency_credentials_expire_and_are_renewed_with_overlap(short_agency: Cloud) -> None:
    cloud = short_agency
    first = (await _securitykey(cloud)).json()["credential"]
    assert set(first) == {"access", "secret", "securitytoken", "expires_at"}
    assert (await _use(cloud, first)).status_code == 200
    expires = datetime.strptime(first["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 1.2

    async def renewed() -> bool:
        return (await _securitykey(cloud)).json()["credential"]["access"] != first["access"]

    await until(renewed, timeout=5, what="the key renewed")
    second = (await _securitykey(cloud)).json()["credential"]
    if datetime.now(UTC) < expires:  # inside the overlap both work (the check may land just after it)
        old = await _use(cloud, first)
        assert old.status_code == 200 or datetime.now(UTC) >= expires
    assert (await _use(cloud, second)).status_code == 200

    async def old_refused() -> bool:
        return (await _use(cloud, first)).status_code == 401

    await until(old_refused, timeout=5, what="the old key refused")
    assert "expired" in _denied(await _use(cloud, first))


async def test_metadata_token_readings(cloud: Cloud) -> None:
    token = await cloud.http.put("/meta-data/latest/api/token", headers={"X-Metadata-Token-Ttl-Seconds": "21600"})
    assert token.status_code == 200 and token.text
    with_token = await _securitykey(cloud, {"X-Metadata-Token": token.text})
    assert with_token.status_code == 200 and (await _securitykey(cloud)).status_code == 200, "optional by default"
    assert (await _securitykey(cloud, {"X-Metadata-Token": "forged"})).status_code == 401
    bad_ttl = await cloud.http.put("/meta-data/latest/api/token", headers={"X-Metadata-Token-Ttl-Seconds": "0"})
    assert bad_ttl.status_code == 400
    await cloud.http.post("/_sim/switches", json={"metadata_token": "required"})
    missing = await _securitykey(cloud)
    assert missing.status_code == 401 and "Please configure Cloud Service Agency first" not in missing.text
    assert (await _securitykey(cloud, {"X-Metadata-Token": token.text})).status_code == 200
    await cloud.http.post("/_sim/switches", json={"metadata_token": "unsupported"})
    assert (await cloud.http.put("/meta-data/latest/api/token")).status_code == 404
    assert (await _securitykey(cloud)).status_code == 200
    log = (await cloud.http.get("/_sim/requests", params={"route": "metadata_securitykey"})).json()
    assert log["count"] >= 5 and "secret" not in str(log)


async def test_no_agency_on_this_ecs() -> None:
    fixtures = load_fixtures()
    fixtures = fixtures.model_copy(update={"agency": AgencySettings(name="")})
    async with (
        SimulatorServer(fixtures, clock=ManualClock(), catalogue_size=0) as sim,
        httpx.AsyncClient(base_url=sim.base_url) as http,
    ):
        response = await http.get("/openstack/latest/securitykey")
    assert response.status_code == 401 and "Please configure Cloud Service Agency first" in response.text


async def test_metadata_faults_only_when_named(cloud: Cloud) -> None:
    await cloud.http.post("/_sim/faults", json={"route": "*", "error_rate": 1.0, "status": 503})
    assert (await _securitykey(cloud)).status_code == 200, "* is the gateway's routes"
    await cloud.http.post("/_sim/faults", json={"route": "metadata_securitykey", "error_rate": 1.0, "status": 503})
    assert (await _securitykey(cloud)).status_code == 503


async def test_the_bots_client_with_temporary_and_agency_credentials(short_agency: Cloud) -> None:
    from pydantic import SecretStr

    from bot.cloud import CloudClient, Credentials, Endpoints, MetadataCredentials

    cloud = short_agency
    endpoints = Endpoints(ecs=cloud.base_url, ims=cloud.base_url, evs=cloud.base_url)
    temporary = await _temporary(cloud)
    credentials = Credentials(
        temporary["access"],
        SecretStr(temporary["secret"]),
        PROJECT,
        security_token=SecretStr(temporary["securitytoken"]),
    )
    async with CloudClient(credentials, endpoints) as client:
        assert (await client.get_server(WEB_01)).name == "web-01"
    source = MetadataCredentials(PROJECT, url=cloud.base_url, refresh_before=timedelta(seconds=0.7), min_interval=0)
    try:
        async with CloudClient(source, endpoints) as client:

            async def renewed_twice() -> bool:  # every call succeeds while the 1.2 s keys are renewed under it
                assert (await client.get_server(WEB_01)).name == "web-01"
                return source.refreshes >= 3

            await until(renewed_twice, timeout=10, what="three renewals", every=0.05)
        log = (await cloud.http.get("/_sim/requests", params={"route": "show_server"})).json()["requests"]
        assert {e["status"] for e in log} == {200} and {e["credential"] for e in log} >= {"temporary", "agency"}
    finally:
        await source.aclose()
