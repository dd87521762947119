"""What people see of the database: where it is (never its password), and whether it answers, as an engine's last
call found it; /healthz shows both, and Slack is told when it does not answer.

Every replica touches the database every couple of seconds (the tracker's lease, leader or not), so this stays
current without a probe of its own.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from bot.store.protocol import StoreUnavailable

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Availability:
    def __init__(self) -> None:
        self.problem: str | None = None

    def up(self) -> None:
        self.problem = None

    def down(self, why: str) -> StoreUnavailable:
        """Remember why, and the error to raise."""
        self.problem = why
        return StoreUnavailable(why)


def describe_database(target: Path | str) -> str:
    """The database as people may see it (logs, health, errors): a PostgreSQL URL without its password."""
    if isinstance(target, str) and target.startswith(POSTGRES_SCHEMES):
        url = urlsplit(target)
        try:
            port = url.port or 5432
        except ValueError:
            port = 5432
        return f"postgresql://{url.hostname or 'localhost'}:{port}{url.path}"
    return str(target)
