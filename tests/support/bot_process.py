"""`ecsbot` as its own process, as an operator starts it: an empty folder (no stray .env), only the given settings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

import httpx

from sandbox.devtools.waiting import until

ROOT = Path(__file__).resolve().parents[2]
ECSBOT = (sys.executable, "-m", "bot.cli")


def bot_env(settings: dict[str, str]) -> dict[str, str]:
    """The whole environment of a bot process: a PATH, this checkout importable, and `settings`; nothing inherited
    that could change a setting."""
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **settings}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ecsbot(workdir: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Runs `ecsbot ARGS` to its end with only `settings`, and captures what it printed."""
    return subprocess.run(
        [*ECSBOT, *args],
        cwd=workdir,
        env=bot_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def start_bot(
    workdir: Path, settings: dict[str, str], *, port: int = 0, output: IO[bytes] | int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    """`ecsbot run` on loopback `port` (0: any free one), stdout and stderr together into `output`."""
    return await asyncio.create_subprocess_exec(
        *ECSBOT,
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env=bot_env(settings),
        cwd=str(workdir),
        stdout=output,
        stderr=asyncio.subprocess.STDOUT,
    )


async def run_bot(workdir: Path, settings: dict[str, str], *, port: int = 0, timeout: float = 30) -> tuple[int, str]:
    """`ecsbot run` expected to end by itself (a start-up error): its exit code and all it printed."""
    proc = await start_bot(workdir, settings, port=port)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


class BotProcess:
    """A bot that keeps running: a free loopback port, output kept in a log file for failures, killable."""

    def __init__(self, settings: dict[str, str], workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.log = workdir / "bot.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.starts = 0

    async def start(self, *, leader: bool = True) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n==== start {self.starts} ====\n".encode())
            out.flush()
            self.proc = await start_bot(self.workdir, self.settings, port=port, output=out)
        await self.wait_healthy(leader=leader)

    async def wait_healthy(self, timeout: float = 20.0, *, leader: bool = True) -> None:
        """Up, serving, and (unless a follower is expected) holding the tracker lease: a restarted process must take
        it from the killed one."""
        async with httpx.AsyncClient(timeout=2.0) as client:

            async def healthy() -> bool:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise AssertionError(f"the bot exited with {self.proc.returncode}:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(self.url + "/healthz")
                    return response.status_code == 200 and (not leader or bool(response.json().get("tracker_lease")))
                return False

            try:
                await until(healthy, timeout=timeout, what="the bot healthy with the lease", every=0.05)
            except TimeoutError:
                raise AssertionError(f"the bot never became healthy with the lease:\n{self.tail()}") from None

    async def kill(self) -> None:
        """SIGKILL, then reap it: a zombie would still look alive to the lease takeover."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            await self.kill()

    def tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
