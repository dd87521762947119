"""An async token bucket that spaces calls to a rate, with a pause for a server's `Retry-After`.

Shared by the Slack notifier (one bucket per rate limit it honours) and the tracker (one budget for its cloud
calls), so it belongs to neither. The clock is injectable so the arithmetic can be tested without waiting;
`acquire()` sleeps in real time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """`burst` tokens at most, refilled at `rate_per_s`; one token per call.

    Waiters queue on a lock, so they are served first come, first served and only the head of the queue sleeps
    (1,000 waiters cost one timer, not 1,000). In any window of W seconds at most `burst + rate_per_s * W` tokens
    are handed out.
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Clock = time.monotonic) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be a positive number of tokens per second, got {rate_per_s!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1 token, got {burst!r}")
        self.rate_per_s = float(rate_per_s)
        self.burst = int(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._paused_until = float("-inf")
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"TokenBucket(rate_per_s={self.rate_per_s}, burst={self.burst}, tokens={self.tokens:.2f})"

    @property
    def tokens(self) -> float:
        """Tokens available now (fractional while refilling)."""
        self._refill()
        return self._tokens

    @property
    def paused_until(self) -> float:
        """Clock time before which no token is handed out (-inf when not paused)."""
        return self._paused_until

    def _refill(self) -> float:
        now = self._clock()
        last = self._last
        if last < self._paused_until:
            # During a pause at most one token accrues: the caller was told to stay quiet, not to save up a burst.
            mid = min(now, self._paused_until)
            self._tokens = min(1.0, self._tokens + max(0.0, mid - last) * self.rate_per_s)
            last = mid
        if now > last:
            self._tokens = min(float(self.burst), self._tokens + (now - last) * self.rate_per_s)
        self._last = max(self._last, now)
        return now

    def try_acquire(self) -> bool:
        """Take a token if one is available now; never waits."""
        now = self._refill()
        if now < self._paused_until or self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def delay_until_available(self) -> float:
        """Seconds until a token can be taken (0.0 when one is available now)."""
        now = self._refill()
        refill = max(0.0, 1.0 - self._tokens) / self.rate_per_s
        return max(refill, self._paused_until - now, 0.0)

    async def acquire(self) -> None:
        """Wait for a token and take it."""
        async with self._lock:
            while True:
                if self.try_acquire():
                    return
                # Recomputed after every sleep: a pause may have been set or extended meanwhile.
                await asyncio.sleep(max(self.delay_until_available(), 0.001))

    def pause(self, seconds: float) -> None:
        """Hand out nothing for `seconds` (e.g. Slack's Retry-After), then resume at the bucket's rate.

        At most one token builds up during the pause, so the retry can go at its end without a burst behind it.
        A pause never shortens one already in force.
        """
        now = self._refill()
        self._paused_until = max(self._paused_until, now + max(0.0, seconds))
        self._tokens = min(self._tokens, 1.0)
