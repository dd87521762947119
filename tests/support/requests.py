"""ChangeRequest factories: a valid request with ordinary values, any field overridden by name."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.domain.request import ChangeRequest, LoginMethod, RequestState
from sandbox.devtools.stack import APPROVALS_CHANNEL, APPROVER, REQUESTER
from tests.support.sim_ids import UBUNTU_22

DEFAULTS: dict[str, Any] = {
    "requester": "U01REQ0001",
    "origin_channel": "C01ORIGIN1",
    "server_id": "srv-1",
    "server_name": "web-01",
    "target_image_id": "img-1",
    "target_image_name": "ubuntu-22.04",
    "keyname": "ops-key",
    "reason": "disk full",
    "approvals_channel": "C01APPROVE1",
}


def change_request(*, at: datetime | None = None, ttl: timedelta = timedelta(hours=1), **fields: Any) -> ChangeRequest:
    """A pending key-pair request unless `fields` say otherwise.

    `login=LoginMethod.PASSWORD` alone makes a password request (no key pair, a password held). `at` stamps the
    request as created and updated then, expiring `ttl` later.
    """
    base = dict(DEFAULTS)
    if fields.get("login") is LoginMethod.PASSWORD:
        base.update(keyname=None, has_password=True)
    if at is not None:
        base.update(created_at=at, updated_at=at, expires_at=at + ttl)
    return ChangeRequest(**{**base, **fields})


def approved_request(server_id: str, name: str) -> ChangeRequest:
    """A request on a LocalStack's simulator as the approval listener leaves it, without Slack (no approval card)."""
    return change_request(
        state=RequestState.APPROVED,
        requester=REQUESTER,
        server_id=server_id,
        server_name=name,
        target_image_id=UBUNTU_22,
        reason="tracker fault test",
        approvals_channel=APPROVALS_CHANNEL,
        approvals=[APPROVER],
    )
