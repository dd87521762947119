"""Retention of the bot's backups: which to delete (the pure `to_prune`), deleting them, confirming, auditing.

Only images the bot made are ever touched: the bot's tags, IMS's own `__data_origin` naming the same server, and a
request in this bot's store that the image's tag names. The newest backup of a server whose last change failed is
kept whatever its age (it may be the only way back), and so is any image a live request is about to use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime

from bot.cloud import CloudClient, CloudError, Image
from bot.domain.backup import TAG_KIND, TAG_SERVER, BackupImage, Prune, is_own_backup, to_prune
from bot.domain.policy import Policy
from bot.domain.request import ChangeRequest, RequestState
from bot.store import Store

log = logging.getLogger(__name__)

DEFAULT_KEEP_DAYS, DEFAULT_KEEP_COUNT = 7, 3  # a server no rule names any more keeps the rule defaults


@dataclass(frozen=True, slots=True)
class Deletion:
    """One backup retention removed (or would remove, in a dry run), and whether IMS confirmed it gone."""

    image_id: str
    name: str
    server_id: str
    request_id: str
    why: str
    confirmed: bool = False
    error: str | None = None


class Pruner:
    def __init__(
        self,
        store: Store,
        cloud: CloudClient,
        policy: Policy,
        *,
        confirm_timeout: float = 60.0,
        on_deleted: Callable[[ChangeRequest], Awaitable[None]] | None = None,
    ) -> None:
        """`on_deleted` is told the request whose backup went (Slack drops its Roll back button)."""
        self.store = store
        self.cloud = cloud
        self.policy = policy
        self.confirm_timeout = confirm_timeout
        self.on_deleted = on_deleted

    async def plan(self, now: datetime) -> list[tuple[Prune, ChangeRequest]]:
        """What retention would delete now, each with the request that made the backup."""
        images = await self.cloud.find_images(tag=TAG_KIND)
        protected = {r.target_image_id for r in await self.store.live()}
        by_server: dict[str, list[tuple[Image, BackupImage]]] = {}
        for image in images:
            backup = _backup(image)
            server_id = backup.server_id if backup else None
            if backup is None or server_id is None or not is_own_backup(image.tags, image.data_origin, server_id):
                continue
            by_server.setdefault(server_id, []).append((image, backup))
        out: list[tuple[Prune, ChangeRequest]] = []
        for server_id, pairs in by_server.items():
            latest = await self.store.latest_for_server(server_id)
            days, count = self._retention(latest, server_id)
            failed = [server_id] if latest is not None and latest.state is RequestState.FAILED else []
            for prune in to_prune(
                [b for _, b in pairs], keep_days=days, keep_count=count, now=now, failed_servers=failed
            ):
                if prune.image.id in protected or prune.image.request_id is None:
                    continue
                request = await self.store.get(prune.image.request_id)
                if request is None:  # tagged like ours, but this bot's store never made it: not ours to delete
                    log.info("backup %s names %s, unknown here: left alone", prune.image.name, prune.image.request_id)
                    continue
                out.append((prune, request))
        return out

    def _retention(self, latest: ChangeRequest | None, server_id: str) -> tuple[int, int]:
        rule = self.policy.rule_for(latest.server_name if latest else "", server_id)
        if rule is None:
            return DEFAULT_KEEP_DAYS, DEFAULT_KEEP_COUNT
        return rule.backup_keep_days, rule.backup_keep_count

    async def prune(self, now: datetime, *, dry_run: bool = False) -> list[Deletion]:
        """Delete what retention says, one at a time: DELETE, then wait until IMS no longer lists it, then audit."""
        done: list[Deletion] = []
        for prune, request in await self.plan(now):
            image = prune.image
            base = Deletion(image.id, image.name, image.server_id or "", request.id, prune.why)
            if dry_run:
                done.append(base)
                continue
            deletion = await self._delete(base)
            done.append(deletion)
            await self._audit(request, deletion)
        return done

    async def _delete(self, deletion: Deletion) -> Deletion:
        try:
            await self.cloud.delete_image(deletion.image_id)
            confirmed = await self._gone(deletion.image_id)
        except CloudError as exc:
            log.warning("deleting backup %s failed: %s", deletion.name, exc)
            return replace(deletion, error=exc.hint)
        return replace(deletion, confirmed=confirmed)

    async def _gone(self, image_id: str) -> bool:
        """IMS answers 204 at once and removes the image a little later: poll until it is gone, or time out."""
        deadline = time.monotonic() + self.confirm_timeout
        delay = 0.05
        while True:
            if await self.cloud.image_gone(image_id):
                return True
            if time.monotonic() + delay > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _audit(self, request: ChangeRequest, deletion: Deletion) -> None:
        if deletion.error:
            detail = f"backup {deletion.name} ({deletion.image_id}) could not be deleted: {deletion.error.strip()}"
            await self.store.record(request.id, actor="bot", action="backup_delete_failed", detail=detail)
            return
        outcome = "gone" if deletion.confirmed else "deleted; IMS still listed it when the bot stopped waiting"
        detail = f"backup {deletion.name} ({deletion.image_id}) deleted by retention ({deletion.why}): {outcome}"
        await self.store.record(request.id, actor="bot", action="backup_deleted", detail=detail)
        if self.on_deleted is not None and request.backup_image_id == deletion.image_id:
            try:
                await self.on_deleted(request)
            except Exception:
                log.exception("telling Slack that %s's backup is gone failed", request.id)


def _backup(image: Image) -> BackupImage | None:
    if image.created_at is None:
        return None  # its age is unknown: never judged
    tags = dict(t.split("=", 1) for t in image.tags if "=" in t)
    if TAG_SERVER not in tags:
        return None
    return BackupImage(image.id, image.name, image.status, image.created_at, tags)
