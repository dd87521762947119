"""The schema's versions, shared by both engines: what each version adds, and the request's columns as of each.

Each engine writes its own DDL for a version (bot/store/sqlite.py, bot/store/postgres.py) and applies the missing
versions in order when it opens, under the database's own lock, so replicas starting together migrate once. A
version only ever adds (tables, columns with defaults, indexes): a replica still running the previous release keeps
working while another runs the next, which is what makes a rolling upgrade possible.

A new field of `ChangeRequest` needs a new version that adds its column; `missing_columns` finds one that lacks it.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.domain.request import LIVE_STATES
from bot.store.codec import KINDS

# version -> what it brings (the engines' DDL follows these words)
VERSIONS: dict[int, str] = {
    1: "requests, audit, secrets, page sessions, leases, one-time tokens (the schema of the first release)",
    2: "leases.epoch: counts the owners a lease has had, so a takeover shows",
    3: "a backup before the change and rollbacks: the backup_* and rollback_of columns; backing_up is live",
    4: "fleets: the rollouts table (one JSON document per rollout, saved over its version), rollout_audit, and "
    "requests.fleet_key (unique): a fleet's child request is found again after a restart",
}
LATEST = max(VERSIONS)

# The request's columns as version 1 made them; later versions add theirs.
REQUEST_COLUMNS_V1: tuple[tuple[str, str], ...] = (
    ("id", "text"),
    ("state", "text"),
    ("created_at", "datetime"),
    ("updated_at", "datetime"),
    ("requester", "text"),
    ("origin_channel", "text"),
    ("server_id", "text"),
    ("server_name", "text"),
    ("server_status", "text"),
    ("current_image_id", "text"),
    ("current_image_name", "text"),
    ("target_image_id", "text"),
    ("target_image_name", "text"),
    ("target_os_type", "text"),
    ("cloud_init", "bool"),
    ("login", "text"),
    ("keyname", "text"),
    ("has_password", "bool"),
    ("stop_first", "bool"),
    ("stop_type", "text"),
    ("reason", "text"),
    ("ticket", "text"),
    ("notify_channels", "json"),
    ("checklist", "json"),
    ("approvals_channel", "text"),
    ("approvals_required", "int"),
    ("approvals", "json"),
    ("expires_at", "datetime"),
    ("decided_by", "text"),
    ("decision_note", "text"),
    ("approval_ts", "text"),
    ("status_channel", "text"),
    ("status_ts", "text"),
    ("stop_job_id", "text"),
    ("job_id", "text"),
    ("stop_sent_at", "datetime"),
    ("submit_sent_at", "datetime"),
    ("submitted_at", "datetime"),
    ("finished_at", "datetime"),
    ("deadline_at", "datetime"),
    ("overdue", "bool"),
    ("error_code", "text"),
    ("fail_reason", "text"),
    ("result", "text"),
    ("next_poll_at", "float"),
    ("poll_failures", "int"),
    ("job_status", "text"),
    ("job_progress", "text"),
    ("notified_state", "text"),
)
# Version 3's columns (all nullable: an older row reads each as the field's default).
REQUEST_COLUMNS_V3: tuple[tuple[str, str], ...] = (
    ("backup_wanted", "bool"),
    ("backup_restart", "bool"),
    ("backup_image_name", "text"),
    ("backup_job_id", "text"),
    ("backup_image_id", "text"),
    ("backup_sent_at", "datetime"),
    ("backup_done_at", "datetime"),
    ("backup_failure", "text"),
    ("rollback_of", "text"),
)
# Version 4: a fleet's child request carries its key "{rollout_id}:{server_id}", unique among requests.
REQUEST_COLUMNS_V4: tuple[tuple[str, str], ...] = (("fleet_key", "text"),)
FLEET_KEY_INDEX = "requests_fleet_key"
REQUIRED = frozenset({"id", "state", "server_id", "created_at"})

LIVE_INDEX = "requests_one_live_per_server"
LIVE_VALUES = tuple(sorted(s.value for s in LIVE_STATES))
LIVE_SQL = ", ".join(f"'{v}'" for v in LIVE_VALUES)  # fixed state names, never input


def missing_columns(existing: Iterable[str]) -> list[str]:
    """Fields of the model without a column: a migration is missing (a bug, found at open, not at the first write)."""
    have = set(existing)
    return [name for name in KINDS if name not in have]


def too_new(version: int, where: str) -> str:
    return (
        f"The database {where} has schema version {version}, newer than this bot knows ({LATEST}): a newer release "
        "of the bot migrated it. Run that release (or newer) here too."
    )
