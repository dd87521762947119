"""How fast the bot acks `/changeos`, next to an empty Bolt app that only acks (DESIGN §6 "Ack").

Three processes besides this one, so nobody's event loop skews another's numbers:
- the simulator and the fake Slack (this file with --child stack),
- the bot: `python -m bot.cli run` pointed at them,
- an empty Bolt AsyncApp that only acks `/changeos`, served by aiohttp through Bolt's own adapter (--child empty),
  with the bot's Bolt setting (`process_before_response=True`: the ack is awaited, not polled every 10 ms).
This process sends signed slash commands in `--rounds` rounds; each round sends one window of `--concurrency`
commands to the empty app, then one to the bot (interleaved, so a spell of load on the machine hits both alike), then
the same again while the simulator answers every route after 2 s (the bot must ack before any cloud call). The ratios
are of the pooled samples of each side.

Two arrival models (`--arrivals`):
- `burst` (the default, and the figure of every earlier run): the window's commands are sent at the same instant, so
  the p99 is how long the last of `--concurrency` simultaneous commands waits for the ones before it (a drain time).
- `poisson`: open loop, the commands of a window arrive at `--rate` per second with exponential gaps (seeded, the
  same gaps for both targets), each sent at its time whether or not the earlier ones were answered. That is how
  independent people's commands reach Slack's servers; the p99 is then set by what an ack finds already running on
  the bot's event loop, such as the work after earlier acks.

    .venv/bin/python bench/ack.py --rounds 10 --concurrency 50
    .venv/bin/python bench/ack.py --arrivals poisson --rate 20 --concurrency 50 --pause 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402

from sandbox.devtools import slack_requests as sr  # noqa: E402

SIGNING_SECRET = "bench-signing-secret-000000000000"
BOT_TOKEN = "xoxb-test"
COMMAND = "web-01 ubuntu-22.04 --key ops-key --reason 'ack bench'"
SLACK_LIMIT_S = 3.0


# ---------------------------------------------------------------------------------------------------- children


async def child_stack(speed: float) -> None:
    """The simulator and the fake Slack; prints their addresses as one JSON line, then serves until killed."""
    from sandbox.devtools.fake_slack import FakeSlack
    from sandbox.simulator.server import SimulatorServer

    os.nice(10)  # it stands in for Slack and Huawei Cloud, which run elsewhere: the bot gets the CPU first
    sim = SimulatorServer(speed=speed)
    fake = FakeSlack(bot_token=BOT_TOKEN)
    await sim.start()
    await fake.start()
    info = {
        "sim": sim.base_url,
        "slack_api": fake.api_url,
        "ak": sim.access_key,
        "sk": sim.secret_key.get_secret_value(),
        "project": sim.project_id,
        "user": sim.user_id,
    }
    print(json.dumps(info), flush=True)
    await wait_for_sigterm()


async def child_empty(port: int, slack_api: str) -> None:
    """An empty Bolt app that only acks the command, behind Bolt's own aiohttp adapter."""
    bolt = empty_bolt(slack_api)

    @bolt.command("/changeos")
    async def on_command(ack: Any) -> None:
        await ack()

    await serve_bolt(bolt, port)


def empty_bolt(slack_api: str) -> Any:
    """A Bolt AsyncApp with nothing but what the caller adds, quiet like the bot's loggers."""
    import logging

    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    for name in ("slack_bolt", "slack_sdk"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # The bot's own Bolt setting (bot/slack/app.py): the ack function is awaited, no 10 ms polling for the ack. The
    # default mode would make the floor ~10 ms slower than the bot and credit it with a setting, not its own work.
    return AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=slack_api),
        signing_secret=SIGNING_SECRET,
        process_before_response=True,
    )


