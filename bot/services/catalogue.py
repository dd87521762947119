"""The region's image catalogue, cached: typing in the image type-ahead must not call IMS on every key.

One `CatalogueCache` serves one cloud client (one region). An entry lives `ttl` seconds; at most `max_entries`
queries are kept (least recently used go first), each bounded by `max_images`, so memory stays bounded. Concurrent
misses of the same query share one fetch (single-flight), and a waiter that gives up does not cancel it.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.cloud import CloudClient, Image
from bot.cloud.client import ImageQuery
from bot.services.imagematch import SearchIndex

log = logging.getLogger(__name__)

ECS_SYSTEM_IMAGES = ImageQuery()  # active FusionCompute images: what a change-OS can use
FULL_GC_AFTER = 2000  # images in one fetch


@dataclass(slots=True)
class CachedCatalogue:
    """One fetched catalogue, with what typing needs precomputed; views per architecture/rule are memoised."""

    images: list[Image]
    complete: bool
    fetched_at: float
    by_id: dict[str, Image] = field(init=False)
    _views: dict[tuple[object, ...], list[Image]] = field(init=False, default_factory=dict)
    _indexes: dict[tuple[object, ...], SearchIndex] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {image.id: image for image in self.images}

    def usable(self, architecture: str | None) -> list[Image]:
        """Active ECS system-disk images for `architecture` ("arm"/"x86"; None: unknown, so any), by name.

        Filtered here too: a region may ignore the `architecture` filter (reference [U]) or a query may not ask."""
        key: tuple[object, ...] = ("arch", architecture)
        found = self._views.get(key)
        if found is None:
            found = sorted(
                (
                    i
                    for i in self.images
                    if i.status == "active"
                    and i.is_ecs_system_image
                    and (architecture is None or i.architecture == architecture)
                ),
                key=lambda i: (i.name.lower(), i.id),
            )
            self._views[key] = found
        return found

    def allowed(
        self, architecture: str | None, patterns: tuple[str, ...], allow: Callable[[str, str], bool]
    ) -> SearchIndex:
        """`usable(architecture)` narrowed by a policy rule, indexed for typing; memoised by the rule's image
        patterns (the only part of a rule that decides which images it allows)."""
        key = (architecture, patterns)
        found = self._indexes.get(key)
        if found is None:
            if len(self._indexes) >= 64:  # many rules: start over rather than grow
                self._indexes.clear()
            found = SearchIndex(i for i in self.usable(architecture) if allow(i.name, i.id))
            self._indexes[key] = found
        return found


class CatalogueCache:
    def __init__(
        self,
        cloud: CloudClient,
        *,
        ttl: float = 300.0,
        max_entries: int = 4,
        max_images: int = 20_000,
        page_size: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_entries < 1 or max_images < 1:
            raise ValueError("CatalogueCache needs ttl > 0, max_entries >= 1 and max_images >= 1.")
        self._cloud = cloud
        self._ttl = ttl
        self._max_entries = max_entries
        self._max_images = max_images
        self._page_size = page_size
        self._clock = clock
        self._entries: OrderedDict[ImageQuery, CachedCatalogue] = OrderedDict()
        self._inflight: dict[ImageQuery, asyncio.Future[CachedCatalogue]] = {}
        self.fetches = 0  # how many times IMS was listed (tests and the bench read it)

    def __repr__(self) -> str:
        return f"CatalogueCache(entries={len(self._entries)}, ttl={self._ttl})"

    def cached(self, query: ImageQuery = ECS_SYSTEM_IMAGES) -> CachedCatalogue | None:
        """The entry if it is still fresh, without any I/O."""
        entry = self._entries.get(query)
        if entry is None or self._clock() - entry.fetched_at >= self._ttl:
            return None
        self._entries.move_to_end(query)
        return entry

    async def get(self, query: ImageQuery = ECS_SYSTEM_IMAGES, *, fresh: bool = False) -> CachedCatalogue:
        """The catalogue for `query`: from the cache while fresh, else one shared fetch (CloudError propagates)."""
        entry = None if fresh else self.cached(query)
        if entry is not None:
            return entry
        pending = self._inflight.get(query)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(query))
            self._inflight[query] = pending
            pending.add_done_callback(functools.partial(self._settled, query))
        return await asyncio.shield(pending)

    def invalidate(self) -> None:
        self._entries.clear()

    def _settled(self, query: ImageQuery, done: asyncio.Future[CachedCatalogue]) -> None:
        self._inflight.pop(query, None)
        if not done.cancelled() and done.exception() is not None:  # read, so a fetch nobody awaits is not "lost"
            log.info("image catalogue fetch failed: %s", done.exception())

    async def _fetch(self, query: ImageQuery) -> CachedCatalogue:
        self.fetches += 1
        started = self._clock()
        listed = await self._cloud.catalogue(query, page_size=self._page_size, max_images=self._max_images)
        entry = CachedCatalogue(listed.images, listed.complete, fetched_at=started)
        self._entries[query] = entry
        self._entries.move_to_end(query)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        if len(entry.images) >= FULL_GC_AFTER:
            # Thousands of new long-lived objects make the cyclic GC's next full pass certain, and it takes tens of
            # ms: run it now, once per fetch, rather than in the middle of someone's typing.
            gc.collect()
        log.debug("image catalogue: %d images in %.2fs", len(entry.images), self._clock() - started)
        return entry
