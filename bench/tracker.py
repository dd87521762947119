"""One bot process tracking N change-OS jobs at once: lag to Slack, ECS and Slack calls, memory and CPU.

The simulator and the fake Slack run in this process; the bot runs in a child process (this file with --child: the
real parts from `bot.app.build`, tracker, notifier and presenter, without the HTTP endpoint), so its peak RSS and
CPU are its own.
N requests are written to the store as `approved` (no Slack modals: creating 1,000 through modals measures
something else) against N stopped simulator servers; the child resumes them all on start.

    .venv/bin/python bench/tracker.py --jobs 1000 --interval 2 --speed 8

Measured per job, from the simulator's own record of when the job ended:
- tracker lag: the job's end → the bot stores `succeeded` (it has read the job and the server again);
- Slack lag: the job's end → the fake Slack records the post that says the server now runs the new image.
Prints a table with the DESIGN §6 targets, and JSON with --json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from bot.config import Settings  # noqa: E402

UBUNTU_22 = "67f433d8-ed0e-4321-a8a2-a71838539e09"
UBUNTU_20 = "2e9c6a51-2004-4b7e-9d3f-5a1b8c0d2004"
APPROVER = "U01APR0001"
REQUESTER = "U01REQ0001"
CONFIG_ENV = "BENCH_TRACKER_CONFIG"
_SERVER_PATH = re.compile(r"/cloudservers/([0-9a-f-]{36})")
_JOB_PATH = re.compile(r"/jobs/([0-9a-f]+)$")


# ---------------------------------------------------------------------------------------------------- the child


async def child() -> None:
    """The bot's tracking half, configured from the environment; reports its own usage on SIGTERM."""
    from bot import logs
    from bot.app import build
    from bot.services.tracker import TrackerConfig

    settings = Settings()
    logs.configure("WARNING")
    config = TrackerConfig(**json.loads(os.environ[CONFIG_ENV]))
    rt = build(settings, tracker_config=config)
    await rt.start()
    print("BENCH_READY " + json.dumps(_usage()), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    report = {**_usage(), "ecs_calls": rt.tracker.ecs_calls, "notifier": rt.notifier.stats()}
    await rt.aclose()
    print("BENCH_DONE " + json.dumps(report), flush=True)


def _usage() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "max_rss_mb": usage.ru_maxrss / 1024.0}


# ---------------------------------------------------------------------------------------------------- the parent


def server_id(i: int) -> str:
    return f"5e1a0000-0000-4000-8000-{i:012d}"


def approved_request(i: int, *, channel: str, reason: str, approval_ts: str | None = None) -> Any:
    """Bench server `i`'s change to Ubuntu 22.04, already approved: the tracker's leader takes it from the store."""
    from bot.domain.request import ChangeRequest, RequestState
    from sandbox.devtools.stack import APPROVALS_CHANNEL

    return ChangeRequest(
        state=RequestState.APPROVED,
        requester=REQUESTER,
        origin_channel=channel,
        server_id=server_id(i),
        server_name=f"bench-{i:04d}",
        target_image_id=UBUNTU_22,
        target_image_name="ubuntu-22.04",
        keyname="ops-key",
        reason=reason,
        approvals_channel=APPROVALS_CHANNEL,
        approvals=[APPROVER],
        approval_ts=approval_ts,
    )


