"""How long the event loop stalls while the store works: the synchronous store (SQLite on the loop) beside today's.

A ticker task asks the loop to wake it every millisecond and records how late each wake-up comes; that lateness
is what every Slack ack, health probe and tracker step waiting on the same loop would suffer. Meanwhile the bench
reads `live()` and `count_live()` (the tracker's reload and `/healthz`) over 1,000 live requests, again and again.
A second scenario has another process hold the write lock for a while (a backup, a second bot) during one write.

"before" is the synchronous `bot/store.py` as it was before the async boundary, taken from git and imported as it
is; "after" is `bot.store` of the working tree. Both use the same database file layout, rows and queries.

    .venv/bin/python bench/store_loop.py                 # 1,000 rows, 200 rounds
    .venv/bin/python bench/store_loop.py --rows 1000 --rounds 200 --hold 0.5 --json
    .venv/bin/python bench/store_loop.py --database-url postgresql://…   # PostgreSQL's reads beside them
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout


def main_store_module(ref: str | None) -> ModuleType:
    """The synchronous bot/store.py as a module of its own (it only imports bot.domain, which both sides share):
    by default from the commit before it became the bot/store/ package."""
    if ref is None:
        ref = git("log", "-1", "--format=%H", "--", "bot/store.py").strip() + "^"
    source = git("show", f"{ref}:bot/store.py")
    path = Path(tempfile.mkdtemp(prefix="ecsbot-bench-")) / "main_store.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("main_store", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def requests(n: int) -> list[Any]:
    from bot.domain.request import ChangeRequest, RequestState

    return [
        ChangeRequest(
            state=RequestState.APPROVED,
            requester="U01REQ0001",
            origin_channel="C01ORIGIN1",
            server_id=f"srv-{i:05d}",
            server_name=f"bench-{i:05d}",
            target_image_id="img-1",
            target_image_name="ubuntu-22.04",
            keyname="ops-key",
            reason="loop stall benchmark",
            approvals_channel="C01APPROVE1",
            approvals=["U01APR0001"],
        )
        for i in range(n)
    ]


class Ticker:
    """Wakes every `period` seconds and records how late each wake-up was."""

    def __init__(self, period: float = 0.001) -> None:
        self.period = period
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.lags.append(max(0.0, loop.time() - due))

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def measure(
    name: str, rounds: int, live: Callable[[], Awaitable[Any]], count: Callable[[], Awaitable[Any]]
) -> dict[str, Any]:
    calls: list[float] = []
    await asyncio.sleep(0.05)
    with Ticker() as ticker:
        start = time.perf_counter()
        for _ in range(rounds):
            t0 = time.perf_counter()
            await live()
            calls.append(time.perf_counter() - t0)
            await count()
            await asyncio.sleep(0.002)  # room for the ticker between rounds, as between two polls
        wall = time.perf_counter() - start
    return {
        "side": name,
        "live_ms_p50": statistics.median(calls) * 1000,
        "lag_ms_p50": pct(ticker.lags, 0.50) * 1000,
        "lag_ms_p99": pct(ticker.lags, 0.99) * 1000,
        "lag_ms_max": max(ticker.lags) * 1000,
        "ticks": len(ticker.lags),
        "wall_s": wall,
    }


def hold_write_lock(path: Path, seconds: float, held: threading.Event) -> None:
    """Another process's transaction, as a thread with its own connection: BEGIN IMMEDIATE, wait, roll back."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


async def measure_locked(name: str, path: Path, hold: float, write: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    held = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(path, hold, held))
    holder.start()
    held.wait()  # a few ms, before the measurement starts
    with Ticker() as ticker:
        await asyncio.sleep(0.01)  # the ticker is ticking before the write starts
        t0 = time.perf_counter()
        await write()
        waited = time.perf_counter() - t0
        await asyncio.sleep(0.01)
    holder.join()
    return {"side": name, "write_waited_s": waited, "lag_ms_max": max(ticker.lags) * 1000, "ticks": len(ticker.lags)}


async def before(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    module = main_store_module(args.ref)
    path = workdir / "before.db"
    store = module.Store(path)
    for request in requests(args.rows):
        store.create(request, actor="bench")

    async def live() -> Any:
        return store.live()

    async def count() -> Any:
        return store.count_live()

    reads = await measure("before (sync SQLite on the loop)", args.rounds, live, count)
    created = store.create(requests(args.rows + 1)[-1], actor="bench")

    async def write() -> Any:
        return store.update(created.id, reason="held")

    locked = await measure_locked("before (sync SQLite on the loop)", path, args.hold, write)
    store.close()
    return reads, locked


async def after(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from bot.store import open_store

    path = workdir / "after.db"
    store = open_store(path)
    for request in requests(args.rows):
        await store.create(request, actor="bench")
    reads = await measure("after (store thread)", args.rounds, store.live, store.count_live)
    created = await store.create(requests(args.rows + 1)[-1], actor="bench")

    async def write() -> Any:
        return await store.update(created.id, reason="held")

    locked = await measure_locked("after (store thread)", path, args.hold, write)
    await store.aclose()
    return reads, locked


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    head = " | ".join(title for _, title in columns)
    lines = [f"| {head} |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = [f"{row[key]:.2f}" if isinstance(row[key], float) else str(row[key]) for key, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def on_postgres(args: argparse.Namespace) -> dict[str, Any]:
    """The same reads on PostgreSQL, in a schema of its own (dropped after)."""
    from bench.tracker import fresh_schema
    from bot.store import open_store

    url, drop = fresh_schema(args.database_url)
    try:
        store = open_store(url)
        for request in requests(args.rows):
            await store.create(request, actor="bench")
        reads = await measure("after (PostgreSQL, async)", args.rounds, store.live, store.count_live)
        await store.aclose()
        return reads
    finally:
        drop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ecsbot-bench-") as tmp:
        workdir = Path(tmp)
        reads_before, locked_before = await before(args, workdir)
        reads_after, locked_after = await after(args, workdir)
    reads = [reads_before, reads_after]
    if args.database_url:
        reads.append(await on_postgres(args))
    return {"reads": reads, "locked": [locked_before, locked_after]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000, help="live requests in the store")
    parser.add_argument("--rounds", type=int, default=200, help="live() + count_live() rounds")
    parser.add_argument("--hold", type=float, default=0.5, help="seconds another connection holds the write lock")
    parser.add_argument("--ref", help="git ref of the 'before' store (default: the last one with bot/store.py)")
    parser.add_argument("--database-url", help="also read on this PostgreSQL (postgresql://…)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(f"\nEvent loop lag while reading {args.rows} live requests ({args.rounds} rounds of live() + count_live())")
    print(
        table(
            result["reads"],
            [
                ("side", "store"),
                ("live_ms_p50", "live() ms p50"),
                ("lag_ms_p50", "loop lag ms p50"),
                ("lag_ms_p99", "loop lag ms p99"),
                ("lag_ms_max", "loop lag ms max"),
                ("ticks", "ticker wake-ups"),
            ],
        )
    )
    print(f"\nOne write while another connection holds the write lock for {args.hold:g} s")
    print(
        table(
            result["locked"],
            [
                ("side", "store"),
                ("write_waited_s", "write waited s"),
                ("lag_ms_max", "loop lag ms max"),
                ("ticks", "ticker wake-ups"),
            ],
        )
    )
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
