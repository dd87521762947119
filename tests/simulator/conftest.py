"""Shared helpers: a started simulator and a client that signs raw HTTP requests with bot.cloud.signer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bot.cloud.signer import sign
from sandbox.simulator import ManualClock, SimulatorServer
from tests.support.sim_ids import (  # noqa: F401 - re-exported to the simulator tests
    AK,
    APP_01_A,
    APP_01_B,
    ARM_01,
    CENTOS_OLD,
    DB_01,
    FAILED_01,
    HCE_ARM,
    LOCKED_01,
    NODISK_01,
    OTHER_USER,
    PROJECT,
    ROCKY_LARGE,
    SK,
    SMALL_01,
    UBUNTU_20,
    UBUNTU_22,
    UBUNTU_24_CI,
    USER,
    WEB_01,
    WIN_01,
    WINDOWS_2022,
)

CATALOGUE = 60  # generated images in the test simulators: one of every kind, and quick to build

GOOD_PASSWORD = "Blue-Kettle-42"  # also passes the Windows rules


class Cloud:
    """Signs each request exactly as the SDK does, then sends the signed bytes with httpx."""

    def __init__(self, base_url: str, *, ak: str = AK, sk: str = SK, project: str = PROJECT) -> None:
        self.base_url = base_url
        self.host = urlsplit(base_url).netloc
        self.ak, self.sk, self.project = ak, sk, project
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10.0)

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        now: datetime | None = None,
        tamper: Callable[[dict[str, str]], None] | None = None,
    ) -> httpx.Response:
        raw = body if body is not None else (json.dumps(json_body).encode() if json_body is not None else b"")
        sent = {"Content-Type": "application/json", "X-Project-Id": self.project, **(headers or {})}
        signed = sign(
            access_key=self.ak,
            secret_key=self.sk,
            method=method,
            host=self.host,
            path=path,
            query=list(query),
            headers=sent,
            body=raw,
            now=now,
        )
        out = dict(signed.headers)
        if tamper:
            tamper(out)
        url = path + (f"?{signed.query_string}" if signed.query_string else "")
        return await self.http.request(method, url, content=raw, headers=out)

    async def get(self, path: str, **query: str | int) -> httpx.Response:
        return await self.request("GET", path, query=[(k, str(v)) for k, v in query.items()])

    async def post(self, path: str, json_body: Any) -> httpx.Response:
        return await self.request("POST", path, json_body=json_body)

    # shortcuts for the ECS paths
    async def server(self, server_id: str) -> dict[str, Any]:
        response = await self.get(f"/v1/{self.project}/cloudservers/{server_id}")
        assert response.status_code == 200, response.text
        return response.json()["server"]

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.get(f"/v1/{self.project}/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    async def change_os(self, server_id: str, option: dict[str, Any], *, v2: bool = False) -> httpx.Response:
        version = "v2" if v2 else "v1"
        return await self.post(f"/{version}/{self.project}/cloudservers/{server_id}/changeos", {"os-change": option})

    async def stop(self, server_id: str, stop_type: str = "SOFT") -> httpx.Response:
        body = {"os-stop": {"servers": [{"id": server_id}], "type": stop_type}}
        return await self.post(f"/v1/{self.project}/cloudservers/action", body)

    async def aclose(self) -> None:
        await self.http.aclose()


def key_option(image_id: str = UBUNTU_22, keyname: str = "ops-key") -> dict[str, Any]:
    return {"keyname": keyname, "userid": USER, "imageid": image_id}


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    code = body["error"]["code"] if "error" in body else body["error_code"]
    return response.status_code, code


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[SimulatorServer]:
    """Real time for signatures, a manual clock for the cloud: tests step jobs forward without waiting."""
    async with SimulatorServer(speed=1.0, seed=7, clock=clock, catalogue_size=CATALOGUE) as server:
        yield server


@pytest.fixture
async def fast_sim() -> AsyncIterator[SimulatorServer]:
    """The system clock at speed 500: a 3-5 minute change takes well under a second."""
    async with SimulatorServer(speed=500.0, seed=3, catalogue_size=CATALOGUE) as server:
        yield server


@pytest.fixture
def sim_url(sim: SimulatorServer) -> str:
    return sim.base_url


@pytest.fixture
async def cloud(sim: SimulatorServer) -> AsyncIterator[Cloud]:
    client = Cloud(sim.base_url)
    yield client
    await client.aclose()


@pytest.fixture
async def fast_cloud(fast_sim: SimulatorServer) -> AsyncIterator[Cloud]:
    client = Cloud(fast_sim.base_url)
    yield client
    await client.aclose()