def fixtures_with(count: int) -> Any:
    from sandbox.simulator.fixtures import ServerFixture, VolumeFixture, load_fixtures

    base = load_fixtures()
    servers = [
        ServerFixture(
            id=server_id(i),
            name=f"bench-{i:04d}",
            status="SHUTOFF",
            image_id=UBUNTU_20,
            key_name="ops-key",
            volumes=[VolumeFixture(id=f"5e1b0000-0000-4000-8000-{i:012d}", size=40)],
        )
        for i in range(count)
    ]
    return base.model_copy(update={"servers": servers})


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def peak_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass
class Child:
    proc: asyncio.subprocess.Process
    ready: dict[str, Any]

    async def finish(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.stdout is not None
        while line := await asyncio.wait_for(self.proc.stdout.readline(), 60):
            if line.startswith(b"BENCH_DONE "):
                await self.proc.wait()
                return json.loads(line[len(b"BENCH_DONE ") :])
        raise RuntimeError("the bot child exited without its report")


async def start_child(env: dict[str, str], config: dict[str, Any], log_path: Path) -> Child:
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env, CONFIG_ENV: json.dumps(config)}
    if os.environ.get("BENCH_PROFILE"):
        full["BENCH_PROFILE"] = os.environ["BENCH_PROFILE"]
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            env=full,
            cwd=str(log_path.parent),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line.startswith(b"BENCH_READY "):
        raise RuntimeError(f"the bot child did not start; see {log_path}")
    return Child(proc, json.loads(line[len(b"BENCH_READY ") :]))


async def post_cards(api_url: str, token: str, channel: str, count: int) -> list[str]:
    """Stand-ins for approval cards, so the presenter has a thread for status messages and replies."""
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(token=token, base_url=api_url)
    answers = [await client.chat_postMessage(channel=channel, text=f"card {i}") for i in range(count)]
    return [str(a["ts"]) for a in answers]


async def run(args: argparse.Namespace, database_url: str | None = None) -> dict[str, Any]:
    """One run on SQLite, or on PostgreSQL at `database_url` (in a schema of its own, dropped afterwards)."""
    if database_url is None:
        return await run_on(args, None)
    schema_url, drop = fresh_schema(database_url)
    try:
        return await run_on(args, schema_url)
    finally:
        drop()


def fresh_schema(url: str) -> tuple[str, Any]:
    import secrets
    from urllib.parse import quote

    import psycopg

    name = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")

    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options={quote(f'-c search_path={name}')}", drop


async def run_on(args: argparse.Namespace, database_url: str | None) -> dict[str, Any]:
    from bot.domain.request import RequestState
    from bot.store import open_store
    from sandbox.devtools.fake_slack import FakeSlack
    from sandbox.devtools.stack import APPROVALS_CHANNEL, LocalStack, StackOptions
    from sandbox.simulator.server import SimulatorServer

    n = args.jobs
    interval = args.interval
    ecs_rate = args.ecs_rate or max(20.0, round(1.5 * n / interval))
    tmp = tempfile.TemporaryDirectory(prefix="ecsbot-bench-")
    workdir = Path(tmp.name)
    sim = SimulatorServer(fixtures_with(n), speed=args.speed, seed=args.seed, max_logged_requests=60 * n + 10_000)
    fake = FakeSlack(clock=time.time)  # the simulator's clock is wall time too: lags subtract directly
    stack = LocalStack(StackOptions(poll_interval=interval, ecs_rate=ecs_rate, deadline=1800.0), workdir=workdir)
    stack.sim, stack.slack = sim, fake
    await sim.start()
    await fake.start()
    child: Child | None = None
    try:
        settings = stack.settings()
        env = settings.to_env()
        if database_url is not None:
            env["ECSBOT_DATABASE_URL"] = database_url
        store = open_store(database_url or settings.db_path)
        channels = [f"C0BENCH{k:04d}" for k in range(args.channels)]
        cards = await post_cards(fake.api_url, fake.bot_token, APPROVALS_CHANNEL, n) if args.cards else [None] * n
        for i in range(n):
            await store.create(
                approved_request(
                    i, channel=channels[i % len(channels)], reason="tracker benchmark", approval_ts=cards[i]
                ),
                actor="bench",
            )
        fake.clear_calls()
        config = {
            "poll_interval": interval,
            "first_poll": min(2.0, interval),
            "deadline": 1800.0,
            "ecs_rate": ecs_rate,
            "lease_ttl": 30.0,
            **({"concurrency": args.concurrency} if args.concurrency else {}),
        }
        child = await start_child(env, config, workdir / "bot.log")
        started = time.time()
        say(f"bot started: {n} jobs, poll interval {interval}s, ECS budget {ecs_rate:.0f}/s")
        ended_all = await wait_for_ends(store, n, args.timeout, started)
        slack_done = await wait_for_slack(fake, n, args.slack_wait)
        report = await child.finish()
        report["ready"] = child.ready
        child = None
        requests = await store.in_states(*RequestState)
        await store.aclose()
        result = measure(args, n, ecs_rate, sim, fake, requests, report, started, ended_all, slack_done)
        return {"engine": "postgresql" if database_url else "sqlite", **result}
    finally:
        if child is not None:
            child.proc.kill()
            await child.proc.wait()
        await fake.stop()
        await sim.stop()
        tmp.cleanup()


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def wait_for_ends(store: Any, n: int, timeout: float, started: float) -> float:
    from bot.domain.request import RequestState

    last_said = 0.0
    while True:
        done = len(await store.in_states(RequestState.SUCCEEDED, RequestState.FAILED))
        now = time.time()
        if done >= n:
            say(f"all {n} jobs ended after {now - started:.1f}s")
            return now
        if now - started > timeout:
            say(f"timeout: {done}/{n} jobs ended after {timeout:.0f}s")
            return now
        if now - last_said >= 10:
            say(f"{done}/{n} ended")
            last_said = now
        await asyncio.sleep(0.5)


