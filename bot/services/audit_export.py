"""`ecsbot audit export`: the audit trail as JSON Lines or CSV, streamed row by row for a SIEM or a change system.

Rows come from the store a page at a time (`Store.audit_since`) and go straight to the output, so memory stays flat
however long the trail is. Values are written as stored: a reason or a note is the requester's own text, and CSV
readers that evaluate formulas should import the file as text.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from typing import TextIO

from bot.store.protocol import AuditEntry

FORMATS = ("jsonl", "csv")
FIELDS = ("seq", "request_id", "at", "actor", "action", "from_state", "to_state", "detail")


def _values(row: AuditEntry) -> tuple[object, ...]:
    return (
        row.seq,
        row.request_id,
        row.at.isoformat(),
        row.actor,
        row.action,
        row.from_state,
        row.to_state,
        row.detail,
    )


async def export(rows: AsyncIterator[AuditEntry], out: TextIO, fmt: str) -> int:
    """Write every row to `out` in `fmt` ("jsonl" or "csv", with a header); how many rows were written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use jsonl or csv")
    n = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FIELDS)
        async for row in rows:
            writer.writerow(_values(row))
            n += 1
        return n
    async for row in rows:
        out.write(json.dumps(dict(zip(FIELDS, _values(row), strict=True)), ensure_ascii=False) + "\n")
        n += 1
    return n
