"""The API gateway's checks: AK/SK signature over what was received, fresh date, project, known route."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx

from bot.cloud.signer import parse_date, sign
from sandbox.simulator.auth import check_signature
from sandbox.simulator.credentials import Credential, CredentialBook
from sandbox.simulator.fixtures import AgencySettings

from .conftest import AK, PROJECT, SK, WEB_01, Cloud, error_of

VECTORS = Path(__file__).resolve().parents[1] / "data" / "signing-vectors.json"
SERVER_PATH = f"/v1/{PROJECT}/cloudservers/{WEB_01}"


def _gateway_401(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error_code"] == "APIGW.0301"
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body


def test_official_vectors_verify_and_a_changed_byte_does_not() -> None:
    vectors = json.loads(VECTORS.read_text())
    assert vectors
    for vector in vectors:
        url = urlsplit(vector["url"])
        wire = (
            urlsplit(vector["wire_uri"]) if "://" in vector["wire_uri"] else urlsplit("http://h" + vector["wire_uri"])
        )
        headers = {
            **vector["headers"],
            "Host": url.netloc,
            "X-Sdk-Date": vector["x_sdk_date"],
            "Authorization": vector["authorization"],
        }
        body = vector["body"].encode()
        now = parse_date(vector["x_sdk_date"])
        book = CredentialBook(Credential(vector["ak"], vector["sk"]), AgencySettings())
        args = {
            "credentials": book,
            "method": vector["method"],
            "path": wire.path,
            "query": parse_qsl(wire.query, keep_blank_values=True),
            "headers": headers,
            "now": now,
        }
        assert check_signature(body=body, **args)[1] is None, vector["name"]
        assert check_signature(body=body + b" ", **args)[1] is not None, vector["name"]


async def test_signed_request_is_accepted(cloud: Cloud) -> None:
    response = await cloud.get(SERVER_PATH)
    assert response.status_code == 200
    assert response.headers["X-Request-Id"]


async def test_missing_authorization_is_401_in_gateway_shape(cloud: Cloud) -> None:
    response = await cloud.http.get(SERVER_PATH, headers={"X-Project-Id": PROJECT})
    assert "missing" in _gateway_401(response)["error_msg"]


async def test_token_auth_is_refused_with_a_hint(cloud: Cloud) -> None:
    response = await cloud.http.get(SERVER_PATH, headers={"X-Auth-Token": "MIIxyz"})
    assert "AK/SK" in _gateway_401(response)["error_msg"]


async def test_wrong_secret_key_is_401(sim_url: str) -> None:
    client = Cloud(sim_url, sk="some-other-secret-key-00000000000000000")
    try:
        _gateway_401(await client.get(SERVER_PATH))
    finally:
        await client.aclose()


async def test_unknown_access_key_is_401(sim_url: str) -> None:
    client = Cloud(sim_url, ak="OTHERAK0000000000000")
    try:
        assert "access key" in _gateway_401(await client.get(SERVER_PATH))["error_msg"]
    finally:
        await client.aclose()


async def test_stale_date_is_401_and_says_the_clock_is_off(cloud: Cloud) -> None:
    old = datetime.now(UTC) - timedelta(minutes=16)
    body = _gateway_401(await cloud.request("GET", SERVER_PATH, now=old))
    assert "15 minutes" in body["error_msg"]
    future = datetime.now(UTC) + timedelta(minutes=16)
    _gateway_401(await cloud.request("GET", SERVER_PATH, now=future))


async def test_date_within_the_window_is_accepted(cloud: Cloud) -> None:
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    assert (await cloud.request("GET", SERVER_PATH, now=ten_minutes_ago)).status_code == 200


async def test_body_changed_after_signing_is_401(cloud: Cloud) -> None:
    path = f"/v1/{PROJECT}/cloudservers/action"
    signed_body = json.dumps({"os-stop": {"servers": [{"id": WEB_01}]}}).encode()
    signed = sign(
        access_key=AK,
        secret_key=SK,
        method="POST",
        host=cloud.host,
        path=path,
        headers={"Content-Type": "application/json;charset=utf-8", "X-Project-Id": PROJECT},
        body=signed_body,
    )
    sent = signed_body.replace(b'"os-stop": {', b'"os-stop": {"type": "HARD", ')
    _gateway_401(await cloud.http.post(path, content=sent, headers=signed.headers))


async def test_host_must_match_with_its_port(cloud: Cloud) -> None:
    host, _, port = cloud.host.partition(":")
    other = Cloud(cloud.base_url)
    other.host = f"{host}:{int(port) + 1}"  # signed for another port, sent to this one

    def keep_real_host(headers: dict[str, str]) -> None:
        headers.pop("Host")

    try:
        _gateway_401(await other.request("GET", SERVER_PATH, tamper=keep_real_host))
    finally:
        await other.aclose()


async def test_unsigned_sdk_date_is_401(cloud: Cloud) -> None:
    def unsign_date(headers: dict[str, str]) -> None:
        headers["Authorization"] = headers["Authorization"].replace(";x-sdk-date", "")

    _gateway_401(await cloud.request("GET", SERVER_PATH, tamper=unsign_date))


async def test_query_is_part_of_the_signature(cloud: Cloud) -> None:
    path = f"/v1/{PROJECT}/cloudservers/detail"
    ok = await cloud.request("GET", path, query=[("name", "web 01/x,y"), ("limit", "5")])
    assert ok.status_code == 200 and ok.json()["count"] == 0

    signed = sign(access_key=AK, secret_key=SK, method="GET", host=cloud.host, path=path, query=[("limit", "5")])
    forged = await cloud.http.get(f"{path}?limit=6", headers=signed.headers)
    _gateway_401(forged)


async def test_unknown_project_in_url_or_header_is_common_0018(cloud: Cloud) -> None:
    other = "ffffffffffffffffffffffffffffffff"
    response = await cloud.get(f"/v1/{other}/cloudservers/{WEB_01}")
    assert error_of(response) == (400, "Common.0018")
    assert response.headers["X-Request-Id"]
    mismatch = await cloud.request("GET", SERVER_PATH, headers={"X-Project-Id": other})
    assert error_of(mismatch) == (400, "Common.0018")


async def test_unknown_route_is_apigw_0101(cloud: Cloud) -> None:
    response = await cloud.get(f"/v1/{PROJECT}/cloudservers/{WEB_01}/reboot-please")
    assert response.status_code == 404
    body = response.json()
    assert body["error_code"] == "APIGW.0101" and body["request_id"] == response.headers["X-Request-Id"]
    wrong_method = await cloud.request("DELETE", SERVER_PATH)
    assert wrong_method.status_code == 404


async def test_body_over_the_gateway_limit_is_refused_with_a_request_id(cloud: Cloud) -> None:
    response = await cloud.http.post(f"/v1/{PROJECT}/cloudservers/{WEB_01}/changeos", content=b"x" * (13 * 1024 * 1024))
    assert response.status_code == 413 and response.headers["X-Request-Id"]
    assert response.json()["request_id"] == response.headers["X-Request-Id"]