def end_posts(fake: Any) -> list[Any]:
    return [c for c in fake.calls_to("chat.postMessage") if c.ok and "now runs" in str(c.body.get("text", ""))]


async def wait_for_slack(fake: Any, n: int, wait: float) -> bool:
    """Every end posted, or `wait` seconds more (Slack's pacing, not the tracker, decides how long this takes)."""
    deadline = time.time() + wait
    last_said = 0.0
    while True:
        posted = len({_request_id(c) for c in end_posts(fake)})
        if posted >= n:
            return True
        now = time.time()
        if now > deadline:
            say(f"stopped waiting for Slack: {posted}/{n} end posts landed")
            return False
        if now - last_said >= 10:
            say(f"Slack: {posted}/{n} end posts landed")
            last_said = now
        await asyncio.sleep(0.5)


def _request_id(call: Any) -> str:
    found = re.search(r"CR-[A-Z0-9]{6}", str(call.body.get("text", "")))
    return found.group(0) if found else ""


def measure(
    args: argparse.Namespace,
    n: int,
    ecs_rate: float,
    sim: Any,
    fake: Any,
    stored: list[Any],
    report: dict[str, Any],
    started: float,
    ended_all: float,
    slack_done: bool,
) -> dict[str, Any]:
    from bot.domain.request import RequestState

    requests = {r.server_id: r for r in stored}
    change_jobs = {j.server_id: j for j in sim.state.jobs.values() if j.job_type == "changeOS"}
    job_server = {j.job_id: sid for sid, j in change_jobs.items()}
    calls: Counter[str] = Counter()
    first_call: dict[str, float] = {}
    for entry in sim.requests:
        path = entry["path"]
        found = _SERVER_PATH.search(path)
        sid = found.group(1) if found else None
        if sid is None and (job := _JOB_PATH.search(path)):
            sid = job_server.get(job.group(1))
        calls[sid or "?"] += 1
        if sid is not None and sid not in first_call:
            first_call[sid] = datetime.fromisoformat(entry["time"]).timestamp()

    posted = {}
    for call in end_posts(fake):
        posted.setdefault(_request_id(call), call.time)

    tracker_lag, slack_lag, per_job, allowed, durations = [], [], [], [], []
    succeeded = 0
    for sid, request in requests.items():
        job = change_jobs.get(sid)
        if request.state is RequestState.SUCCEEDED:
            succeeded += 1
        if job is None or job.ended_at is None:
            continue
        begin = datetime.fromisoformat(job.begin_time).timestamp()
        durations.append(job.ended_at - begin)
        if request.finished_at is None:
            continue
        # The duration the budget counts: how long the bot tracked the request, first ECS call to the stored end.
        tracked = request.finished_at.timestamp() - first_call.get(sid, begin)
        per_job.append(calls[sid])
        allowed.append(tracked / args.interval + 3)
        tracker_lag.append(request.finished_at.timestamp() - job.ended_at)
        if request.id in posted:
            slack_lag.append(posted[request.id] - job.ended_at)

    window_end = max([c.time for c in fake.calls] or [started])
    minutes = max(1e-9, (window_end - started) / 60)
    methods = Counter(c.method for c in fake.calls)
    slack_per_min = {m: methods[m] / minutes for m in methods}
    peak_min = {m: peak_in_window([c.time for c in fake.calls if c.method == m], 60.0) for m in methods}
    over = sum(1 for used, cap in zip(per_job, allowed, strict=True) if used > cap)
    return {
        "jobs": n,
        "succeeded": succeeded,
        "poll_interval_s": args.interval,
        "ecs_rate_per_s": ecs_rate,
        "sim_speed": args.speed,
        "cards": args.cards,
        "channels": args.channels,
        "job_duration_s": {"min": min(durations or [0]), "max": max(durations or [0])},
        "tracking_wall_s": ended_all - started,
        "slack_all_landed": slack_done,
        "tracker_lag_s": {"p50": pct(tracker_lag, 50), "p99": pct(tracker_lag, 99), "max": max(tracker_lag or [0])},
        "slack_lag_s": {
            "landed": len(slack_lag),
            "p50": pct(slack_lag, 50),
            "p99": pct(slack_lag, 99),
            "max": max(slack_lag or [0]),
        },
        "ecs_calls_total": sum(calls.values()),
        "ecs_calls_per_job": {"mean": statistics.fmean(per_job or [0]), "max": max(per_job or [0])},
        "ecs_allowed_per_job_mean": statistics.fmean(allowed or [0]),
        "jobs_over_ecs_target": over,
        "ecs_peak_per_s": peak_in_window([datetime.fromisoformat(e["time"]).timestamp() for e in sim.requests], 1.0),
        "slack_calls": dict(methods),
        "slack_calls_per_job": sum(methods.values()) / n,
        "slack_per_minute_mean": slack_per_min,
        "slack_per_minute_peak": peak_min,
        "notifier": report.get("notifier", {}),
        "bot_peak_rss_mb": report["max_rss_mb"],
        "bot_cpu_s_total": report["cpu_s"],
        "bot_cpu_s_tracking": report["cpu_s"] - report["ready"]["cpu_s"],
        "bot_cpu_s_startup": report["ready"]["cpu_s"],
    }


