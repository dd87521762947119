"""Gathers what the cloud knows about a server and its possible targets, and turns it into pre-flight checks.

Used by the modal (to show the plan card) and again on submit (to validate on the server side); facts are cached
for a few minutes per server so that switching a radio button does not cost four cloud calls.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.cloud import CloudAPIError, CloudClient, Image, KeyPair, Server
from bot.domain.policy import Decision, Policy, Rule
from bot.domain.preflight import Check, CheckLevel, PlanFacts, preflight
from bot.domain.request import LoginMethod, StopType

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
    images: list[Image]
    keypairs: list[KeyPair]

    def image(self, ref: str | None) -> Image | None:
        """An image by id, else by exact name (case-insensitive)."""
        if not ref:
            return None
        for image in self.images:
            if image.id == ref:
                return image
        lowered = ref.lower()
        return next((image for image in self.images if image.name.lower() == lowered), None)

    @property
    def keypair_names(self) -> list[str]:
        return sorted(k.name for k in self.keypairs)


@dataclass(frozen=True, slots=True)
class Selection:
    """What the person chose in the modal so far."""

    image_id: str | None
    login: LoginMethod | None
    keyname: str | None
    password_set: bool
    stop_type: StopType


class Planner:
    def __init__(
        self, cloud: CloudClient, policy: Policy, *, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic
    ):
        self._cloud = cloud
        self._policy = policy
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, CloudFacts]] = {}

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

    async def facts(self, server_id: str, *, fresh: bool = False) -> CloudFacts:
        cached = self._cache.get(server_id)
        if cached and not fresh and self._clock() - cached[0] < self._ttl:
            return cached[1]
        server, images, keypairs = await asyncio.gather(
            self._cloud.get_server(server_id), self._cloud.list_images(), self._cloud.list_keypairs()
        )
        disk = None
        volume = server.system_volume
        if volume is not None:
            try:
                disk = (await self._cloud.get_volume(volume.id)).size
            except CloudAPIError:
                disk = None  # shown as "unknown size" (⚠️), never a reason to block on its own
        facts = CloudFacts(server=server, system_disk_gb=disk, images=images, keypairs=keypairs)
        self._cache[server_id] = (self._clock(), facts)
        return facts

    async def servers_for(self, may_change: Callable[[Server], bool]) -> list[Server]:
        """The servers a person may change, for the chooser when no server was named."""
        return [s for s in await self._cloud.list_servers(limit=1000) if may_change(s)]

    def may_request(self, user_id: str, groups: set[str], server: Server) -> Decision:
        """The policy's answer for this person and this server (by name, id and tags)."""
        return self._policy.may_request(user_id, groups, server.name, server.id, _tags(server))

    def allowed_images(self, facts: CloudFacts, rule: Rule | None) -> list[Image]:
        """Active images the policy allows for this server, Linux first, by name."""
        if rule is None:
            return []
        usable = [
            img for img in facts.images if img.status == "active" and self._policy.image_allowed(rule, img.name, img.id)
        ]
        return sorted(usable, key=lambda i: (i.os_type != "Linux", i.name.lower()))

    def checks(
        self, facts: CloudFacts, rule: Rule | None, choice: Selection, *, image_query: str | None = None
    ) -> list[Check]:
        """Pre-flight checks; `image_query` is the image as typed, named in the check when it selects no image."""
        server = facts.server
        image = facts.image(choice.image_id)
        checks = preflight(
            PlanFacts(
                server_status=server.status,
                task_state=server.task_state,
                locked=server.locked,
                frozen=server.metadata.get("EcmResStatus") == "freeze",
                has_system_disk=server.system_volume is not None,
                system_disk_gb=facts.system_disk_gb,
                server_os_type=server.os_type,
                image_found=image is not None,
                image_name=image.name if image else None,
                image_status=image.status if image else None,
                image_min_disk=image.min_disk if image else None,
                image_os_type=image.os_type if image else None,
                image_cloud_init=image.cloud_init if image else False,
                image_allowed=bool(image and rule and self._policy.image_allowed(rule, image.name, image.id)),
                login=choice.login,
                keyname=choice.keyname,
                keypair_exists=(choice.keyname in facts.keypair_names) if choice.keyname else None,
                password_set=choice.password_set,
                password_problems=[],  # a typed password is checked on submit, a page-set one on the page
                stop_first=server.status == "ACTIVE",
                stop_type=choice.stop_type,
            )
        )
        if image is None:
            missing = _no_image_check(image_query, self.allowed_images(facts, rule))
            checks = [missing if c.title == "Image not found" else c for c in checks]
        return checks


def _no_image_check(query: str | None, allowed: list[Image]) -> Check:
    """Why no image is selected: none given, several match, or none matches; matches are named."""
    if not query:
        return Check(CheckLevel.BLOCK, "No image chosen", "The command named none: pick the target image in the list.")
    lowered = query.lower()
    matches = [i.name for i in allowed if lowered in i.name.lower()]
    shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
    if len(matches) > 1:
        return Check(
            CheckLevel.BLOCK,
            "Several images match",
            f"{query} matches {len(matches)} images: {shown}. Pick one in the list, or give its exact name.",
        )
    if matches:
        return Check(
            CheckLevel.BLOCK,
            "Image name not exact",
            f"No image is named exactly {query}; {shown} is the one that matches. Pick it in the list.",
        )
    return Check(
        CheckLevel.BLOCK,
        "Image not found",
        f"No image you may use is named {query}. Pick an image from the list, or check its name or ID.",
    )


def _tags(server: Server) -> Sequence[str]:
    raw = getattr(server, "tags", None) or []
    return [str(t) for t in raw]
