"""The coalescing planner: latest edit wins, Tier 3 and per-channel 1/s are never exceeded, nobody falls behind."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import pairwise

from bot.slack.coalesce import Coalescer, Edit, EndPost, Post, Tiers
from sandbox.devtools.fake_slack import MAX_MESSAGE_BLOCKS, validate_blocks


def end(channel: str, i: int, thread: str | None = None) -> EndPost:
    return EndPost(channel, f"CR-{i} ended", f"✅ CR-{i:06d} · web-{i:03d} → ubuntu-22.04", thread_ts=thread)


def test_latest_edit_wins_in_first_come_order() -> None:
    c = Coalescer()
    c.edit(Edit("C1", "1.0", "v1"))
    c.edit(Edit("C1", "2.0", "other"))
    c.edit(Edit("C1", "1.0", "v2"))
    assert [(e.ts, e.text) for e in c.due(0.0) if isinstance(e, Edit)] == [("1.0", "v2"), ("2.0", "other")]
    assert c.due(0.1) == [] and c.next_at(0.1) is None


def test_a_message_is_edited_at_most_once_per_interval() -> None:
    c = Coalescer(Tiers(edit_interval=2.0))
    c.edit(Edit("C1", "1.0", "a"))
    assert len(c.due(0.0)) == 1
    c.edit(Edit("C1", "1.0", "b"))
    c.edit(Edit("C1", "1.0", "c"))
    assert c.due(1.0) == [] and c.next_at(1.0) == 2.0
    assert [e.text for e in c.due(2.0) if isinstance(e, Edit)] == ["c"]


def test_edits_never_exceed_tier_3_however_many_messages_change() -> None:
    c = Coalescer()
    sent: list[float] = []
    t = 0.0
    while t < 120:
        for m in range(100):  # 100 fleet messages, each re-rendered 10 times a second
            c.edit(Edit("C1", f"{m}.0", f"at {t}"))
        sent += [t for call in c.due(t) if isinstance(call, Edit)]
        t = round(t + 0.1, 1)
    for start in range(0, 61):
        window = [s for s in sent if start <= s < start + 60]
        assert len(window) <= 50 + Tiers().edit_burst
    assert len(sent) >= 95  # and the budget is used, not wasted


def test_end_posts_become_digests_and_no_channel_falls_behind() -> None:
    c = Coalescer()
    posts: dict[str, list[float]] = defaultdict(list)
    lag: list[float] = []
    added: dict[str, list[float]] = defaultdict(list)
    i, t = 0, 0.0
    while t < 20:
        if t < 10:
            for channel in ("C1", "C2", "C3"):
                for _ in range(6):  # 60 ends a second per channel, 60 times what one post a second carries
                    c.post(end(channel, i))
                    added[channel].append(t)
                    i += 1
        for call in c.due(t):
            assert isinstance(call, Post)
            posts[call.channel].append(t)
            for _ in range(call.count):
                lag.append(t - added[call.channel].pop(0))
            assert validate_blocks(list(call.blocks), max_blocks=MAX_MESSAGE_BLOCKS, pointer="/blocks") == []
        t = round(t + 0.1, 1)
    assert c.pending == (0, 0)
    for times in posts.values():
        assert all(b - a >= 1.0 - 1e-9 for a, b in pairwise(times))
    assert max(lag) <= 1.0 + 1e-9
    assert sum(Counter({k: len(v) for k, v in posts.items()}).values()) <= 3 * 11


def test_a_lone_end_post_goes_as_it_is() -> None:
    c = Coalescer()
    c.post(end("C1", 7))
    (call,) = c.due(5.0)
    assert isinstance(call, Post) and call.text == "CR-7 ended" and call.count == 1
    c.post(end("C1", 8))
    assert c.due(5.5) == [] and c.next_at(5.5) == 6.0


def test_thread_replies_are_grouped_per_thread() -> None:
    c = Coalescer()
    c.post(end("C1", 1, thread="9.0"))
    c.post(end("C1", 2, thread="9.0"))
    c.post(end("C2", 3))
    calls = c.due(0.0)
    assert sorted((p.channel, p.thread_ts, p.count) for p in calls if isinstance(p, Post)) == [
        ("C1", "9.0", 2),
        ("C2", None, 1),
    ]


def test_long_lines_are_split_over_sections_within_limits() -> None:
    c = Coalescer()
    for i in range(60):
        c.post(EndPost("C1", "x", "y" * 2500 + str(i)))
    (call,) = c.due(0.0)
    assert isinstance(call, Post) and call.count == 49  # one line a section, 49 sections, then the next second
    assert validate_blocks(list(call.blocks), max_blocks=MAX_MESSAGE_BLOCKS, pointer="/blocks") == []
    assert c.pending == (0, 11)