def table_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, measured, target, ok) of one run."""
    interval = r["poll_interval_s"]
    lag_target = interval + 1
    t, s = r["tracker_lag_s"], r["slack_lag_s"]
    e = r["ecs_calls_per_job"]
    notifier = r["notifier"]
    upd_peak = r["slack_per_minute_peak"].get("chat.update", 0)
    post_peak = r["slack_per_minute_peak"].get("chat.postMessage", 0)

    def ok(flag: bool) -> str:
        return "yes" if flag else "NO"

    return [
        (
            "tracker lag p50 / p99 (s)",
            f"{t['p50']:.2f} / {t['p99']:.2f}",
            f"p99 <= {lag_target:g}",
            ok(t["p99"] <= lag_target),
        ),
        (
            "Slack lag p50 / p99 (s)",
            f"{s['p50']:.1f} / {s['p99']:.1f} ({s['landed']}/{r['jobs']} landed)",
            f"p99 <= {lag_target:g}",
            ok(s["p99"] <= lag_target and s["landed"] == r["jobs"]),
        ),
        (
            "ECS calls per job mean / max",
            f"{e['mean']:.2f} / {e['max']}",
            f"<= dur/int+3 ({r['ecs_allowed_per_job_mean']:.1f})",
            ok(r["jobs_over_ecs_target"] == 0) + f" ({r['jobs_over_ecs_target']} over)",
        ),
        ("ECS peak calls in 1 s", str(r["ecs_peak_per_s"]), f"<= 2 x {r['ecs_rate_per_s']:g}", ""),
        ("Slack calls per job", f"{r['slack_calls_per_job']:.2f}", "", ""),
        ("chat.update peak per 60 s", str(upd_peak), "<= 50 + burst 3", ok(upd_peak <= 53)),
        ("chat.postMessage peak per 60 s", str(post_peak), "<= 120 + burst 10", ok(post_peak <= 130)),
        ("edits coalesced / skipped", f"{notifier.get('coalesced', 0)} / {notifier.get('skipped', 0)}", "", ""),
        ("Slack 429s seen", str(notifier.get("ratelimited", 0)), "0", ok(notifier.get("ratelimited", 0) == 0)),
        ("bot peak RSS (MB)", f"{r['bot_peak_rss_mb']:.0f}", "report", ""),
        ("bot CPU s (startup / tracking)", f"{r['bot_cpu_s_startup']:.1f} / {r['bot_cpu_s_tracking']:.1f}", "", ""),
        ("wall time to the last end (s)", f"{r['tracking_wall_s']:.1f}", "", ""),
    ]


def print_table(results: list[dict[str, Any]]) -> None:
    """One column per run (SQLite, and PostgreSQL with --database-url), the targets last."""
    r = results[0]
    dur = r["job_duration_s"]
    print(
        f"tracker bench: {r['jobs']} jobs, poll interval {r['poll_interval_s']:g} s, ECS budget "
        f"{r['ecs_rate_per_s']:g}/s, simulator speed {r['sim_speed']:g} (jobs {dur['min']:.0f}-{dur['max']:.0f} s), "
        f"cards {'on' if r['cards'] else 'off'}, {r['channels']} origin channels; "
        + ", ".join(f"{x['engine']}: {x['succeeded']} succeeded" for x in results)
    )
    per_run = [table_rows(x) for x in results]
    header = ("metric", *(f"{x['engine']}" for x in results), "target")
    rows = [header]
    for i, (metric, _, target, _) in enumerate(per_run[0]):
        cells = [f"{run[i][1]}{f' ({run[i][3]})' if run[i][3] else ''}" for run in per_run]
        rows.append((metric, *cells, target))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for x in results:
        calls = ", ".join(f"{m} {c}" for m, c in sorted(x["slack_calls"].items()))
        print(f"Slack calls ({x['engine']}): {calls}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="concurrent change-OS jobs (default 1000)")
    parser.add_argument("--interval", type=float, default=2.0, help="poll interval in seconds (default 2)")
    parser.add_argument("--speed", type=float, default=8.0, help="simulator speed; 8 makes a change take 23-38 s")
    parser.add_argument("--ecs-rate", type=float, default=0.0, help="ECS calls/s budget (default 1.5 x jobs/interval)")
    parser.add_argument("--concurrency", type=int, default=0, help="tracker steps at once (default: the bot's)")
    parser.add_argument("--channels", type=int, default=50, help="origin channels the end posts spread over")
    parser.add_argument("--cards", action="store_true", help="approval cards, so status messages and thread replies")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on jobs ending after this many s")
    parser.add_argument("--slack-wait", type=float, default=60.0, help="s to wait for Slack after the last end")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        help="also run on this PostgreSQL (postgresql://…; a schema of its own, dropped after) beside SQLite",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        profile = os.environ.get("BENCH_PROFILE")
        if not profile:
            asyncio.run(child())
            return 0
        import cProfile

        with cProfile.Profile() as prof:
            asyncio.run(child())
        prof.dump_stats(profile)
        return 0
    if args.jobs < 1 or args.interval <= 0 or args.speed <= 0 or args.channels < 1:
        parser.error("--jobs, --interval, --speed and --channels must be positive")
    with contextlib.suppress(KeyboardInterrupt):
        results = [asyncio.run(run(args))]
        if args.database_url:
            results.append(asyncio.run(run(args, args.database_url)))
        print_table(results)
        if args.json:
            print(json.dumps(results, indent=2, default=str))
        return 0
    return 130


if __name__ == "__main__":
    sys.exit(main())
