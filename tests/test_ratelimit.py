"""TokenBucket: the arithmetic on a hand-driven clock, and the real waits with asyncio."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.services.ratelimit import TokenBucket
from tests.support.clocks import SecondsClock as FakeClock


def test_burst_then_paced_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert bucket.delay_until_available() == pytest.approx(0.5)
    clock.advance(0.25)
    assert not bucket.try_acquire()
    assert bucket.delay_until_available() == pytest.approx(0.25)
    clock.advance(0.25)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()


def test_refill_never_exceeds_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10.0, burst=2, clock=clock)
    clock.advance(3600)
    assert [bucket.try_acquire() for _ in range(3)] == [True, True, False]


def test_tokens_handed_out_in_any_window_stay_within_burst_plus_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=5.0, burst=3, clock=clock)
    granted: list[float] = []
    for _ in range(2000):  # a caller that asks every millisecond for 2 s
        if bucket.try_acquire():
            granted.append(clock.now)
        clock.advance(0.001)
    for i, start in enumerate(granted):
        in_window = sum(1 for t in granted[i:] if t < start + 1.0)
        assert in_window <= 3 + 5
    assert len(granted) <= 3 + 5 * 2 + 1


def test_pause_holds_everything_then_allows_one_and_resumes_at_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10.0, burst=5, clock=clock)
    bucket.pause(2.0)
    assert not bucket.try_acquire()
    assert bucket.delay_until_available() == pytest.approx(2.0)
    clock.advance(1.999)
    assert not bucket.try_acquire()
    clock.advance(0.002)
    # The full bucket was not kept through the pause: one call goes, then the rate applies.
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    assert bucket.delay_until_available() == pytest.approx(0.1, abs=0.01)


def test_pause_never_shortens_a_longer_one() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=1.0, burst=1, clock=clock)
    bucket.pause(5.0)
    bucket.pause(1.0)
    clock.advance(2.0)
    assert not bucket.try_acquire()
    assert bucket.paused_until == pytest.approx(1005.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bad_parameters_are_refused_with_a_clear_message(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"rate_per_s|burst"):
        TokenBucket(rate, burst)


async def test_acquire_waits_for_the_rate_and_serves_waiters_in_order() -> None:
    bucket = TokenBucket(rate_per_s=50.0, burst=2)
    order: list[int] = []
    times: list[float] = []

    async def take(i: int) -> None:
        await bucket.acquire()
        order.append(i)
        times.append(time.monotonic())

    start = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(take(i) for i in range(12))), timeout=5)
    assert order == list(range(12))
    # 2 at once, then 10 more at 50/s: at least 0.2 s (minus timer slack).
    assert times[-1] - start >= 0.18
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u < t + 0.1) <= 2 + 5 + 1


async def test_acquire_sleeps_through_a_pause() -> None:
    bucket = TokenBucket(rate_per_s=100.0, burst=1)
    assert bucket.try_acquire()
    bucket.pause(0.3)
    start = time.monotonic()
    await asyncio.wait_for(bucket.acquire(), timeout=5)
    assert time.monotonic() - start >= 0.29
