"""How many job polls per second one simulator process answers on this machine.

Starts `ecsbot simulator` as its own process (or in this process with --inprocess), starts one change-OS job,
then N concurrent clients poll `GET /v1/{project_id}/jobs/{job_id}` for a few seconds, each request signed with
SDK-HMAC-SHA256 as the real client does. Prints polls/s and p50/p99 latency (and JSON with --json).
Then one client lists images from a catalogue of --images N (default 5000): a page of 500 unfiltered, filtered
pages, an exact name, and every page of the catalogue followed with `marker`.

    .venv/bin/python bench/simulator.py --concurrency 32 --duration 5 --images 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.cloud.signer import sign

PROJECT = "0605767ef600d5762f23c013c6e7ad23"
AK = "SIMULATORAK000000000"
SK = "simulator-secret-key-0000000000000000000"
USER = "7e25b1da389f4697a79df3a0e5bd494e"
DB_01 = "7a9f4d3b-0000-4f00-8000-000000000002"
UBUNTU_22 = "67f433d8-ed0e-4321-a8a2-a71838539e09"


@contextlib.asynccontextmanager
async def simulator(inprocess: bool, seed: int, images: int) -> AsyncIterator[str]:
    if inprocess:
        from sandbox.simulator import SimulatorServer

        async with SimulatorServer(seed=seed, catalogue_size=images) as server:
            yield server.base_url
        return
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "simulator",
        "--port",
        "0",
        "--seed",
        str(seed),
        "--catalogue",
        str(images),
        stdout=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    try:
        assert proc.stdout is not None
        endpoint = ""
        deadline = time.monotonic() + 20
        while not endpoint:
            line = (await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.monotonic()))).decode()
            if not line:
                raise SystemExit("the simulator exited before printing its endpoint")
            if line.startswith("ECS_ENDPOINT="):
                endpoint = line.strip().split("=", 1)[1]
        yield endpoint
    finally:
        proc.terminate()
        await proc.wait()


async def signed(
    session: aiohttp.ClientSession,
    base: str,
    method: str,
    path: str,
    body: bytes = b"",
    query: list[tuple[str, str]] | None = None,
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", "X-Project-Id": PROJECT}
    out = sign(
        access_key=AK,
        secret_key=SK,
        method=method,
        host=urlsplit(base).netloc,
        path=path,
        query=query or [],
        headers=headers,
        body=body,
    )
    url = base + path + (f"?{out.query_string}" if out.query_string else "")
    async with session.request(method, url, data=body or None, headers=out.headers) as response:
        return response.status, await response.read()


IMAGE_QUERIES: dict[str, list[tuple[str, str]]] = {
    "page of 500, no filter": [],
    "ECS, active, gold, Linux": [
        ("__imagetype", "gold"),
        ("status", "active"),
        ("virtual_env_type", "FusionCompute"),
        ("__os_type", "Linux"),
    ],
    "a rare kind (ISO, shared)": [("virtual_env_type", "IsoImage"), ("__imagetype", "shared")],
    "exact name": [("name", "CentOS 7.9 64bit")],
    "flavor_id kc1.large.2": [("flavor_id", "kc1.large.2")],
}


async def images_bench(session: aiohttp.ClientSession, base: str, repeat: int = 40) -> dict[str, object]:
    """Sequential listing latency (one client), per query, and the time to page through everything."""
    out: dict[str, object] = {}
    for label, query in IMAGE_QUERIES.items():
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            status, raw = await signed(session, base, "GET", "/v2/cloudimages", query=query)
            times.append(time.perf_counter() - started)
            if status != 200:
                raise SystemExit(f"image listing failed: {status} {raw[:200].decode()}")
        times.sort()
        out[label] = {"p50_ms": round(statistics.median(times) * 1000, 2), "p99_ms": round(times[-1] * 1000, 2)}
    marker: list[tuple[str, str]] = []
    total, pages = 0, 0
    started = time.perf_counter()
    while True:
        _, raw = await signed(session, base, "GET", "/v2/cloudimages", query=[("limit", "500"), *marker])
        page = json.loads(raw)["images"]
        total, pages = total + len(page), pages + 1
        if len(page) < 500:
            break
        marker = [("marker", page[-1]["id"])]
    out["all pages"] = {"images": total, "pages": pages, "ms": round((time.perf_counter() - started) * 1000, 1)}
    return out


async def run(concurrency: int, duration: float, inprocess: bool, seed: int, images: int) -> dict[str, object]:
    async with simulator(inprocess, seed, images) as base:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",)) as session:
            body = json.dumps({"os-change": {"keyname": "ops-key", "userid": USER, "imageid": UBUNTU_22}}).encode()
            status, raw = await signed(session, base, "POST", f"/v1/{PROJECT}/cloudservers/{DB_01}/changeos", body)
            if status != 200:
                raise SystemExit(f"could not start a job: {status} {raw.decode()}")
            job_path = f"/v1/{PROJECT}/jobs/{json.loads(raw)['job_id']}"
            latencies: list[float] = []
            errors = 0
            stop_at = time.monotonic() + duration

            async def worker() -> None:
                nonlocal errors
                while time.monotonic() < stop_at:
                    started = time.perf_counter()
                    status, _ = await signed(session, base, "GET", job_path)
                    latencies.append(time.perf_counter() - started)
                    if status != 200:
                        errors += 1

            began = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.monotonic() - began
            listing = await images_bench(session, base) if images else {}
    ordered = sorted(latencies)
    return {
        "polls": len(latencies),
        "seconds": round(elapsed, 2),
        "polls_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "errors": errors,
        "concurrency": concurrency,
        "mode": "in-process" if inprocess else "subprocess",
        "images": listing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent polling clients (default 32)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of polling (default 5)")
    parser.add_argument("--inprocess", action="store_true", help="run the simulator in this process (shares a core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=5000, help="catalogue size for the listing part (0: skip)")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    result = asyncio.run(run(args.concurrency, args.duration, args.inprocess, args.seed, args.images))
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"simulator ({result['mode']}): {result['polls_per_second']} job polls/s over {result['seconds']} s, "
        f"{args.concurrency} clients, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, errors {result['errors']}"
    )
    listing = result["images"]
    assert isinstance(listing, dict)
    for label, figures in listing.items():
        print(f"  images ({args.images} + curated) {label}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
