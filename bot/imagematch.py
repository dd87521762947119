"""Finding an image by what a person typed: the type-ahead's ranking and the command's resolution. Pure.

Matching is case-insensitive on the name and the ID: exact first, then prefix, then ID prefix, then contains.
A command argument selects an image only when that is unambiguous (ID, exact name, unique prefix); never a guess.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bot.cloud import Image

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
    at = name.find(lowered)
    if at < 0:
        return None
    return WORD if not name[at - 1].isalnum() else CONTAINS


def search(images: Iterable[Image], text: str, *, limit: int = MAX_OPTIONS) -> list[Image]:
    """The best `limit` matches, best first (ties by group, then name). An empty query: the first page by group
    and name."""
    query = clean_query(text).lower()
    order = {g: n for n, g in enumerate(GROUP_ORDER)}
    if not query:
        return sorted(images, key=lambda i: (order[group_of(i)], i.name.lower(), i.id))[:limit]
    scored = [(r, i) for i in images if (r := rank(i, query)) is not None]
    scored.sort(key=lambda p: (p[0], order[group_of(p[1])], p[1].name.lower(), p[1].id))
    return [image for _, image in scored[:limit]]


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
