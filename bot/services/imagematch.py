"""Finding an image by what a person typed: the type-ahead's ranking and the command's resolution. Pure.

Matching is case-insensitive on the name and the ID: exact first, then prefix, then ID prefix, then contains.
A command argument selects an image only when that is unambiguous (ID, exact name, unique prefix); never a guess.
"""

from __future__ import annotations

import difflib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bot.cloud import Image

T = TypeVar("T")
MAX_QUERY = 100  # Slack caps the typed text too; anything longer cannot name an image better
MAX_OPTIONS = 100  # Slack's limit for one options answer

# Group order of an empty query (this project's images first), and the tie-break between equally good groups.
GROUP_ORDER = ("private", "gold", "shared", "market")
GROUP_LABELS = {
    "private": "Private images (this project)",
    "gold": "Public images",
    "shared": "Shared with this project",
    "market": "Marketplace images",
}

EXACT, PREFIX, ID_PREFIX, WORD, CONTAINS = range(5)
_TOP = chr(0x10FFFF)  # sorts after any text: [q, q + _TOP) is every key that starts with q


def clean_query(text: object) -> str:
    """The typed text, trimmed and bounded; anything that is not text reads as nothing typed."""
    return text.strip()[:MAX_QUERY].strip() if isinstance(text, str) else ""


def group_of(image: Image) -> str:
    kind = (image.image_type or "").lower()
    return kind if kind in GROUP_LABELS else "gold"


def rank(image: Image, lowered: str) -> int | None:
    """How well `image` matches the lower-cased query; None when it does not."""
    name = image.name.lower()
    image_id = image.id.lower()
    if name == lowered or image_id == lowered:
        return EXACT
    if name.startswith(lowered):
        return PREFIX
    if image_id.startswith(lowered):
        return ID_PREFIX
    if lowered not in name:
        return None
    return WORD if _at_word(name, lowered) else CONTAINS


def _at_word(name: str, lowered: str) -> bool:
    """`lowered` starts a word somewhere in `name` (after a space, dash, dot...)."""
    at = name.find(lowered)
    while at > 0:
        if not name[at - 1].isalnum():
            return True
        at = name.find(lowered, at + 1)
    return at == 0


class SearchIndex:
    """One set of images (a catalogue view), lowered and sorted once: a key then costs two bisects and a scan of
    one joined string that stops once enough matches are found.

    Order: exact name or ID, then name prefix, then ID prefix, then a word inside the name, then any substring;
    ties by name. An empty query lists this project's images first (GROUP_ORDER), by name."""

    def __init__(self, images: Iterable[Image]) -> None:
        self.images: list[Image] = sorted(images, key=lambda i: (i.name.lower(), i.id))
        self.groups = [group_of(i) for i in self.images]
        self._names = [i.name.lower() for i in self.images]
        by_id = sorted((i.id.lower(), n) for n, i in enumerate(self.images))
        self._ids = [key for key, _ in by_id]
        self._id_rows = [n for _, n in by_id]
        self._joined = "\0".join(self._names)
        self._starts: list[int] = []
        at = 0
        for name in self._names:
            self._starts.append(at)
            at += len(name) + 1
        order = {g: n for n, g in enumerate(GROUP_ORDER)}
        rows = sorted(range(len(self.images)), key=lambda n: order[self.groups[n]])  # stable: by name within
        self._first_page = rows[:MAX_OPTIONS]
        self._rendered: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self.images)

    def search(self, text: object, *, limit: int = MAX_OPTIONS) -> list[Image]:
        return [self.images[n] for n in self.rows(text, limit=limit)]

    def grouped(self, text: object, *, limit: int = MAX_OPTIONS) -> list[tuple[str, list[Image]]]:
        """The best `limit` matches in labelled groups; a group comes where its best match came."""
        return [(label, [self.images[n] for n in rows]) for label, rows in self.grouped_rows(text, limit=limit)]

    def grouped_rows(self, text: object, *, limit: int = MAX_OPTIONS) -> list[tuple[str, list[int]]]:
        groups: dict[str, list[int]] = {}
        for n in self.rows(text, limit=limit):
            groups.setdefault(self.groups[n], []).append(n)
        return [(GROUP_LABELS[kind], rows) for kind, rows in groups.items()]

    def rendered(self, key: str, render: Callable[[Image], T]) -> list[T]:
        """`render` of every image, in row order, computed once per index and `key` (e.g. Slack options)."""
        found = self._rendered.get(key)
        if found is None:
            found = self._rendered[key] = [render(image) for image in self.images]
        return found

    def rows(self, text: object, *, limit: int = MAX_OPTIONS) -> list[int]:
        """Row numbers in `images` of the best `limit` matches, best first."""
        query = clean_query(text).lower()
        if not query:
            return self._first_page[:limit]
        names, ids = self._names, self._ids
        lo, hi = bisect_left(names, query), bisect_left(names, query + _TOP)
        id_lo, id_hi = bisect_left(ids, query), bisect_left(ids, query + _TOP)
        exact = [n for n in range(lo, hi) if names[n] == query]
        rows: list[int] = exact + [self._id_rows[n] for n in range(id_lo, id_hi) if ids[n] == query]
        rows += range(lo + len(exact), min(hi, lo + len(exact) + limit))
        if len(rows) < limit:
            rows += [self._id_rows[n] for n in range(id_lo, min(id_hi, id_lo + limit)) if ids[n] != query]
        if len(rows) < limit and "\0" not in query:
            rows += self._inside(query, lo, hi, limit - len(rows))
        return list(dict.fromkeys(rows))[:limit]

    def _inside(self, query: str, lo: int, hi: int, need: int) -> list[int]:
        """Names that contain `query` but do not start with it: at a word start first, then anywhere."""
        words: list[int] = []
        others: list[int] = []
        joined, starts, names = self._joined, self._starts, self._names
        at = joined.find(query)
        while at >= 0:
            row = bisect_right(starts, at) - 1
            if not lo <= row < hi:
                (words if _at_word(names[row], query) else others).append(row)
                if len(words) >= need:
                    break
            if row + 1 >= len(starts):
                break
            at = joined.find(query, starts[row + 1])
        return words + others[: max(0, need - len(words))]


