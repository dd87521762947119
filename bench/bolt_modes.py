"""What Bolt itself costs per slash-command ack in each way a listener can be written, in one process, no sockets.

An empty `/changeos` listener under four Bolt settings: the default (the ack function runs as a task and Bolt polls
for its ack every 10 ms), `lazy=` (Bolt deep-copies the request for each lazy function before it answers), and both
with `process_before_response=True` (the ack function is awaited, no polling). Bursts of `--concurrency` signed
commands go through `AsyncApp.async_dispatch`, the settings interleaved burst by burst. It prints the CPU per ack
(process time over the bursts) and the latency from dispatch to answer.

    .venv/bin/python bench/bolt_modes.py --rounds 15 --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slack_bolt.async_app import AsyncApp  # noqa: E402
from slack_bolt.request.async_request import AsyncBoltRequest  # noqa: E402
from slack_sdk.web.async_client import AsyncWebClient  # noqa: E402

from bench.ack import BOT_TOKEN, COMMAND, SIGNING_SECRET, pct  # noqa: E402
from sandbox.devtools import slack_requests as sr  # noqa: E402

MODES = {  # name -> (process_before_response, lazy)
    "default": (False, False),
    "lazy=": (False, True),
    "process_before_response": (True, False),
    "process_before_response + lazy=": (True, True),
}


def build(slack_api: str, *, before_response: bool, lazy: bool) -> AsyncApp:
    app = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=slack_api),
        signing_secret=SIGNING_SECRET,
        process_before_response=before_response,
    )

    async def acknowledge(ack: Any) -> None:
        await ack()

    async def after(body: dict[str, Any]) -> None:
        return None

    if lazy:
        app.command("/changeos")(ack=acknowledge, lazy=[after])
    else:
        app.command("/changeos")(acknowledge)
    return app


def signed() -> tuple[str, dict[str, list[str]]]:
    body = sr.slash_command(COMMAND, response_url="http://127.0.0.1:9/response/x")
    headers = {**sr.sign(SIGNING_SECRET, body), "Content-Type": "application/x-www-form-urlencoded"}
    return body.decode(), {key.lower(): [value] for key, value in headers.items()}


async def run(rounds: int, concurrency: int) -> dict[str, dict[str, float]]:
    from sandbox.devtools.fake_slack import FakeSlack

    for name in ("slack_bolt", "slack_sdk"):
        logging.getLogger(name).setLevel(logging.WARNING)
    fake = FakeSlack(bot_token=BOT_TOKEN)
    await fake.start()
    try:
        apps = {name: build(fake.api_url, before_response=b, lazy=lz) for name, (b, lz) in MODES.items()}
        for app in apps.values():  # the first request of each app asks auth.test once
            body, headers = signed()
            await app.async_dispatch(AsyncBoltRequest(body=body, headers=headers))
        cpu = dict.fromkeys(apps, 0.0)
        latencies: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(rounds):
            for name, app in apps.items():
                requests = [signed() for _ in range(concurrency)]

                async def one(body: str, headers: dict[str, list[str]], app: AsyncApp = app, name: str = name) -> None:
                    started = time.perf_counter()
                    await app.async_dispatch(AsyncBoltRequest(body=body, headers=headers))
                    latencies[name].append(time.perf_counter() - started)

                began = time.process_time()
                await asyncio.gather(*(one(body, headers) for body, headers in requests))
                cpu[name] += time.process_time() - began
                await asyncio.sleep(0.05)  # lazy functions run here, outside the measured burst
    finally:
        await fake.stop()
    return {
        name: {
            "cpu_us_per_ack": cpu[name] / (rounds * concurrency) * 1e6,
            "p50_ms": pct(latencies[name], 50) * 1000,
            "p99_ms": pct(latencies[name], 99) * 1000,
        }
        for name in apps
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="bursts per setting (default 15)")
    parser.add_argument("--concurrency", type=int, default=50, help="commands per burst (default 50)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    if args.rounds < 1 or args.concurrency < 1:
        parser.error("--rounds and --concurrency must be at least 1")
    result = asyncio.run(run(args.rounds, args.concurrency))
    print(f"Bolt's own ack cost: {args.rounds} bursts of {args.concurrency} `/changeos` per setting, interleaved")
    rows = [("setting", "CPU us/ack", "p50 ms", "p99 ms")]
    rows += [(k, f"{v['cpu_us_per_ack']:.0f}", f"{v['p50_ms']:.1f}", f"{v['p99_ms']:.1f}") for k, v in result.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
