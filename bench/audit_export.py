"""`ecsbot audit export`, `/changeos history` and `/changeos status` over a database of many requests.

The database is written in bulk (tests/support/bulk.py: N ended requests, three audit rows each). The export runs
twice: as the operator runs it (`ecsbot audit export --output FILE`, a child process whose peak RSS the kernel
reports), and in this process under tracemalloc, whose peak is the Python memory the stream held at once; the
same for a tenth of the trail shows that it does not grow with the trail. History and status are timed with the
store's own queries, as the listener asks them.

    .venv/bin/python bench/audit_export.py                   # 100,000 requests (300,000 audit rows)
    .venv/bin/python bench/audit_export.py --requests 20000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.services.audit_export import export  # noqa: E402
from bot.store import SQLiteStore  # noqa: E402
from tests.support.bulk import START, fill  # noqa: E402


async def traced_export(db: Path, out: Path, fmt: str, since: object = None) -> tuple[int, int, float]:
    """(rows, tracemalloc peak bytes, seconds) of one export in this process."""
    store = SQLiteStore(db)
    try:
        tracemalloc.start()
        began = time.perf_counter()
        with out.open("w", encoding="utf-8", newline="") as sink:
            n = await export(store.audit_since(since), sink, fmt)  # type: ignore[arg-type]
        took = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        await store.aclose()
    return n, peak, took


def child_export(db: Path, out: Path, fmt: str, since: datetime | None = None) -> tuple[float, int]:
    """(seconds, peak RSS KiB) of `ecsbot audit export` as a child process."""
    window = ["--since", since.isoformat()] if since else []
    env = {**os.environ, "ECSBOT_DB": str(db)}
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "audit", "export", "--format", fmt, "--output", str(out), *window],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(proc.stderr.read().decode() if proc.stderr else "export failed")
    return took, usage.ru_maxrss


async def timed(fn, rounds: int = 20) -> float:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    for _ in range(rounds):
        await fn()
    return (time.perf_counter() - began) / rounds * 1000


async def queries(db: Path, requests: int) -> dict[str, float]:
    store = SQLiteStore(db)
    try:
        last = START
        return {
            "history, latest 20 (ms)": await timed(lambda: store.history(limit=20)),
            "history of one server by name (ms)": await timed(lambda: store.history(server="web-0042", limit=20)),
            "history --mine --since (ms)": await timed(
                lambda: store.history(requester="U0REQ00003", since=last, limit=20)
            ),
            "status CR-… (get + audit) (ms)": await timed(lambda: _status(store, requests)),
        }
    finally:
        await store.aclose()


async def _status(store: SQLiteStore, requests: int) -> None:
    from tests.support.bulk import request_id

    request = await store.get(request_id(requests // 2))
    assert request is not None
    await store.audit(request.id)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ecsbot.db"
        began = time.perf_counter()
        await fill(db, args.requests)
        built = time.perf_counter() - began
        out = Path(tmp) / "audit.out"
        result: dict[str, object] = {"requests": args.requests, "database MB": round(db.stat().st_size / 1e6, 1)}
        result["build (s)"] = round(built, 1)
        for fmt in ("jsonl", "csv"):
            took, rss = child_export(db, out, fmt)
            result[f"ecsbot audit export {fmt}: seconds"] = round(took, 2)
            result[f"ecsbot audit export {fmt}: peak RSS MB"] = round(rss / 1024, 1)
            result[f"ecsbot audit export {fmt}: output MB"] = round(out.stat().st_size / 1e6, 1)
        tenth = START + (args.requests * 9 // 10) * timedelta(minutes=5)  # fill()'s step
        _, rss10 = child_export(db, out, "jsonl", tenth)
        result["ecsbot audit export jsonl, last tenth: peak RSS MB"] = round(rss10 / 1024, 1)
        n, peak, took = await traced_export(db, out, "jsonl")
        result["in-process rows"] = n
        result["in-process tracemalloc peak KB, whole trail"] = round(peak / 1024)
        n10, peak10, _ = await traced_export(db, out, "jsonl", tenth)
        result["in-process rows, last tenth"] = n10
        result["in-process tracemalloc peak KB, last tenth"] = round(peak10 / 1024)
        result.update({k: round(v, 2) for k, v in (await queries(db, args.requests)).items()})
        result["bench process max RSS MB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    asyncio.run(main())