def search(images: Iterable[Image], text: str, *, limit: int = MAX_OPTIONS) -> list[Image]:
    """The best `limit` matches, best first; build a `SearchIndex` once instead when searching the same images often."""
    return SearchIndex(images).search(text, limit=limit)


def grouped(found: Sequence[Image]) -> list[tuple[str, list[Image]]]:
    """Found images in labelled groups, keeping their order; a group comes where its best match came."""
    groups: dict[str, list[Image]] = {}
    for image in found:
        groups.setdefault(group_of(image), []).append(image)
    return [(GROUP_LABELS[kind], members) for kind, members in groups.items()]


@dataclass(frozen=True, slots=True)
class Resolution:
    """What an image argument names: one image, several candidates (never a guess), or none with close names."""

    query: str
    image: Image | None = None
    matches: list[Image] = field(default_factory=list)
    total: int = 0  # how many matched, when more than `matches` holds
    suggestions: list[str] = field(default_factory=list)

    @property
    def ambiguous(self) -> bool:
        return self.image is None and bool(self.matches)


def resolve(query: str, usable: Sequence[Image], allowed: Sequence[Image], *, shown: int = 10) -> Resolution:
    """By ID or exact name among `usable` (a forbidden one is selected so the plan can say why), else by unique
    prefix of name or ID among `allowed`; several: the first `shown` by name; none: the closest allowed names."""
    typed = clean_query(query)
    lowered = typed.lower()
    if not lowered:
        return Resolution(typed)
    for image in usable:
        if image.id.lower() == lowered:
            return Resolution(typed, image=image)
    exact = [i for i in usable if i.name.lower() == lowered]
    if len(exact) == 1:
        return Resolution(typed, image=exact[0])
    if exact:
        return Resolution(typed, matches=exact[:shown], total=len(exact))
    prefixed = [i for i in allowed if i.name.lower().startswith(lowered) or i.id.lower().startswith(lowered)]
    if len(prefixed) == 1:
        return Resolution(typed, image=prefixed[0])
    if prefixed:
        prefixed.sort(key=lambda i: (i.name.lower(), i.id))
        return Resolution(typed, matches=prefixed[:shown], total=len(prefixed))
    return Resolution(typed, suggestions=closest(lowered, allowed))


def closest(lowered: str, images: Sequence[Image], *, n: int = 5) -> list[str]:
    """Close names (difflib) first, then names that contain the query, at most `n` in all."""
    names: dict[str, str] = {}
    for image in images:
        names.setdefault(image.name.lower(), image.name)
    close = difflib.get_close_matches(lowered, list(names), n=n, cutoff=0.6)
    contains = sorted(k for k in names if lowered in k and k not in close)
    return [names[k] for k in [*close, *contains][:n]]
