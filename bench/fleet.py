"""Fleets and single changes at once in one bot process: job end → the Slack message that shows it, Slack calls per
method per minute against Slack's tiers (the fake Slack enforces them), ECS calls per server, RSS and CPU.

The simulator gets F + S stopped servers. The store gets F / size self-service rollouts (approved: their first wave
already starting) and S single requests already `approved`, as bench/tracker.py does (going through Slack modals
would measure the modal). The bot is bench/tracker.py's child: the real bot from `bot.app.build`, whose tracker
leadership resumes the rollouts and the requests.

    .venv/bin/python bench/fleet.py --fleet-servers 1000 --fleet-size 100 --singles 1000 --interval 10 --speed 2

What shows a job's end in Slack:
- a fleet server: the first edit of its fleet's message, after the job ended, that counts it out of "changing"
  (health check, done or failed);
- a single change: the post (or the digest line) that says the server now runs the new image.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.tracker import (  # noqa: E402
    REQUESTER,
    UBUNTU_22,
    approved_request,
    fixtures_with,
    pct,
    peak_in_window,
    say,
    server_id,
    start_child,
)

_SERVER_PATH = re.compile(r"/cloudservers/([0-9a-f-]{36})")
_JOB_PATH = re.compile(r"/jobs/([0-9a-f]+)$")
_CR = re.compile(r"CR-[A-Z0-9]{6}")
_OUT_OF_CHANGING = ("🔎 health check", "✅ done", "❌ failed", "↩️ rolled back", "↩️ rolling back")
# Slack's tiers per workspace, per minute (chat.postMessage: 1/s per channel, shown per channel).
TIERS = {"chat.update": 50, "chat.getPermalink": 100, "chat.postEphemeral": 100}


async def seed(store: Any, args: argparse.Namespace, channels: list[str]) -> list[str]:
    """The rollouts (self-service, first wave starting) and the single requests; the rollouts' ids."""
    from bot.domain.fleet import Audit, FleetApproval, FleetSpec, new_rollout
    from bot.domain.waves import cut, parse_waves
    from sandbox.devtools.stack import APPROVALS_CHANNEL

    ids = []
    now = datetime.now(UTC)
    for first in range(0, args.fleet_servers, args.fleet_size):
        members = [server_id(i) for i in range(first, min(args.fleet_servers, first + args.fleet_size))]
        names = {sid: f"bench-{int(sid[-12:]):04d}" for sid in members}
        step = new_rollout(
            requester=REQUESTER,
            channel=APPROVALS_CHANNEL,
            image_id=UBUNTU_22,
            image_name="ubuntu-22.04",
            waves=[[(sid, names[sid]) for sid in wave] for wave in cut(members, parse_waves(args.waves))],
            approval=FleetApproval(0, (), ("every server",)),
            now=now,
            max_failures=args.fleet_size,
            parallel=args.parallel,
            selector=f"bench fleet {first // args.fleet_size}",
            spec=FleetSpec(keyname="ops-key", reason="fleet benchmark", notify=(channels[0],)),
            origin_channel=channels[0],
        )
        await store.create_rollout(step.rollout, [e for e in step.effects if isinstance(e, Audit)])
        ids.append(step.rollout.id)
    for j in range(args.singles):
        i = args.fleet_servers + j
        await store.create(
            approved_request(i, channel=channels[j % len(channels)], reason="fleet benchmark (single)"),
            actor="bench",
        )
    return ids


async def wait_done(store: Any, rollout_ids: list[str], singles: int, timeout: float, started: float) -> float:
    from bot.domain.request import RequestState

    last_said = 0.0
    while True:
        rollouts = [await store.get_rollout(r) for r in rollout_ids]
        fleets_done = sum(1 for r in rollouts if r is not None and r.finished)
        ended = len(await store.in_states(RequestState.SUCCEEDED, RequestState.FAILED))
        now = time.time()
        if fleets_done == len(rollout_ids) and ended >= singles + sum(len(r.servers) for r in rollouts if r):
            say(f"every fleet and change ended after {now - started:.1f}s")
            return now
        if now - started > timeout:
            say(f"timeout: {fleets_done}/{len(rollout_ids)} fleets, {ended} changes ended")
            return now
        if now - last_said >= 10:
            say(f"{fleets_done}/{len(rollout_ids)} fleets done, {ended} changes ended")
            last_said = now
        await asyncio.sleep(1.0)


def out_of_changing(call: Any) -> int:
    """How many servers a fleet message's edit counts as past their change (health check, done, failed)."""
    text = json.dumps(call.body.get("blocks") or "", ensure_ascii=False)
    return sum(int(m.group(1)) for label in _OUT_OF_CHANGING for m in re.finditer(re.escape(label) + r" (\d+)", text))


def post_kind(text: str) -> str:
    if "changes ended*" in text:
        return "end digest"
    if "now runs" in text:
        return "single end"
    if "changing the OS of" in text:
        return "single start"
    return "fleet (message, thread, start/end)"