async def serve_bolt(bolt: Any, port: int) -> None:
    """Serve an empty Bolt app on `port` behind Bolt's own aiohttp adapter, with a /healthz, until SIGTERM."""
    from aiohttp import web
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request

    async def events(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    async def healthz(_: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/slack/events", events)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    # The bot's other runtime setting (bot/web/server.py): the start-up heap is frozen, out of the collector's sight.
    # The floor gets it too, so a full collection of Bolt's own modules counts against neither side.
    gc.freeze()
    await wait_for_sigterm()


async def wait_for_sigterm() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


# ---------------------------------------------------------------------------------------------------- the parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def process(*argv: str, env: dict[str, str] | None = None, log: Path) -> AsyncIterator[Any]:
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **(env or {})}
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, env=full, cwd=str(log.parent), stdout=asyncio.subprocess.PIPE, stderr=out
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def wait_healthy(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url + "/healthz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} never answered /healthz")
            await asyncio.sleep(0.1)


def bot_env(info: dict[str, Any], workdir: Path) -> dict[str, str]:
    """The environment of a bot process pointed at the child stack (`info` is the stack's JSON line)."""
    from bot.secretbox import SecretBox
    from sandbox.devtools.stack import DEFAULT_POLICY

    policy = workdir / "policy.toml"
    policy.write_text(DEFAULT_POLICY)
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": info["slack_api"],
        "HUAWEICLOUD_SDK_AK": info["ak"],
        "HUAWEICLOUD_SDK_SK": info["sk"],
        "HUAWEICLOUD_PROJECT_ID": info["project"],
        "HUAWEICLOUD_USER_ID": info["user"],
        "ECS_ENDPOINT": info["sim"],
        "IMS_ENDPOINT": info["sim"],
        "EVS_ENDPOINT": info["sim"],
        "ECSBOT_DB": str(workdir / "ecsbot.db"),
        "ECSBOT_POLICY": str(policy),
        "ECSBOT_SECRET_KEY": SecretBox.generate_key(),
        "ECSBOT_LOG_LEVEL": "WARNING",
    }


Request = tuple[bytes, dict[str, str]]


def signed_command(response_base: str) -> Request:
    body = sr.slash_command(COMMAND, response_url=f"{response_base}/response/{secrets.token_hex(6)}")
    return body, {**sr.sign(SIGNING_SECRET, body), "Content-Type": "application/x-www-form-urlencoded"}


async def one_command(session: aiohttp.ClientSession, url: str, request: Request) -> float:
    body, headers = request
    started = time.perf_counter()
    async with session.post(url + "/slack/events", data=body, headers=headers) as response:
        await response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
    return elapsed


async def window(session: aiohttp.ClientSession, url: str, response_base: str, gaps: list[float]) -> list[float]:
    """One command after each gap (seconds), open loop: a command never waits for an earlier one's answer. All gaps
    zero is a burst of simultaneous commands. The commands are signed before the first is sent: what the load
    generator does inside a window spreads the burst out and is measured as the server's time."""
    requests = [signed_command(response_base) for _ in gaps]
    sent: list[asyncio.Task[float]] = []
    for gap, request in zip(gaps, requests, strict=True):
        if gap > 0:
            await asyncio.sleep(gap)
        sent.append(asyncio.create_task(one_command(session, url, request)))
    return list(await asyncio.gather(*sent))


def arrival_gaps(concurrency: int, rate: float | None, rng: random.Random) -> list[float]:
    """The gaps before each command of a window: none for a burst, exponential at `rate` per second for Poisson."""
    if rate is None:
        return [0.0] * concurrency
    return [0.0] + [rng.expovariate(rate) for _ in range(concurrency - 1)]


def cpu_seconds(pid: int) -> float:
    """The on-CPU time of every thread of `pid`, from the scheduler's own nanosecond count (Linux); 0 elsewhere."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(stat.read_text().split()[0])
    return total / 1e9


@dataclass
class Side:
    """One target's pooled figures: each command's time to its answer, and the server's CPU time in its windows."""

    times: list[float] = field(default_factory=list)
    cpu: float = 0.0


