"""Backups of a server's system disk before its OS changes: names, tags, retention and the quota check. Pure.

The image name and tags are what find a backup again after a restart (IMS has no "jobs of a server" query), and
what tells the bot's own images from anyone else's, so retention never deletes an image it did not make.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

BackupMode = Literal["required", "offered", "off"]
BACKUP_MODES: tuple[BackupMode, ...] = ("required", "offered", "off")

PREFIX = "ecsbot"
TAG_KIND = ("ecsbot", "backup")  # every backup the bot makes carries this tag
TAG_REQUEST = "ecsbot-request"
TAG_SERVER = "ecsbot-server"
TAG_TIME = "ecsbot-time"
NAME_MAX = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # IMS also allows spaces; a name without them is easier to type


def stamp(at: datetime) -> str:
    """`20240101T120000Z`: UTC, no `:` (IMS names and ECS tag values refuse it)."""
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def image_name(server_name: str, request_id: str, at: datetime) -> str:
    """`ecsbot-<server>-<request>-<UTC time>`, within IMS's name rules (1-128 of letters, digits, - . _)."""
    tail = f"-{request_id}-{stamp(at)}"
    server = _UNSAFE.sub("-", server_name).strip("-.") or "server"
    room = NAME_MAX - len(PREFIX) - 1 - len(tail)
    return f"{PREFIX}-{server[:room]}{tail}"


def image_tags(request_id: str, server_id: str, at: datetime) -> dict[str, str]:
    """The `image_tags` linking a backup to its request and server (keys ≤ 36, values ≤ 43 characters)."""
    return {TAG_KIND[0]: TAG_KIND[1], TAG_REQUEST: request_id, TAG_SERVER: server_id, TAG_TIME: stamp(at)}


def image_description(request_id: str, server_name: str) -> str:
    return f"Backup of the system disk of {server_name} taken by ecsbot before change {request_id}"


@dataclass(frozen=True, slots=True)
class BackupImage:
    """What retention needs to know of an image (the shell builds it from IMS's answer)."""

    id: str
    name: str
    status: str
    created_at: datetime
    tags: Mapping[str, str]

    @property
    def ours(self) -> bool:
        """Made by the bot: the kind tag and a request tag (a name alone could be anyone's)."""
        return self.tags.get(TAG_KIND[0]) == TAG_KIND[1] and bool(self.tags.get(TAG_REQUEST))

    @property
    def server_id(self) -> str | None:
        return self.tags.get(TAG_SERVER) or None

    @property
    def request_id(self) -> str | None:
        return self.tags.get(TAG_REQUEST) or None


@dataclass(frozen=True, slots=True)
class Prune:
    image: BackupImage
    why: str


def to_prune(
    images: Iterable[BackupImage],
    *,
    keep_days: int,
    keep_count: int,
    now: datetime,
    failed_servers: Iterable[str] = (),
) -> list[Prune]:
    """The bot's backups to delete: per server, those beyond the newest `keep_count` or older than `keep_days`.

    Never an image without the bot's tags, never one still being created (queued/saving: IMS refuses, IMG.0090),
    and never the newest usable backup of a server whose last change failed: that one may be the only way back.
    A `killed` backup (its creation failed) is always deleted: it is no backup and it uses up the quota.
    """
    if keep_days < 1 or keep_count < 1:
        raise ValueError("keep_days and keep_count must be 1 or more")
    failed = set(failed_servers)
    per_server: dict[str, list[BackupImage]] = {}
    out: list[Prune] = []
    for image in images:
        if not image.ours or image.server_id is None or image.status in ("queued", "saving", "deleted"):
            continue
        if image.status == "killed":
            out.append(Prune(image, "its creation failed (status killed)"))
            continue
        per_server.setdefault(image.server_id, []).append(image)
    cutoff = now - timedelta(days=keep_days)
    for server_id, backups in per_server.items():
        backups.sort(key=lambda b: b.created_at, reverse=True)
        for rank, image in enumerate(backups):
            if rank == 0 and server_id in failed:
                continue
            if rank >= keep_count:
                out.append(Prune(image, f"more than {keep_count} backup(s) of this server are kept"))
            elif image.created_at < cutoff:
                out.append(Prune(image, f"older than {keep_days} day(s)"))
    return out


@dataclass(frozen=True, slots=True)
class QuotaCheck:
    fits: bool
    text: str


def quota_check(used: int, quota: int, needed: int = 1) -> QuotaCheck:
    """Whether a backup fits the private-image quota, in words for the plan card."""
    words = f"backup needs {needed} private image{'s' if needed != 1 else ''}, {used} of {quota} used"
    if used + needed <= quota:
        return QuotaCheck(True, words)
    return QuotaCheck(
        False,
        f"The private image quota is full: {words}. Delete images you no longer need (`ecsbot backups prune` "
        "removes old backups) or ask Huawei Cloud for a higher quota, then submit again.",
    )


def is_own_backup(tags: Iterable[str], data_origin: str | None, server_id: str) -> bool:
    """An image the bot made from this very server: the bot's tags name the server, and IMS's own `__data_origin`
    (set by IMS, not by whoever tags the image) says it was made from that server's disk.

    Such an image may be a change's target even when the rule's `images` patterns do not list it: it holds the OS
    the server itself ran, so a rollback never needs `ecsbot-*` in every rule."""
    pairs = dict(tag.split("=", 1) for tag in tags if "=" in tag)
    ours = pairs.get(TAG_KIND[0]) == TAG_KIND[1] and bool(pairs.get(TAG_REQUEST))
    return ours and pairs.get(TAG_SERVER) == server_id and data_origin == f"instance,{server_id}"


def backup_minutes(disk_gb: int | None) -> int:
    """A rough duration for the plan card: IMS took ≈4 minutes for a 40 GB system disk in the documented example;
    longer for bigger disks (≈1 minute per further 10 GB)."""
    size = disk_gb or 40
    return 4 + max(0, (size - 40 + 9) // 10)