def measure(args: argparse.Namespace, sim: Any, fake: Any, rollouts: list[Any], requests: list[Any]) -> dict:
    fleet_servers = {s.id: r for r in rollouts for s in r.servers}
    change_jobs = {j.server_id: j for j in sim.state.jobs.values() if j.job_type == "changeOS"}
    job_server = {j.job_id: sid for sid, j in change_jobs.items()}
    calls: Counter[str] = Counter()
    for entry in sim.requests:
        found = _SERVER_PATH.search(entry["path"])
        sid = found.group(1) if found else None
        if sid is None and (job := _JOB_PATH.search(entry["path"])):
            sid = job_server.get(job.group(1))
        calls[sid or "?"] += 1

    def ended_at(sid: str) -> float | None:
        job = change_jobs.get(sid)
        return job.ended_at if job is not None else None

    # Fleet servers: the k-th job end of a fleet is shown by the first edit after it that counts k servers past it.
    fleet_lag: list[float] = []
    edits = defaultdict(list)
    for call in fake.calls_to("chat.update"):
        if call.ok:
            edits[call.body.get("ts")].append((call.time, out_of_changing(call)))
    for r in rollouts:
        ends = sorted(t for t in (ended_at(s.id) for s in r.servers) if t is not None)
        for k, t in enumerate(ends, start=1):
            shown = next((at for at, n in edits[r.message_ts] if at >= t and n >= k), None)
            if shown is not None:
                fleet_lag.append(shown - t)
    # Single changes: the post or digest whose text carries the request id and "now runs".
    posted: dict[str, float] = {}
    for call in fake.calls_to("chat.postMessage"):
        text = str(call.body.get("text", ""))
        if call.ok and "now runs" in text:
            for rid in _CR.findall(text):
                posted.setdefault(rid, call.time)
    single_lag = [
        posted[q.id] - t
        for q in requests
        if q.server_id not in fleet_servers and q.id in posted and (t := ended_at(q.server_id)) is not None
    ]
    singles = [q for q in requests if q.server_id not in fleet_servers]
    posts = [c for c in fake.calls_to("chat.postMessage") if c.ok]
    per_channel = defaultdict(list)
    for call in posts:
        per_channel[call.body.get("channel")].append(call.time)
    times = [c.time for c in fake.calls]
    methods = Counter(c.method for c in fake.calls)
    per_server = [calls[sid] for sid in (*fleet_servers, *(q.server_id for q in singles))]
    return {
        "fleet_servers": len(fleet_servers),
        "fleets": len(rollouts),
        "fleets_done": sum(1 for r in rollouts if r.phase.value == "done"),
        "fleet_healthy": sum(1 for r in rollouts for s in r.servers if s.phase.value == "healthy"),
        "singles": len(singles),
        "singles_succeeded": sum(1 for q in singles if q.state.value == "succeeded"),
        "fleet_lag_s": {"shown": len(fleet_lag), "p50": pct(fleet_lag, 50), "p99": pct(fleet_lag, 99)},
        "single_lag_s": {"shown": len(single_lag), "p50": pct(single_lag, 50), "p99": pct(single_lag, 99)},
        "all_lag_s": {"p50": pct(fleet_lag + single_lag, 50), "p99": pct(fleet_lag + single_lag, 99)},
        "ecs_calls_per_server": {"mean": statistics.fmean(per_server or [0]), "max": max(per_server or [0])},
        "ecs_calls_not_per_server": calls["?"],
        "slack_calls": dict(methods),
        "slack_peak_per_60s": {m: peak_in_window([c.time for c in fake.calls if c.method == m], 60.0) for m in methods},
        "posts_by_kind": dict(Counter(post_kind(str(c.body.get("text", ""))) for c in posts)),
        "post_peak_per_channel_60s": max((peak_in_window(t, 60.0) for t in per_channel.values()), default=0),
        "slack_429": sum(1 for c in fake.calls if not c.ok and "ratelimited" in str(getattr(c, "error", ""))),
        "slack_minutes": (max(times) - min(times)) / 60 if times else 0.0,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from bot.domain.request import RequestState
    from bot.store import open_store
    from sandbox.devtools.fake_slack import FakeSlack
    from sandbox.devtools.stack import LocalStack, StackOptions
    from sandbox.simulator.server import SimulatorServer

    total = args.fleet_servers + args.singles
    ecs_rate = args.ecs_rate or max(20.0, round(1.5 * total / args.interval))
    tmp = tempfile.TemporaryDirectory(prefix="ecsbot-bench-")
    workdir = Path(tmp.name)
    sim = SimulatorServer(fixtures_with(total), speed=args.speed, seed=args.seed, max_logged_requests=80 * total)
    fake = FakeSlack(clock=time.time, rate_limits=True)  # Slack's tiers, enforced
    options = StackOptions(poll_interval=args.interval, ecs_rate=ecs_rate, deadline=1800.0, slack_rate_limits=True)
    stack = LocalStack(options, workdir=workdir)
    stack.sim, stack.slack = sim, fake
    await sim.start()
    await fake.start()
    child = None
    try:
        settings = stack.settings()
        store = open_store(settings.db_path)
        channels = [f"C0BENCH{k:04d}" for k in range(args.channels)]
        rollout_ids = await seed(store, args, channels)
        fake.clear_calls()
        config = {
            "poll_interval": args.interval,
            "first_poll": min(2.0, args.interval),
            "deadline": 1800.0,
            "ecs_rate": ecs_rate,
            "lease_ttl": 30.0,
        }
        child = await start_child(settings.to_env(), config, workdir / "bot.log")
        started = time.time()
        say(f"bot started: {len(rollout_ids)} fleets, {args.singles} singles, ECS budget {ecs_rate:.0f}/s")
        await wait_done(store, rollout_ids, args.singles, args.timeout, started)
        await asyncio.sleep(args.slack_wait)  # the last coalesced edits and digests
        report = await child.finish()
        ready = child.ready
        child = None
        rollouts = [r for r in [await store.get_rollout(i) for i in rollout_ids] if r is not None]
        requests = await store.in_states(*RequestState)
        await store.aclose()
        result = measure(args, sim, fake, rollouts, requests)
        return {
            **result,
            "interval_s": args.interval,
            "speed": args.speed,
            "ecs_rate": ecs_rate,
            "wall_s": time.time() - started,
            "notifier": report.get("notifier", {}),
            "bot_peak_rss_mb": report["max_rss_mb"],
            "bot_cpu_s_startup": ready["cpu_s"],
            "bot_cpu_s_run": report["cpu_s"] - ready["cpu_s"],
        }
    finally:
        if child is not None:
            child.proc.kill()
            await child.proc.wait()
        await fake.stop()
        await sim.stop()
        tmp.cleanup()


def print_table(r: dict[str, Any]) -> None:
    target = r["interval_s"] + 1
    f, s, a = r["fleet_lag_s"], r["single_lag_s"], r["all_lag_s"]
    print(
        f"fleet bench: {r['fleets']} fleets ({r['fleet_servers']} servers) + {r['singles']} single changes, "
        f"interval {r['interval_s']:g} s, speed {r['speed']:g}, ECS budget {r['ecs_rate']:g}/s; "
        f"{r['fleets_done']} fleets done ({r['fleet_healthy']} servers healthy), {r['singles_succeeded']} singles ok"
    )
    rows = [
        ("job end → Slack, fleet servers p50 / p99", f"{f['p50']:.1f} / {f['p99']:.1f} s ({f['shown']} shown)"),
        ("job end → Slack, single changes p50 / p99", f"{s['p50']:.1f} / {s['p99']:.1f} s ({s['shown']} shown)"),
        ("job end → Slack, all p50 / p99", f"{a['p50']:.1f} / {a['p99']:.1f} s (target p99 <= {target:g} s)"),
        (
            "ECS calls per server mean / max",
            f"{r['ecs_calls_per_server']['mean']:.1f} / {r['ecs_calls_per_server']['max']}",
        ),
        ("ECS calls not tied to a server", str(r["ecs_calls_not_per_server"])),
        ("bot peak RSS", f"{r['bot_peak_rss_mb']:.0f} MB"),
        (
            "bot CPU (start-up / run)",
            f"{r['bot_cpu_s_startup']:.1f} s / {r['bot_cpu_s_run']:.1f} s over {r['wall_s']:.0f} s",
        ),
        ("Slack 429s seen by the bot", str(r["notifier"].get("ratelimited", 0))),
    ]
    for method, peak in sorted(r["slack_peak_per_60s"].items()):
        tier = TIERS.get(method)
        rows.append(
            (
                f"{method} peak per 60 s",
                f"{peak} (total {r['slack_calls'][method]})" + (f", tier {tier}" if tier else ""),
            )
        )
    rows.append(("chat.postMessage peak per channel per 60 s", f"{r['post_peak_per_channel_60s']} (Slack: 1/s)"))
    rows.append(("posts by kind", ", ".join(f"{k} {n}" for k, n in sorted(r["posts_by_kind"].items()))))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fleet-servers", type=int, default=1000)
    parser.add_argument("--fleet-size", type=int, default=100)
    parser.add_argument("--waves", default="10%,rest")
    parser.add_argument("--parallel", type=int, default=50, help="servers at once per fleet")
    parser.add_argument("--singles", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval (and health gate) in s")
    parser.add_argument("--speed", type=float, default=8.0, help="simulator speed; 8 makes a change take 23-38 s")
    parser.add_argument("--ecs-rate", type=float, default=0.0, help="ECS calls/s (default 1.5 x servers/interval)")
    parser.add_argument("--channels", type=int, default=50, help="origin channels of the single changes")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--slack-wait", type=float, default=15.0, help="s to let the last edits land")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if min(args.fleet_servers, args.fleet_size, args.parallel, args.channels) < 1 or args.interval <= 0:
        parser.error("sizes, --parallel, --channels and --interval must be positive")
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(run(args))
        print_table(result)
        if args.json:
            print(json.dumps(result, indent=2, default=str))
        return 0
    return 130


if __name__ == "__main__":
    sys.exit(main())
