"""What a backup costs a change: added wall time at simulator speed 1, and extra cloud calls.

Runs the same change (db-01, already stopped, to ubuntu-22.04) through the whole loopback stack twice, under a rule
with `backup = "off"` and one with `backup = "required"`, and counts the simulator's cloud requests from the
approval to the end. The simulator divides every duration by `--speed`, so the added wall time at speed 1 is the
difference measured at `--speed` multiplied by it; the bot's own polling (every `--poll` seconds, not scaled) makes
that a slight overestimate, by up to one poll interval times the speed.

    .venv/bin/python bench/backup.py --speed 60
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

from bot.domain.request import RequestState
from bot.slack import views
from sandbox.devtools.stack import APPROVER, DEFAULT_POLICY, LocalStack, StackOptions

COMMAND = "db-01 ubuntu-22.04 --key ops-key --reason bench"


async def one_change(backup: bool, speed: float, poll: float) -> tuple[float, Counter[str]]:
    policy = DEFAULT_POLICY + ('backup = "required"\n' if backup else "")
    options = StackOptions(speed=speed, poll_interval=poll, first_poll=poll / 4, policy=policy, deadline=600.0)
    async with LocalStack(options) as stack:
        assert stack.rt is not None
        await stack.command(COMMAND)
        await stack.submit(await stack.plan_view())
        request = None
        while request is None:
            live = await stack.rt.store.live()
            request = next((r for r in live if r.approval_ts), None)
            await asyncio.sleep(0.01)
        before = len(stack.sim.requests)
        started = time.monotonic()
        await stack.click(views.APPROVE_ACTION, request.id, user=APPROVER)
        while True:
            current = await stack.rt.store.get(request.id)
            assert current is not None
            if current.is_terminal:
                break
            await asyncio.sleep(0.005)
        took = time.monotonic() - started
        if current.state is not RequestState.SUCCEEDED:
            raise SystemExit(f"the change did not succeed: {current.result}")
        calls = Counter(r["route"] for r in list(stack.sim.requests)[before:])
        return took, calls


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--poll", type=float, default=0.2, help="the tracker's poll interval (seconds, not scaled)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    plain, backed = [], []
    for _ in range(args.runs):
        plain.append(await one_change(False, args.speed, args.poll))
        backed.append(await one_change(True, args.speed, args.poll))
    t_plain = sum(t for t, _ in plain) / len(plain)
    t_backed = sum(t for t, _ in backed) / len(backed)
    calls_plain = sum(sum(c.values()) for _, c in plain) / len(plain)
    calls_backed = sum(sum(c.values()) for _, c in backed) / len(backed)
    extra = Counter[str]()
    for (_, with_backup), (_, without) in zip(backed, plain, strict=True):
        extra.update(with_backup)
        extra.subtract(without)
    print(f"speed {args.speed:g}, poll {args.poll:g}s, {args.runs} run(s) each")
    print(f"change without backup: {t_plain:.2f}s wall, {calls_plain:.1f} cloud calls")
    print(f"change with backup:    {t_backed:.2f}s wall, {calls_backed:.1f} cloud calls")
    print(f"added wall time at speed 1: {(t_backed - t_plain) * args.speed / 60:.1f} minutes")
    print(f"extra cloud calls per change: {calls_backed - calls_plain:.1f}")
    for route, count in sorted(extra.items()):
        if count:
            print(f"  {route}: {count / args.runs:+.1f}")


if __name__ == "__main__":
    asyncio.run(main())