async def measure(
    targets: dict[str, tuple[str, int]],
    response_base: str,
    *,
    rounds: int,
    concurrency: int,
    pause: float,
    gap: float,
    rate: float | None = None,
    seed: int = 12,
) -> dict[str, Side]:
    """`rounds` rounds; each sends one window of `concurrency` commands to every target in turn (empty, bot, empty,
    bot...), so a spell of load on the machine lands on both sides alike: a burst, or Poisson arrivals at `rate` per
    second with the same gaps for every target. One warm-up round first, not counted.

    `targets` maps each name to its URL and server pid. A window's CPU time is read from before its first command to
    its last answer: the work after the acks starts in a lull, after that.

    aiohttp rather than httpx on this side: the load generator must cost far less than what it measures."""
    sides = {name: Side() for name in targets}
    sessions = {
        name: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency), timeout=aiohttp.ClientTimeout(total=30)
        )
        for name in targets
    }
    rng = random.Random(seed)
    # The load generator's own collector: a full collection in the middle of a window (35-40 ms, in the third window
    # of every run) was measured as that window's server time. Frozen here, and run only between windows.
    gc.freeze()
    try:
        for index in range(rounds + 1):
            gaps = arrival_gaps(concurrency, rate, rng)
            for position, (name, (url, pid)) in enumerate(targets.items()):
                cpu = cpu_seconds(pid)
                times = await window(sessions[name], url, response_base, gaps)
                cpu = cpu_seconds(pid) - cpu
                if index:
                    sides[name].times.extend(times)
                    sides[name].cpu += cpu
                gc.collect()  # between windows, never inside one
                # Slack spreads real commands out; back-to-back bursts stack after-ack work
                await asyncio.sleep(gap if position < len(targets) - 1 else pause)
    finally:
        gc.unfreeze()
        for session in sessions.values():
            await session.close()
    return sides


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def stats(side: Side) -> dict[str, float]:
    samples = side.times
    return {
        "cpu_ms_per_ack": side.cpu / len(samples) * 1000,
        "n": len(samples),
        "p50_ms": pct(samples, 50) * 1000,
        "p99_ms": pct(samples, 99) * 1000,
        "max_ms": max(samples) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:

    with tempfile.TemporaryDirectory(prefix="ecsbot-ack-") as tmp:
        workdir = Path(tmp)
        this = str(Path(__file__).resolve())
        async with process(this, "--child", "stack", log=workdir / "stack.log") as stack_proc:
            line = await asyncio.wait_for(stack_proc.stdout.readline(), 30)
            info = json.loads(line)
            env = bot_env(info, workdir)
            response_base = info["slack_api"].removesuffix("/api/")
            bot_port, empty_port = free_port(), free_port()
            bot_url, empty_url = f"http://127.0.0.1:{bot_port}", f"http://127.0.0.1:{empty_port}"
            bot_argv: tuple[str, ...] = ("-m", "bot.cli", "run", "--host", "127.0.0.1", "--port", str(bot_port))
            empty_argv: tuple[str, ...] = (this, "--child", "empty", "--port", str(empty_port))
            empty_argv += ("--slack-api", info["slack_api"])
            if args.control:  # A/A: a second empty app where the bot would be, to see the bench's own noise
                bot_argv = (this, "--child", "empty", "--port", str(bot_port), "--slack-api", info["slack_api"])
            profile = os.environ.get("BENCH_PROFILE")  # cProfiles of both servers, e.g. /tmp/ack.prof(.empty)
            if profile:
                bot_argv = ("-m", "cProfile", "-o", profile, *bot_argv)
                empty_argv = ("-m", "cProfile", "-o", profile + ".empty", *empty_argv)
            async with (
                process(*bot_argv, env=env, log=workdir / "bot.log") as bot_proc,
                process(*empty_argv, log=workdir / "empty.log") as empty_proc,
            ):
                targets = {"empty": (empty_url, empty_proc.pid), "bot": (bot_url, bot_proc.pid)}
                await wait_healthy(bot_url)
                await wait_healthy(empty_url)
                rate = args.rate if args.arrivals == "poisson" else None
                kw = {
                    "rounds": args.rounds,
                    "concurrency": args.concurrency,
                    "pause": args.pause,
                    "gap": args.pause if args.gap is None else args.gap,
                    "rate": rate,
                }
                fast = await measure(targets, response_base, **kw)
                async with httpx.AsyncClient() as admin:
                    fault = {"route": "*", "latency_ms": int(args.cloud_latency * 1000)}
                    (await admin.post(info["sim"] + "/_sim/faults", json=fault)).raise_for_status()
                slow = await measure(targets, response_base, **kw)
    result = {
        "empty": stats(fast["empty"]),
        "bot": stats(fast["bot"]),
        "empty_slow_cloud": stats(slow["empty"]),
        "bot_slow_cloud": stats(slow["bot"]),
    }
    result["ratio_cpu"] = (fast["bot"].cpu + slow["bot"].cpu) / (fast["empty"].cpu + slow["empty"].cpu or 1.0)
    result["ratio_p99"] = result["bot"]["p99_ms"] / result["empty"]["p99_ms"]
    result["ratio_p50"] = result["bot"]["p50_ms"] / result["empty"]["p50_ms"]
    result["ratio_p99_slow_cloud"] = result["bot_slow_cloud"]["p99_ms"] / result["empty_slow_cloud"]["p99_ms"]
    result.update(
        concurrency=args.concurrency,
        rounds=args.rounds,
        cloud_latency_s=args.cloud_latency,
        pause_s=args.pause,
        arrivals=args.arrivals,
        control=args.control,
        rate_per_s=args.rate if args.arrivals == "poisson" else None,
    )
    return result


def print_table(r: dict[str, Any]) -> None:
    if r["arrivals"] == "poisson":
        load = f"{r['concurrency']} commands arriving at {r['rate_per_s']:g}/s (Poisson, open loop)"
    else:
        load = f"a burst of {r['concurrency']} simultaneous commands"
    print(
        f"ack bench: {r['rounds']} rounds of {load}, `/changeos {COMMAND}`; empty and bot interleaved window by "
        f"window ({r['empty']['n']} pooled samples each, {r['pause_s']:g} s apart)"
    )
    slow_bot = f"ecsbot, cloud answers in {r['cloud_latency_s']:g} s"
    rows = [("target", "p50 ms", "p99 ms", "max ms", "server CPU ms/ack")]
    for key, label in (
        ("empty", "empty Bolt app (ack only)"),
        ("bot", "second empty app (A/A control)" if r["control"] else "ecsbot"),
        ("empty_slow_cloud", "empty Bolt app, second pass"),
        ("bot_slow_cloud", "second empty app, second pass" if r["control"] else slow_bot),
    ):
        s = r[key]
        cpu = f"{s['cpu_ms_per_ack']:.3f}"
        rows.append((label, f"{s['p50_ms']:.1f}", f"{s['p99_ms']:.1f}", f"{s['max_ms']:.1f}", cpu))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    worst = max(r["bot"]["max_ms"], r["bot_slow_cloud"]["max_ms"]) / 1000
    print(
        f"ratio p99 bot/empty: {r['ratio_p99']:.2f} (target <= 1.2: {'yes' if r['ratio_p99'] <= 1.2 else 'NO'}); "
        f"p50 {r['ratio_p50']:.2f}; with the slow cloud p99 {r['ratio_p99_slow_cloud']:.2f}; server CPU per ack "
        f"{r['ratio_cpu']:.2f}"
    )
    print(f"slowest ack {worst:.3f} s vs Slack's {SLACK_LIMIT_S:g} s limit: {'ok' if worst < 1.0 else 'TOO SLOW'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds; each is one burst per target (default 10)")
    parser.add_argument("--concurrency", type=int, default=50, help="commands per window (default 50)")
    parser.add_argument(
        "--arrivals", choices=("burst", "poisson"), default="burst", help="all at once, or Poisson at --rate"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="commands per second with --arrivals poisson")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between bursts (default 3)")
    parser.add_argument("--gap", type=float, default=None, help="seconds between the two windows of a round")
    parser.add_argument("--control", action="store_true", help="A/A: a second empty app in the bot's place")
    parser.add_argument("--cloud-latency", type=float, default=2.0, help="simulator latency, s, for the last run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--child", choices=("stack", "empty"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--slack-api", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "stack":
        asyncio.run(child_stack(speed=200.0))
        return 0
    if args.child == "empty":
        asyncio.run(child_empty(args.port, args.slack_api))
        return 0
    if args.rounds < 1 or args.concurrency < 1 or args.cloud_latency < 0 or args.rate <= 0:
        parser.error("--rounds and --concurrency must be at least 1, --cloud-latency at least 0, --rate above 0")
    result = asyncio.run(run(args))
    print_table(result)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
