"""Clocks that move only when a test says so: what the code under test injects instead of the system's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SecondsClock:
    """Monotonic-style seconds (token buckets, caches, pacing)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class DateClock:
    """Aware UTC datetimes (expiries, audit times, one-time links)."""

    def __init__(self, now: datetime = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
