"""What the metrics hooks cost: one ack observation, one cloud-call count, one Slack-call count, one scrape.

    .venv/bin/python bench/metrics.py
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import metrics


def per_call(stmt: str, number: int) -> float:
    """Best of 5 runs, seconds per call."""
    return min(timeit.repeat(stmt, globals={"metrics": metrics}, number=number, repeat=5)) / number


def main() -> None:
    rows = [
        ("ack latency observation (edge)", per_call("metrics.ack('command', 0.01)", 200_000)),
        ("cloud call count", per_call("metrics.cloud_call('get_job', 200)", 200_000)),
        ("slack call count", per_call("metrics.slack_call('chat.update', 'ok')", 200_000)),
        ("scrape (/metrics body)", per_call("metrics.exposition()", 200)),
    ]
    print(f"{'hook':34} {'µs per call':>12}")
    for name, seconds in rows:
        print(f"{name:34} {seconds * 1e6:12.2f}")


if __name__ == "__main__":
    main()
