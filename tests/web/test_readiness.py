"""The readiness cache: a pass is trusted for its TTL, a failure asked again sooner; fresh evidence spares a call."""

from __future__ import annotations

from bot import metrics
from bot.web.readiness import FAILURE_TTL, Cached, Readiness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_pass_is_trusted_for_its_ttl_and_a_failure_for_less() -> None:
    clock, answers, asked = Clock(), [None, "down", None], []

    async def probe() -> str | None:
        asked.append(clock.now)
        return answers[len(asked) - 1]

    check = Cached(probe, ttl=30, clock=clock)
    assert await check() is None and await check() is None and len(asked) == 1
    clock.now += 30
    assert await check() == "down" and len(asked) == 2
    clock.now += FAILURE_TTL - 0.1
    assert await check() == "down" and len(asked) == 2
    clock.now += 0.2
    assert await check() is None and len(asked) == 3


async def test_fresh_evidence_spares_the_call_unless_a_later_probe_failed() -> None:
    clock, seen, asked = Clock(), [990.0], []

    async def probe() -> str | None:
        asked.append(clock.now)
        return "refused"

    check = Cached(probe, ttl=30, fresh=lambda: seen[0], clock=clock)
    assert await check() is None and asked == []
    clock.now += 25  # the evidence is 35 s old: ask
    assert await check() == "refused" and len(asked) == 1
    seen[0] = clock.now + 1  # a signed answer was accepted after the failure
    clock.now += 2
    assert await check() is None and len(asked) == 1


async def test_readiness_names_what_failed_and_survives_a_broken_probe() -> None:
    async def ok() -> str | None:
        return None

    async def broken() -> str | None:
        raise KeyError("bug")

    ready, body = await Readiness({"store": ok, "cloud": broken}, role=lambda: "standby").report()
    assert not ready
    assert body == {
        "ready": False,
        "role": "standby",
        "failed": ["cloud"],
        "checks": {"store": "ok", "cloud": "the check itself failed (KeyError)"},
    }


def test_labels_outside_the_fixed_sets_read_other() -> None:
    before = metrics.CLOUD_CALLS.labels(operation="other", status="200")._value.get()
    metrics.cloud_call("web-01; DROP", 200)
    assert metrics.CLOUD_CALLS.labels(operation="other", status="200")._value.get() == before + 1
    metrics.slack_call("U0DD}{bad", "ok")
    metrics.cloud_call("get_server", 999)
    text = metrics.exposition()[0].decode()
    assert "U0DD" not in text and "DROP" not in text and 'status="999"' not in text
