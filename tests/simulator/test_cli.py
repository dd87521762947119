"""`ecsbot simulator` as a person runs it: a separate process that prints how to reach it, then serves."""

from __future__ import annotations

import asyncio

from tests.support.bot_process import ECSBOT

from .conftest import PROJECT, WEB_01, Cloud


async def _read_until(stream: asyncio.StreamReader, marker: str, timeout: float = 15.0) -> list[str]:
    lines: list[str] = []

    async def read() -> None:
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"simulator exited early; printed: {lines}")
            lines.append(raw.decode().rstrip("\n"))
            if lines[-1].startswith(marker):
                return

    await asyncio.wait_for(read(), timeout)
    return lines


async def test_ecsbot_simulator_prints_credentials_and_serves() -> None:
    proc = await asyncio.create_subprocess_exec(
        *ECSBOT,
        "simulator",
        "--port",
        "0",
        "--speed",
        "100",
        "--seed",
        "4",
        "--catalogue",
        "30",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        lines = await _read_until(proc.stdout, "HUAWEICLOUD_USER_ID=")
        assert lines[0].endswith(" images=37"), lines[0]  # 30 generated + the 7 curated
        values = dict(line.split("=", 1) for line in lines if "=" in line and line.split("=")[0].isupper())
        assert values["HUAWEICLOUD_PROJECT_ID"] == PROJECT
        assert values["HUAWEICLOUD_SDK_AK"] == "SIMULATORAK000000000"
        assert values["HUAWEICLOUD_SDK_SK"] == "simulator-secret-key-0000000000000000000"
        endpoint = values["ECS_ENDPOINT"]
        assert endpoint.startswith("http://127.0.0.1:") and not endpoint.endswith(":0")
        client = Cloud(endpoint, ak=values["HUAWEICLOUD_SDK_AK"], sk=values["HUAWEICLOUD_SDK_SK"])
        try:
            assert (await client.server(WEB_01))["name"] == "web-01"
        finally:
            await client.aclose()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_bad_fixtures_path_exits_2_with_a_message() -> None:
    proc = await asyncio.create_subprocess_exec(
        *ECSBOT,
        "simulator",
        "--port",
        "0",
        "--fixtures",
        "/nonexistent/sim.toml",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 2
    text = err.decode()
    assert "cannot read fixtures file /nonexistent/sim.toml" in text and "Traceback" not in text
