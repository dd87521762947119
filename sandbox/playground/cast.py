"""Who plays which part on the page, and which channels it shows, read from the policy (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.policy import Policy

ORIGIN_CHANNEL = "C01CHAN001"
DEFAULT_NAMES = {
    "U01REQ0001": ("alice", "Alice Requester"),
    "U01APR0001": ("bob", "Bob Ops"),
    "U01APR0002": ("carol", "Carol Ops"),
    "U01OUT0001": ("oscar", "Oscar Outsider"),
    "U01GRP0001": ("grace", "Grace (approvers' group)"),
    "U01GRPREQ1": ("gary", "Gary (requesters' group)"),
    "U01BOT0001": ("changeos", "ChangeOS bot"),
}
DEFAULT_CHANNEL_NAMES = {
    ORIGIN_CHANNEL: "change-requests",
    "C01APPROVE1": "ecs-approvals",
    "C01INCIDNT1": "incident-42",
}
OUTSIDER = "U01OUT0001"
GROUP_APPROVER = "U01GRP0001"  # a member of every approvers' group, when the policy names no approver by ID
GROUP_REQUESTER = "U01GRPREQ1"  # likewise for the requesters' groups


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    real_name: str
    role: str  # requester | approver | outsider


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    role: str  # origin | approvals | notify


@dataclass(frozen=True)
class Cast:
    people: tuple[Person, ...]
    channels: tuple[Channel, ...]
    groups: dict[str, list[str]]  # user group -> members, for the fake Slack's usergroups.users.list

    def person(self, role: str) -> Person:
        return next(p for p in self.people if p.role == role)


def _person(user_id: str, role: str) -> Person:
    name, real = DEFAULT_NAMES.get(user_id, (f"user-{user_id[-4:].lower()}", f"User {user_id}"))
    return Person(user_id, name, real, role)


def _first_user(principals: list[str], avoid: set[str]) -> str | None:
    users = [p for p in principals if p[:1] in "UW" and p not in avoid]
    return users[0] if users else None


def cast_for(policy: Policy) -> Cast:
    """A requester and an approver the policy names (a group member when it names only user groups), an outsider
    it names nowhere, the origin, approvals and notify channels, and who is in each user group."""
    requesters = [p for rule in policy.rules for p in sorted(rule.requesters)]
    approvers = [p for rule in policy.rules for p in sorted(rule.approvers)]
    groups: dict[str, list[str]] = {group: [] for group in sorted(policy.group_ids())}
    requester = "U01REQ0001" if "U01REQ0001" in requesters else _first_user(requesters, set())
    if requester is None:
        requester = GROUP_REQUESTER
        for group in {p for p in requesters if p in groups}:
            groups[group].append(GROUP_REQUESTER)
    for group in {p for p in approvers if p in groups}:
        groups[group].append(GROUP_APPROVER)
    approver = "U01APR0001" if "U01APR0001" in approvers else _first_user(approvers, {requester})
    approver = approver or GROUP_APPROVER
    outsider = OUTSIDER if OUTSIDER not in {*requesters, *approvers} else "U09NOBODY0"
    people = (_person(requester, "requester"), _person(approver, "approver"), _person(outsider, "outsider"))

    channels = [Channel(ORIGIN_CHANNEL, DEFAULT_CHANNEL_NAMES[ORIGIN_CHANNEL], "origin")]
    approvals = [policy.approvals_channel, *(rule.approvals_channel for rule in policy.rules)]
    notify = [*policy.notify_channels, *(c for rule in policy.rules for c in rule.notify_channels)]
    seen = {ORIGIN_CHANNEL}
    for role, ids in (("approvals", approvals), ("notify", notify)):
        for channel_id in ids:
            if channel_id and channel_id not in seen:
                seen.add(channel_id)
                name = DEFAULT_CHANNEL_NAMES.get(channel_id, channel_id.lower())
                channels.append(Channel(channel_id, name, role))
    return Cast(people, tuple(channels), groups)
