"""A SQLite database of many ended requests, written in bulk (the store's own schema, rows as the store encodes
them): for the export's memory test and bench/audit_export.py. Three audit rows a request, as a change leaves."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.domain.request import ID_ALPHABET, RequestState
from bot.store import SQLiteStore
from bot.store.codec import KINDS, encode_text
from tests.support.requests import change_request

START = datetime(2025, 1, 1, tzinfo=UTC)


def request_id(n: int) -> str:
    digits = []
    for _ in range(6):
        n, d = divmod(n, len(ID_ALPHABET))
        digits.append(ID_ALPHABET[d])
    return "CR-" + "".join(reversed(digits))


async def fill(db: Path, requests: int, *, servers: int = 500, step: timedelta = timedelta(minutes=5)) -> None:
    """`requests` succeeded requests over `servers` servers, one every `step` from START, each with its audit."""
    await SQLiteStore(db).aclose()  # the schema, as the bot makes it
    conn = sqlite3.connect(db)
    names = list(KINDS)
    insert = f"INSERT INTO requests ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    audit = "INSERT INTO audit (request_id, at, actor, action, from_state, to_state, detail) VALUES (?,?,?,?,?,?,?)"
    template = change_request(
        state=RequestState.SUCCEEDED, approvals=["U0APPROVE1"], current_image_name="centos-7", reason="bulk"
    )
    base = {name: encode_text(name, getattr(template, name)) for name in names}
    summary = template.summary()
    with conn:
        for first in range(0, requests, 5000):
            rows, lines = [], []
            for n in range(first, min(requests, first + 5000)):
                at = encode_text("created_at", START + n * step)
                end = encode_text("finished_at", START + n * step + timedelta(minutes=3))
                rid, server = request_id(n), f"{n % servers:04d}"
                row = base | {
                    "id": rid,
                    "created_at": at,
                    "updated_at": end,
                    "finished_at": end,
                    "expires_at": end,
                    "server_id": f"srv-{server}",
                    "server_name": f"web-{server}",
                    "requester": f"U0REQ{n % 7:05d}",
                    "approval_ts": f"{1735689600 + n}.000100",
                }
                rows.append([row[name] for name in names])
                lines += [
                    (rid, at, row["requester"], "created", None, "pending_approval", summary),
                    (rid, at, "U0APPROVE1", "approved", "pending_approval", "approved", ""),
                    (rid, end, "tracker", "succeeded", "running", "succeeded", ""),
                ]
            conn.executemany(insert, rows)
            conn.executemany(audit, lines)
    conn.close()
