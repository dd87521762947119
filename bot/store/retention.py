"""What both engines share for history, export and retention: the ended states, the candidates' rule, the summary.

Retention deletes requests that ended before a cut-off, with their audit rows, in batches. Each server's newest
request is kept whatever its age (history, status and backup retention still find the server's last change), and it
is where the pruning is recorded: one audit row, action "pruned", naming the requests that went. That row lives as
long as the server's history does, and the export carries it like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.domain.request import TERMINAL_STATES
from bot.store.protocol import AuditEntry

TERMINAL_VALUES = tuple(sorted(s.value for s in TERMINAL_STATES))
TERMINAL_SQL = ", ".join(f"'{v}'" for v in TERMINAL_VALUES)  # fixed state names, never input
SHOWN_IDS = 10

# The candidates of one batch: ended before the cut-off, and not their server's newest request. `{mark}` is the
# engine's placeholder; the first is the cut-off, the second the batch size.
CANDIDATES = (
    "SELECT r.id, r.server_id, n.newest FROM requests r "  # noqa: S608 - fixed state names and placeholders only
    "JOIN (SELECT server_id, max(created_at) AS newest FROM requests GROUP BY server_id) n "
    "ON n.server_id = r.server_id "
    f"WHERE r.state IN ({TERMINAL_SQL}) AND coalesce(r.finished_at, r.updated_at) < {{mark}} "
    "AND r.created_at < n.newest ORDER BY r.server_id, r.created_at LIMIT {mark}"
)


def by_server(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, Any], list[str]]:
    """A batch's candidates grouped by (server, its newest request's created_at), in the batch's order."""
    groups: dict[tuple[str, Any], list[str]] = {}
    for row in rows:
        groups.setdefault((row["server_id"], row["newest"]), []).append(row["id"])
    return groups


def pruned_detail(ids: Sequence[str], audit_rows: int, before: datetime) -> str:
    """The kept summary: which requests of this server went, and how many audit rows with them."""
    shown = ", ".join(ids[:SHOWN_IDS]) + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")
    noun = "request" if len(ids) == 1 else "requests"
    return (
        f"retention removed {len(ids)} older {noun} of this server ({shown}) and their {audit_rows} audit rows: "
        f"ended before {before.isoformat(timespec='seconds')}"
    )


def entry(row: dict[str, Any], at: datetime) -> AuditEntry:
    return AuditEntry(
        seq=int(row["seq"]),
        request_id=row["request_id"],
        at=at,
        actor=row["actor"],
        action=row["action"],
        from_state=row["from_state"],
        to_state=row["to_state"],
        detail=row["detail"],
    )
