"""Gathers what the cloud knows about a server and its possible targets (the facts `plan.evaluate_plan` judges).

Used by the modal (to show the plan card) and again on submit (to validate on the server side); facts are cached
for a few minutes per server so that switching a radio button does not cost four cloud calls. The image catalogue
comes from the region's `CatalogueCache` (bot/services/catalogue.py), the chosen image from IMS by ID.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from bot.cloud import CloudAPIError, CloudClient, CloudError, Image, ImageQuota, KeyPair, Server
from bot.cloud.client import ImageQuery
from bot.domain.backup import TAG_SERVER, is_own_backup
from bot.domain.policy import Decision, Policy, Rule
from bot.services.catalogue import CachedCatalogue, CatalogueCache
from bot.services.imagematch import Resolution, SearchIndex, resolve
from bot.services.plan import ServerFacts

QUOTA_TTL = 30.0  # the plan card's quota line; a submit reads it afresh
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True, slots=True)
class ServerLookup:
    """Servers matching what the person typed; `suggestions` are close names when none matched."""

    matches: list[Server]
    suggestions: list[str]


@dataclass(frozen=True, slots=True)
class CloudFacts:
    server: Server
    system_disk_gb: int | None
    images: list[Image]  # active ECS system-disk images for the server's architecture (the cached catalogue)
    keypairs: list[KeyPair]
    architecture: str | None = None  # the flavor's, "arm" or "x86"; None when the flavor could not be read
    virtualization: str | None = None  # the flavor's, "KVM" or "Xen"; None when not known
    selected: Image | None = None  # the chosen image as IMS answered by ID (any status or kind)
    catalogue: CachedCatalogue | None = field(default=None, repr=False, compare=False)

    def image(self, ref: str | None) -> Image | None:
        """The selected image, else an image of the catalogue by id, else by exact name (case-insensitive)."""
        if not ref:
            return None
        if self.selected is not None and self.selected.id == ref:
            return self.selected
        for image in self.images:
            if image.id == ref:
                return image
        lowered = ref.lower()
        return next((image for image in self.images if image.name.lower() == lowered), None)

    def with_selected(self, image: Image) -> CloudFacts:
        return replace(self, selected=image)

    @property
    def server_facts(self) -> ServerFacts:
        return ServerFacts(self.server, self.system_disk_gb, self.architecture, self.virtualization)

    @property
    def keypair_names(self) -> list[str]:
        return sorted(k.name for k in self.keypairs)


@dataclass(frozen=True, slots=True)
class FlavorFacts:
    architecture: str  # "arm" | "x86"
    virtualization: str | None  # "KVM" | "Xen" | None

    @classmethod
    def from_specs(cls, specs: dict[str, str]) -> FlavorFacts:
        """`ecs:instance_architecture` is `arm64` on Kunpeng flavors only; `ecs:virtualization_env_types` is
        `CloudCompute` (KVM) or `FusionCompute` (Xen), reference §21."""
        arm = specs.get("ecs:instance_architecture", "").lower() == "arm64"
        env = specs.get("ecs:virtualization_env_types", "")
        virtualization = "KVM" if "CloudCompute" in env else ("Xen" if "FusionCompute" in env else None)
        return cls("arm" if arm else "x86", virtualization)


class Planner:
    def __init__(
        self,
        cloud: CloudClient,
        policy: Policy,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        catalogue: CatalogueCache | None = None,
    ):
        self._cloud = cloud
        self._policy = policy
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, CloudFacts]] = {}
        self._flavors: dict[str, FlavorFacts] = {}  # flavor id -> what the changeos checks need; flavors never change
        self.catalogue = catalogue or CatalogueCache(cloud, ttl=ttl, clock=clock)
        self._quota: tuple[float, ImageQuota] | None = None

    async def lookup(self, query: str, may_change: Callable[[Server], bool]) -> ServerLookup:
        """Exact matches (by name or ID), else close names; suggestions only name servers `may_change` allows."""
        query = query.strip()
        if UUID_RE.match(query):
            try:
                return ServerLookup([await self._cloud.get_server(query)], [])
            except CloudAPIError as exc:
                if exc.status != 404:
                    raise
                return ServerLookup([], [])
        matches = await self._cloud.find_servers(query)
        if matches:
            return ServerLookup(matches, [])
        everything = await self._cloud.list_servers(limit=1000)
        names = sorted({s.name for s in everything if may_change(s)})
        lowered = {n.lower(): n for n in names}
        close = difflib.get_close_matches(query.lower(), list(lowered), n=5, cutoff=0.5)
        contains = [n for n in names if query.lower() in n.lower() and n.lower() not in close]
        return ServerLookup([], [lowered[c] for c in close] + contains[: max(0, 5 - len(close))])

    async def facts(self, server_id: str, *, fresh: bool = False, image_id: str | None = None) -> CloudFacts:
        """The server's facts (cached `ttl` unless `fresh`) with the catalogue that can serve it; `image_id` is
        read from IMS now (on submit: its status as it is, not as it was when the catalogue was listed)."""
        cached = self._cache.get(server_id)
        if cached and not fresh and self._clock() - cached[0] < self._ttl:
            facts = cached[1]
        else:
            facts = await self._server_facts(server_id)
            self._cache[server_id] = (self._clock(), facts)
        catalogue = await self.catalogue.get()
        facts = replace(facts, images=catalogue.usable(facts.architecture), catalogue=catalogue)
        if image_id and image_id != "none":
            facts = replace(facts, selected=await self._cloud.get_image(image_id))
        return facts

    async def image_quota(self, *, fresh: bool = False) -> ImageQuota | None:
        """The private-image quota (a backup must fit it), cached briefly; None when IMS cannot say: the plan then
        warns instead of blocking, and a full quota still stops the backup safely (IMG.0015) before any change."""
        if self._quota and not fresh and self._clock() - self._quota[0] < QUOTA_TTL:
            return self._quota[1]
        try:
            quota = await self._cloud.image_quota()
        except CloudError:
            return None
        self._quota = (self._clock(), quota)
        return quota

    async def backups_of(self, server_id: str) -> list[Image]:
        """The bot's backups of this server (its tags and IMS's `__data_origin` agree), newest first."""
        images = await self._cloud.find_images(tag=(TAG_SERVER, server_id))
        mine = [i for i in images if is_own_backup(i.tags, i.data_origin, server_id)]
        return sorted(mine, key=lambda i: (i.created_at is not None, i.created_at), reverse=True)

    async def _server_facts(self, server_id: str) -> CloudFacts:
        server, keypairs = await asyncio.gather(self._cloud.get_server(server_id), self._cloud.list_keypairs())
        flavor, disk = await asyncio.gather(self.flavor(server), self._disk(server))
        return CloudFacts(
            server=server,
            system_disk_gb=disk,
            images=[],
            keypairs=keypairs,
            architecture=flavor.architecture if flavor else None,
            virtualization=flavor.virtualization if flavor else None,
        )

    async def _disk(self, server: Server) -> int | None:
        volume = server.system_volume
        if volume is None:
            return None
        try:
            return (await self._cloud.get_volume(volume.id)).size
        except CloudAPIError:
            return None  # shown as "unknown size" (⚠️), never a reason to block on its own

    async def architecture(self, server: Server) -> str | None:
        """"arm" when the flavor says `ecs:instance_architecture = arm64`, "x86" when it says nothing; None when
        the flavor cannot be read (then no image is filtered out by architecture)."""
        flavor = await self.flavor(server)
        return flavor.architecture if flavor else None

    async def flavor(self, server: Server) -> FlavorFacts | None:
        """The flavor's architecture and virtualization from its extra specs; None when it cannot be read."""
        flavor_id = server.flavor.id if server.flavor else None
        if not flavor_id:
            return None
        if flavor_id not in self._flavors:
            try:
                specs = await self._cloud.flavor_extra_specs(flavor_id)
            except CloudError:
                return None  # not remembered: the next plan asks again
            if len(self._flavors) > 1000:
                self._flavors.clear()
            self._flavors[flavor_id] = FlavorFacts.from_specs(specs)
        return self._flavors[flavor_id]

    async def servers_for(self, may_change: Callable[[Server], bool]) -> list[Server]:
        """The servers a person may change, for the chooser when no server was named."""
        return [s for s in await self._cloud.list_servers(limit=1000) if may_change(s)]

    def may_request(self, user_id: str, groups: set[str], server: Server) -> Decision:
        """The policy's answer for this person and this server (by name, id and tags)."""
        return self._policy.may_request(user_id, groups, server.name, server.id, _tags(server))

    def allowed_images(self, facts: CloudFacts, rule: Rule | None) -> list[Image]:
        """The images of `facts` (active ECS system-disk images of the server's architecture) the rule allows, by
        name."""
        return self.image_index(facts, rule).images

    def image_index(self, facts: CloudFacts, rule: Rule | None) -> SearchIndex:
        """`allowed_images`, indexed for the type-ahead; built once per catalogue, architecture and rule."""
        if rule is None:
            return SearchIndex(())
        if facts.catalogue is not None:
            return facts.catalogue.allowed(facts.architecture, rule.images, self._allow(rule))
        allow = self._allow(rule)
        return SearchIndex(image for image in facts.images if allow(image.name, image.id))

    def _allow(self, rule: Rule) -> Callable[[str, str], bool]:
        return lambda name, image_id: self._policy.image_allowed(rule, name, image_id)

    async def resolve_image(self, facts: CloudFacts, rule: Rule | None, ref: str) -> Resolution:
        """An image argument: by ID, exact name or unique prefix in the catalogue that can serve the server; an ID
        or exact name outside it (not active, another kind or architecture) is read from IMS, so the plan can
        say why it cannot be used instead of "not found"."""
        found = resolve(ref, facts.images, self.allowed_images(facts, rule))
        if found.image is not None or found.matches or not found.query:
            return found
        try:
            if UUID_RE.match(found.query):
                image = await self._cloud.get_image(found.query.lower())
                others = [image] if image is not None else []
            else:
                query = ImageQuery(status=None, virtual_env_type=None, name=found.query)
                others = await self._cloud.list_images(query, limit=20)
        except CloudError:
            return found
        if len(others) == 1:
            return Resolution(found.query, image=others[0])
        if others:
            return Resolution(found.query, matches=others[:10], total=len(others))
        return found


def _tags(server: Server) -> Sequence[str]:
    raw = getattr(server, "tags", None) or []
    return [str(t) for t in raw]
