"""The deployment files: the Dockerfile's health check against a real bot, the systemd unit, the image build."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bot.config import Settings, env_name
from sandbox.devtools.stack import LocalStack

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
UNIT = ROOT / "config" / "ecsbot.service"


def healthcheck_command() -> list[str]:
    (line,) = re.findall(r"HEALTHCHECK .*?CMD (\[.*\])", DOCKERFILE.replace("\\\n", " "))
    return json.loads(line)


async def run_healthcheck(port: int) -> int:
    command = healthcheck_command()
    assert command[0] == "python"
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command[1:], env={**os.environ, "PORT": str(port)}, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_the_image_health_check_passes_on_a_live_bot_and_fails_without_one() -> None:
    async with LocalStack() as stack:
        port = int(stack.url.rsplit(":", 1)[1])
        assert await run_healthcheck(port) == 0
    assert await run_healthcheck(port) != 0  # the bot is gone: the container would turn unhealthy


def test_the_image_runs_as_a_non_root_user_with_the_bot_as_its_command() -> None:
    assert re.search(r"^FROM python:3\.11-slim$", DOCKERFILE, re.MULTILINE)
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["ecsbot"]' in DOCKERFILE and 'CMD ["run"]' in DOCKERFILE


def test_the_systemd_unit_names_only_real_settings_and_verifies() -> None:
    text = UNIT.read_text()
    known = {env_name(name) for name in Settings.model_fields}
    named = set(re.findall(r"\b((?:SLACK|HUAWEICLOUD|ECSBOT|ECS|IMS|EVS)_[A-Z_]+)=", text))
    assert named and named <= known, named - known
    assert re.search(r"^ExecStart=\S+/ecsbot run$", text, re.MULTILINE)
    assert re.search(r"^User=ecsbot$", text, re.MULTILINE)
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax was not verified")
    unit = Path(f"/tmp/ecsbot-{uuid.uuid4().hex[:8]}.service")  # verify wants a unit name it can load
    unit.write_text(text.replace("/opt/ecsbot/bin/ecsbot", sys.executable))
    try:
        result = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        unit.unlink()
    assert result.returncode == 0 and str(unit) not in result.stderr, result.stderr


def _engine() -> str | None:
    """A container engine whose daemon answers, or None."""
    for engine in ("docker", "podman"):
        if shutil.which(engine):
            probe = subprocess.run([engine, "info"], capture_output=True, timeout=30, check=False)
            if probe.returncode == 0:
                return engine
    return None


def test_the_image_builds_and_runs_ecsbot() -> None:
    engine = _engine()
    if engine is None:
        pytest.skip("no container engine can run here (no docker or podman daemon): the image was not built")
    tag = f"ecs-changeos-bot-test:{uuid.uuid4().hex[:8]}"
    build = subprocess.run([engine, "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    try:
        key = subprocess.run([engine, "run", "--rm", tag, "gen-key"], capture_output=True, text=True, timeout=120)
        assert key.returncode == 0 and len(key.stdout.strip()) == 44, key.stderr
        user = subprocess.run(
            [engine, "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True, timeout=120
        )
        assert user.stdout.strip() not in ("", "0"), user
    finally:
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, timeout=120, check=False)
