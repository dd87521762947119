"""`--since`: an age (`7d`, `12h`, `2w`) or a date (`2025-06-01`, `2025-06-01T08:00:00+00:00`), pure.

Shared by `/changeos history --since` and `ecsbot audit export --since`; the caller turns an age into a moment with
its own clock (`since_moment`), so this module stays free of one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_AGE = re.compile(r"^(?P<n>\d{1,5})\s*(?P<unit>h|d|w)$", re.IGNORECASE)
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
MAX_AGE = timedelta(days=3660)
EXAMPLE = "an age such as 7d, 12h or 2w, or a date such as 2025-06-01"

Since = timedelta | datetime


def parse_since(text: str) -> Since:
    """An age or an aware UTC moment; `ValueError` with a sentence that says what to type instead."""
    raw = text.strip()
    m = _AGE.match(raw)
    if m:
        age = int(m.group("n")) * _UNITS[m.group("unit").lower()]
        if not timedelta(0) < age <= MAX_AGE:
            raise ValueError(f"--since {raw} is out of range: give {EXAMPLE} (at most ten years).")
        return age
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"--since takes {EXAMPLE}, not “{raw[:40]}”.") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def since_moment(since: Since, now: datetime) -> datetime:
    return now - since if isinstance(since, timedelta) else since
