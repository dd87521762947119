"""CPU per request of the cloud client's connection pool, by pool size, transport and concurrency, on loopback.

httpcore walks its connections on every request and counts them once per idle connection, so a request's CPU grows
with the square of the pool once it is full. Each setting fills its pool with idle keep-alive connections (as a
burst of commands leaves it), then sends `--requests` GETs to a local aiohttp server, `concurrency` at a time, and
prints the process CPU per request (the server's share included, the same in every row).

    .venv/bin/python bench/cloud_pool.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from aiohttp import web  # noqa: E402

from bot.cloud.transport import fast_idle_check_transport  # noqa: E402


async def run(pools: list[int], concurrencies: list[int], requests: int) -> list[dict[str, Any]]:
    async def answer(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    rows = []
    try:
        for concurrency in concurrencies:
            for size in pools:
                limits = httpx.Limits(max_connections=size, max_keepalive_connections=size, keepalive_expiry=30.0)
                for name in ("httpx default", "fast idle check"):
                    transport = fast_idle_check_transport(limits) if name != "httpx default" else None
                    async with httpx.AsyncClient(limits=limits, transport=transport) as client:
                        await asyncio.gather(*(client.get(url) for _ in range(size)))  # a full pool, all idle
                        batches = max(1, requests // concurrency)
                        began = time.process_time()
                        for _ in range(batches):
                            await asyncio.gather(*(client.get(url) for _ in range(concurrency)))
                        cpu = (time.process_time() - began) / (batches * concurrency)
                    rows.append({"concurrency": concurrency, "pool": size, "transport": name, "cpu_us": cpu * 1e6})
    finally:
        await runner.cleanup()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", default="64,32,16", help="pool sizes, comma-separated (default 64,32,16)")
    parser.add_argument("--concurrency", default="1,50", help="requests at once, comma-separated (default 1,50)")
    parser.add_argument("--requests", type=int, default=500, help="requests per setting (default 500)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    try:
        pools = [int(p) for p in args.pools.split(",")]
        concurrencies = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        parser.error("--pools and --concurrency take whole numbers separated by commas, e.g. 64,32")
    if min(pools + concurrencies) < 1 or args.requests < 1:
        parser.error("pool sizes, concurrencies and --requests must be at least 1")
    rows = asyncio.run(run(pools, concurrencies, args.requests))
    print("cloud client pool: CPU per request with a full pool of idle keep-alive connections")
    table = [("concurrency", "pool", "transport", "CPU us/request")]
    table += [(str(r["concurrency"]), str(r["pool"]), r["transport"], f"{r['cpu_us']:.0f}") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
