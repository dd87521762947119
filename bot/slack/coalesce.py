"""What to send Slack next, so that no channel falls behind: edits coalesced, end posts grouped into digests.

No I/O and an injected clock: the notifier adds what it wants shown and asks `due(now)` for the calls to make.
- Status edits (chat.update, Tier 3: ~50 a minute per workspace): only the latest edit of a message is kept, each
  message is edited at most once per `edit_interval`, and the workspace bucket is never overdrawn.
- End posts (chat.postMessage, ~1 a second per channel): a channel posts at most once per `post_interval`; when
  several posts wait, they go as one digest (at most `digest_max` lines, in sections of at most 3,000 characters,
  at most 50 blocks), so a channel's backlog drains at up to `digest_max` per second instead of 1.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

SECTION_MAX = 3000
MAX_SECTIONS = 49  # 50 blocks per message, one of them the header


@dataclass(frozen=True, slots=True)
class Tiers:
    edits_per_minute: float = 50.0  # chat.update, Tier 3, per workspace
    edit_burst: int = 5
    edit_interval: float = 1.0  # per message
    post_interval: float = 1.0  # chat.postMessage, per channel
    digest_max: int = 200  # end posts per digest; the Block Kit limits may cut a digest shorter


@dataclass(frozen=True, slots=True)
class Edit:
    channel: str
    ts: str
    text: str
    blocks: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class EndPost:
    """One end message; `line` is how it reads in a digest (one line of mrkdwn)."""

    channel: str
    text: str
    line: str
    blocks: tuple[dict[str, Any], ...] = ()
    thread_ts: str | None = None


@dataclass(frozen=True, slots=True)
class Post:
    channel: str
    text: str
    blocks: tuple[dict[str, Any], ...] = ()
    thread_ts: str | None = None
    count: int = 1  # end posts it carries


Call = Edit | Post


@dataclass
class Coalescer:
    tiers: Tiers = field(default_factory=Tiers)
    _edits: OrderedDict[tuple[str, str], Edit] = field(default_factory=OrderedDict)
    _posts: dict[tuple[str, str | None], deque[EndPost]] = field(default_factory=dict)
    _last_edit: dict[tuple[str, str], float] = field(default_factory=dict)
    _last_post: dict[str, float] = field(default_factory=dict)
    _tokens: float | None = None
    _refilled: float = 0.0

    # --- input ------------------------------------------------------------------------------------------------------

    def edit(self, edit: Edit) -> None:
        """Latest wins: a newer render of a message replaces the one still waiting (keeping its place in line)."""
        key = (edit.channel, edit.ts)
        self._edits[key] = edit

    def post(self, post: EndPost) -> None:
        self._posts.setdefault((post.channel, post.thread_ts), deque()).append(post)

    @property
    def pending(self) -> tuple[int, int]:
        """(edits, end posts) waiting."""
        return len(self._edits), sum(len(q) for q in self._posts.values())

    # --- output -----------------------------------------------------------------------------------------------------

    def due(self, now: float) -> list[Call]:
        """The calls to make now; each is counted against its budget as it is handed out."""
        return [*self._due_posts(now), *self._due_edits(now)]

    def next_at(self, now: float) -> float | None:
        """When `due` may next return something (None: nothing waits)."""
        times: list[float] = []
        for channel, _ in self._posts:
            times.append(max(now, self._last_post.get(channel, -1e18) + self.tiers.post_interval))
        if self._edits:
            self._refill(now)
            assert self._tokens is not None
            bucket = now if self._tokens >= 1 else now + (1 - self._tokens) * 60 / self.tiers.edits_per_minute
            earliest = min(self._last_edit.get(k, -1e18) + self.tiers.edit_interval for k in self._edits)
            times.append(max(bucket, earliest, now))
        return min(times) if times else None

    def _due_posts(self, now: float) -> list[Post]:
        out: list[Post] = []
        for key in list(self._posts):
            channel, thread = key
            if self._last_post.get(channel, -1e18) + self.tiers.post_interval > now + 1e-9:
                continue
            queue = self._posts[key]
            if len(queue) == 1:
                out.append(_single(queue.popleft()))
            else:
                made = digest(list(queue)[: self.tiers.digest_max], thread)
                for _ in range(made.count):
                    queue.popleft()
                out.append(made)
            if not queue:
                del self._posts[key]
            self._last_post[channel] = now
        return out

    def _due_edits(self, now: float) -> list[Edit]:
        self._refill(now)
        assert self._tokens is not None
        out: list[Edit] = []
        for key in list(self._edits):
            if self._tokens < 1:
                break
            if self._last_edit.get(key, -1e18) + self.tiers.edit_interval > now + 1e-9:
                continue
            out.append(self._edits.pop(key))
            self._last_edit[key] = now
            self._tokens -= 1
        return out

    def _refill(self, now: float) -> None:
        if self._tokens is None:
            self._tokens, self._refilled = float(self.tiers.edit_burst), now
            return
        rate = self.tiers.edits_per_minute / 60
        self._tokens = min(float(self.tiers.edit_burst), self._tokens + (now - self._refilled) * rate)
        self._refilled = now


def _single(post: EndPost) -> Post:
    return Post(post.channel, post.text, post.blocks, post.thread_ts)


def digest(posts: list[EndPost], thread_ts: str | None = None) -> Post:
    """As many of `posts` as fit one message: a header, then one line each, packed into sections of at most 3,000
    characters and at most 49 sections; `count` says how many it took (at least one)."""
    sections: list[str] = []
    current = ""
    taken = 0
    for post in posts:
        line = post.line if len(post.line) <= SECTION_MAX else post.line[: SECTION_MAX - 1] + "…"
        if current and len(current) + 1 + len(line) > SECTION_MAX:
            if len(sections) + 1 >= MAX_SECTIONS:
                break
            sections.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
        taken += 1
    sections.append(current)
    header = f"*{taken} changes ended*"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": header}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in sections]
    text = header + "\n" + "\n".join(p.line for p in posts[:taken])
    return Post(posts[0].channel, text[:39_000], tuple(blocks), thread_ts, count=taken)
