"""Retention of requests and their audit trail: run by the tracker's leader periodically and by `ecsbot retention`.

The store does the deleting, in short batches, and leaves an audit row on each server's newest request naming what
went (bot/store/retention.py); this says when to run and logs the outcome as one line.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.store import Store
from bot.store.protocol import Pruned

log = logging.getLogger(__name__)


class Retention:
    def __init__(self, store: Store, *, days: int) -> None:
        """`days` 0 keeps every request; expired secrets are purged by every run all the same."""
        self.store = store
        self.days = days

    def cutoff(self, now: datetime) -> datetime | None:
        return now - timedelta(days=self.days) if self.days else None

    async def run(self, now: datetime) -> Pruned:
        before = self.cutoff(now)
        if before is None:
            return Pruned(before=now, expired=await self.store.purge_expired(now))
        pruned = await self.store.prune(before)
        if pruned.requests or pruned.expired:
            log.info(
                "retention: %d requests ended before %s removed with %d audit rows; %d expired secrets or tokens",
                pruned.requests,
                before.date().isoformat(),
                pruned.audit_rows,
                pruned.expired,
            )
        return pruned
