"""The region's catalogue cache against the simulator over HTTP: one shared fetch, a TTL, a bound, the right view."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from bot.cloud import CloudClient, CloudError, Credentials, Endpoints, RetryPolicy
from bot.cloud.client import ImageQuery
from bot.services.catalogue import CatalogueCache
from sandbox.simulator import SimulatorServer
from sandbox.simulator.faults import FaultSpec
from tests.support.clocks import SecondsClock as Clock

PROJECT = "0605767ef600d5762f23c013c6e7ad23"
FAST = RetryPolicy(max_attempts=1, total_timeout=5.0)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer(catalogue_size=120, seed=3)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def cloud(sim: SimulatorServer) -> AsyncIterator[CloudClient]:
    credentials = Credentials("SIMULATORAK000000000", SecretStr("simulator-secret-key-0000000000000000000"), PROJECT)
    url = sim.base_url
    async with CloudClient(credentials, Endpoints(url, url, url), retry=FAST) as client:
        yield client


def listings(sim: SimulatorServer) -> int:
    return sum(1 for r in sim.requests if r.get("route") == "list_images")


async def test_concurrent_misses_share_one_fetch_and_hits_cost_nothing(sim, cloud) -> None:
    sim.faults.add(FaultSpec(route="list_images", latency_ms=150))  # so the misses really overlap
    cache = CatalogueCache(cloud, page_size=50)
    first = await asyncio.gather(*(cache.get() for _ in range(10)))
    pages = listings(sim)
    assert cache.fetches == 1 and all(entry is first[0] for entry in first)
    assert pages == len(first[0].images) // 50 + 1, "one paging pass, to the first short page"
    again = await cache.get()
    assert again is first[0] and listings(sim) == pages, "a hit makes no IMS call"


async def test_the_ttl_expires_an_entry_and_fresh_skips_it(cloud) -> None:
    clock = Clock()
    cache = CatalogueCache(cloud, ttl=300, clock=clock)
    entry = await cache.get()
    clock.now += 299
    assert await cache.get() is entry and cache.fetches == 1
    clock.now += 2
    assert cache.cached() is None
    assert await cache.get() is not entry and cache.fetches == 2
    await cache.get(fresh=True)
    assert cache.fetches == 3


async def test_memory_is_bounded_by_entries_and_images(cloud) -> None:
    cache = CatalogueCache(cloud, max_entries=1, max_images=30, page_size=10)
    public = await cache.get(ImageQuery(imagetype="gold"))
    assert len(public.images) == 30 and not public.complete, "cut at the bound, and it says so"
    await cache.get(ImageQuery(imagetype="private"))
    assert cache.cached(ImageQuery(imagetype="gold")) is None, "the least recently used query went"
    assert cache.cached(ImageQuery(imagetype="private")) is not None


async def test_only_active_ecs_system_images_of_the_architecture_are_usable(sim, cloud) -> None:
    everything = await cloud.catalogue(ImageQuery(status=None, virtual_env_type=None))
    entry = await CatalogueCache(cloud).get()
    for arch in ("x86", "arm"):
        usable = entry.usable(arch)
        assert usable and all(i.status == "active" and i.is_ecs_system_image for i in usable)
        assert all(i.architecture == arch for i in usable)
        expected = {
            i.id
            for i in everything.images
            if i.status == "active" and i.is_ecs_system_image and i.architecture == arch
        }
        assert {i.id for i in usable} == expected, "the simulator may ignore `architecture`: filtered here too"
    assert len(entry.usable(None)) == len(entry.usable("x86")) + len(entry.usable("arm"))
    kinds = {i.kind for i in everything.images} - {"FusionCompute"}
    assert kinds, "the catalogue holds other kinds, which the cache leaves out"


async def test_a_failed_fetch_reaches_every_waiter_and_the_next_get_tries_again(sim, cloud) -> None:
    sim.faults.add(FaultSpec(route="list_images", error_rate=1.0, status=500, latency_ms=50))
    cache = CatalogueCache(cloud)
    results = await asyncio.gather(cache.get(), cache.get(), return_exceptions=True)
    assert all(isinstance(r, CloudError) for r in results) and cache.fetches == 1
    sim.faults.clear()
    assert (await cache.get()).images and cache.fetches == 2


async def test_a_waiter_that_gives_up_does_not_cancel_the_fetch(sim, cloud) -> None:
    sim.faults.add(FaultSpec(route="list_images", latency_ms=200))
    cache = CatalogueCache(cloud)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(cache.get(), 0.05)
    entry = await cache.get()  # joins the fetch still under way
    assert entry.images and cache.fetches == 1
