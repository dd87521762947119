"""The export streams: over a database of 100,000 requests (300,000 audit rows) `ecsbot audit export` holds a page,
not the trail. The kernel's peak RSS of the command is compared with the same command over an empty trail."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from bot.store import SQLiteStore
from tests.support.bot_process import ECSBOT, bot_env
from tests.support.bulk import fill, request_id

REQUESTS = 100_000


def export_rss_mb(workdir: Path, db: Path, out: Path) -> float:
    """Peak RSS of `ecsbot audit export --output out`, from the kernel (wait4)."""
    proc = subprocess.Popen(
        [*ECSBOT, "audit", "export", "--output", str(out)], cwd=workdir, env=bot_env({"ECSBOT_DB": str(db)})
    )
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss / 1024


async def test_exporting_100000_requests_holds_only_a_page_in_memory(tmp_path: Path) -> None:
    empty, full = tmp_path / "empty.db", tmp_path / "full.db"
    await SQLiteStore(empty).aclose()
    await fill(full, REQUESTS)
    out = tmp_path / "audit.jsonl"
    baseline = export_rss_mb(tmp_path, empty, out)
    peak = export_rss_mb(tmp_path, full, out)
    # 300,000 rows held at once would take well over 100 MB; the stream holds a page of 1,000 (about 1.5 MB)
    assert peak - baseline < 20, f"{peak:.0f} MB exporting 100,000 requests, {baseline:.0f} MB exporting none"
    with out.open(encoding="utf-8") as lines:
        first = json.loads(next(lines))
        count, last = 1, first
        for count, line in enumerate(lines, 2):
            last = json.loads(line) if count == 3 * REQUESTS else last
    assert count == 3 * REQUESTS
    assert first["request_id"] == request_id(0) and last["request_id"] == request_id(REQUESTS - 1)
