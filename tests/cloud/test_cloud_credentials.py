"""Temporary keys and ECS agency credentials: signed as the SDK signs them, refreshed before expiry, never shown."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from bot.app import credential_source
from bot.cloud import CloudClient, Credentials, CredentialsUnavailableError, Endpoints, MetadataCredentials, signer
from bot.config import Settings

# Reference vectors computed by the official SDK's signer for temporary AK/SK (token in SignedHeaders).
TMP_AK = "EXAMPLETMPAK0000000"
TMP_SK = "EXAMPLETMPSK000000000000000000000000000"
TOKEN = "EXAMPLE-SECURITY-TOKEN"
HOST = "ims.my-kualalumpur-1.myhuaweicloud.com"
PROJECT = "0605767ef600d5762f23c013c6e7ad23"
DATE = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
POST_BODY = (
    b'{"image_tags": [{"key": "chatops", "value": "backup"}], "instance_id": "7a9f4d3b-0000-4f00-8000-000000000001",'
    b' "name": "bak-web01-20240101T120000Z"}'
)


@pytest.mark.parametrize(
    ("method", "path", "content_type", "body", "expected"),
    [
        (
            "POST",
            "/v2/cloudimages/action",
            "application/json;charset=UTF-8",
            POST_BODY,
            "b932b788748f807d7c0c823bb2e302b2cee4b5289a8c826be73ef685dc9c49aa",
        ),
        (
            "GET",
            f"/v1/{PROJECT}/jobs/4010a32b5f909853015f90aaa24b0015",
            "application/json",
            b"",
            "5ac428fa59776ff9b8256e6725171200ec20b9da49d519d616963d5f022fdea2",
        ),
    ],
)
def test_temporary_keys_sign_the_token_like_the_sdk(
    method: str, path: str, content_type: str, body: bytes, expected: str
) -> None:
    signed = signer.sign(
        access_key=TMP_AK,
        secret_key=TMP_SK,
        method=method,
        host=HOST,
        path=path,
        headers={"Content-Type": content_type, "X-Project-Id": PROJECT, "X-Security-Token": TOKEN},
        body=body,
        now=DATE,
    )
    auth = signed.headers["Authorization"]
    assert "SignedHeaders=content-type;host;x-project-id;x-sdk-date;x-security-token," in auth
    assert auth.endswith(f"Signature={expected}")


class MetadataService:
    """A loopback stand-in for 169.254.169.254: keys that rotate, the SDK's token handshake, and a call log."""

    def __init__(self, lifetime: timedelta) -> None:
        self.lifetime = lifetime
        self.generation = 0
        self.calls: list[tuple[str, str, str | None]] = []
        self.fail = False
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> MetadataService:
        app = web.Application()
        app.router.add_put("/meta-data/latest/api/token", self._token)
        app.router.add_get("/openstack/latest/securitykey", self._key)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        self.calls.append(("PUT", request.path, request.headers.get("X-Metadata-Token-Ttl-Seconds")))
        return web.Response(text="meta-token-1")

    async def _key(self, request: web.Request) -> web.Response:
        self.calls.append(("GET", request.path, request.headers.get("X-Metadata-Token")))
        if self.fail:
            return web.Response(status=404, text="Please configure Cloud Service Agency first")
        self.generation += 1
        expires = datetime.now(UTC) + self.lifetime
        return web.json_response(
            {
                "credential": {
                    "access": f"AGENCYAK{self.generation:04d}",
                    "secret": f"AGENCY-SECRET-CANARY-{self.generation:04d}",
                    "securitytoken": f"AGENCY-TOKEN-CANARY-{self.generation:04d}",
                    "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                }
            }
        )


async def test_agency_keys_are_fetched_with_the_token_handshake_and_cached() -> None:
    async with MetadataService(timedelta(hours=1)) as service:
        source = MetadataCredentials(PROJECT, url=service.url)
        try:
            first = await source.get()
            again = await source.get()
        finally:
            await source.aclose()
    assert first is again and first.access_key == "AGENCYAK0001"
    assert first.security_token is not None and first.security_token.get_secret_value() == "AGENCY-TOKEN-CANARY-0001"
    assert service.calls == [
        ("PUT", "/meta-data/latest/api/token", "21600"),
        ("GET", "/openstack/latest/securitykey", "meta-token-1"),
    ]
    assert first.expires_at is not None and first.expires_at > datetime.now(UTC) + timedelta(minutes=59)


async def test_agency_keys_are_refreshed_before_they_expire() -> None:
    async with MetadataService(timedelta(seconds=3)) as service:
        source = MetadataCredentials(PROJECT, url=service.url, refresh_before=timedelta(seconds=5), min_interval=0)
        try:
            first = await source.get()
            second = await source.get()  # less than refresh_before is left from the start: fetched again
        finally:
            await source.aclose()
    assert first.access_key == "AGENCYAK0001" and second.access_key == "AGENCYAK0002"
    assert source.refreshes == 2


async def test_a_missing_agency_is_one_clear_error() -> None:
    async with MetadataService(timedelta(hours=1)) as service:
        service.fail = True
        source = MetadataCredentials(PROJECT, url=service.url)
        try:
            with pytest.raises(CredentialsUnavailableError, match="Attach an agency"):
                await source.get()
        finally:
            await source.aclose()


async def test_no_secret_of_any_source_shows_in_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with MetadataService(timedelta(hours=1)) as service:
        source = MetadataCredentials(PROJECT, url=service.url)
        client = CloudClient(source, Endpoints.for_region("my-kualalumpur-1"))
        try:
            creds = await source.get()
            texts = [repr(source), source.describe(), repr(creds), str(creds), repr(client)]
        finally:
            await client.aclose()
    static = Credentials(TMP_AK, TMP_SK, PROJECT, security_token=TOKEN)
    texts += [repr(static), str(static), static.describe()]
    joined = "\n".join(texts) + caplog.text
    for secret in ("AGENCY-SECRET-CANARY", "AGENCY-TOKEN-CANARY", TMP_SK, TOKEN):
        assert secret not in joined


def test_settings_choose_the_source() -> None:
    base = {"huaweicloud_project_id": PROJECT, "huaweicloud_user_id": "u1"}
    temporary = credential_source(
        Settings(_env_file=None, huaweicloud_ak=TMP_AK, huaweicloud_sk=TMP_SK, huaweicloud_security_token=TOKEN, **base)
    )
    assert isinstance(temporary, Credentials) and temporary.security_token is not None
    assert "temporary AK/SK" in temporary.describe()
    agency = credential_source(
        Settings(_env_file=None, huaweicloud_credentials="agency", metadata_url="http://127.0.0.1:1", **base)
    )
    assert isinstance(agency, MetadataCredentials) and "metadata service at http://127.0.0.1:1" in agency.describe()
    with pytest.raises(ValueError, match=r"HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK.*HUAWEICLOUD_CREDENTIALS=agency"):
        credential_source(Settings(_env_file=None, **base))
