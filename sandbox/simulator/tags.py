"""ECS servers by tag: `POST /v1/{project_id}/cloudservers/resource_instances/action` (reference §23).

Body `{"action": "filter"|"count", "tags": [{"key", "values"}], "not_tags": [...], "matches": [{"key":
"resource_name", "value"}], "limit": "≤1000", "offset": "0"}`; answer `{"resources": [{"resource_id",
"resource_name", "resource_detail", "tags": [{"key", "value"}]}], "total_count"}`, or `{"total_count"}` for count.
Validated as strictly as the API documents it: limit and offset are strings of digits, tags non-empty when given,
keys unique, no unknown fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.simulator.bodies import json_object
from sandbox.simulator.errors import bad_request
from sandbox.simulator.state import Server

_FIELDS = {"action", "tags", "not_tags", "matches", "limit", "offset"}
MAX_LIMIT = 1000
MAX_KEY, MAX_VALUE = 127, 255  # request-side limits of a tag filter


@dataclass(frozen=True)
class TagQuery:
    action: str
    tags: dict[str, frozenset[str]]  # key -> values (empty: any value)
    not_tags: dict[str, frozenset[str]]
    name: str | None
    limit: int
    offset: int


def _filters(data: Mapping[str, Any], field: str) -> dict[str, frozenset[str]]:
    raw = data.get(field)
    if raw is None:
        return {}
    if not isinstance(raw, list) or not raw:
        raise bad_request(f"Invalid parameter values: {field} must be a non-empty list of {{key, values}}.")
    out: dict[str, frozenset[str]] = {}
    for item in raw:
        if not isinstance(item, dict) or set(item) - {"key", "values"}:
            raise bad_request(f'Invalid parameter values: each {field} item is {{"key": ..., "values": [...]}}.')
        key, values = item.get("key"), item.get("values", [])
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
            raise bad_request(f"Invalid parameter values: {field}.key must be 1 to {MAX_KEY} characters.")
        if key in out:
            raise bad_request(f"Invalid parameter values: {field} key {key!r} is repeated; keys must be unique.")
        if not isinstance(values, list) or not all(isinstance(v, str) and len(v) <= MAX_VALUE for v in values):
            raise bad_request(f"Invalid parameter values: {field}.values must be a list of strings.")
        if len(set(values)) != len(values):
            raise bad_request(f"Invalid parameter values: the values of {field} key {key!r} must be unique.")
        out[key] = frozenset(values)
    return out


def _number(data: Mapping[str, Any], field: str, default: int, high: int) -> int:
    raw = data.get(field)
    if raw is None:
        return default
    if not isinstance(raw, str) or not raw.isdigit():
        raise bad_request(f'Invalid parameter values: {field} must be a string of digits, e.g. "{default}".')
    value = int(raw)
    if value > high:
        raise bad_request(f"Invalid parameter values: {field} must be at most {high}.")
    return value


def parse_tag_query(body: bytes) -> TagQuery:
    data = json_object(body)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise bad_request(f"Invalid parameter values: unknown field(s) {', '.join(unknown)}.")
    action = data.get("action")
    if action not in ("filter", "count"):
        raise bad_request('Invalid parameter values: action must be "filter" or "count".')
    name: str | None = None
    matches = data.get("matches")
    if matches is not None:
        if not isinstance(matches, list) or len(matches) != 1:
            raise bad_request('Invalid parameter values: matches takes one {"key": "resource_name", "value": ...}.')
        match = matches[0]
        if not isinstance(match, dict) or match.get("key") != "resource_name" or set(match) != {"key", "value"}:
            raise bad_request('Invalid parameter values: the only match key is "resource_name".')
        value = match.get("value")
        if not isinstance(value, str) or not value or len(value) > MAX_VALUE:
            raise bad_request(f"Invalid parameter values: matches.value must be 1 to {MAX_VALUE} characters.")
        name = value
    return TagQuery(
        action=action,
        tags=_filters(data, "tags"),
        not_tags=_filters(data, "not_tags"),
        name=name,
        limit=_number(data, "limit", MAX_LIMIT, MAX_LIMIT),
        offset=_number(data, "offset", 0, 10**9),
    )


def _has(server_tags: Mapping[str, str], key: str, values: frozenset[str]) -> bool:
    return key in server_tags and (not values or server_tags[key] in values)


def answer(servers: Iterable[Server], query: TagQuery) -> dict[str, Any]:
    """Servers with all `tags` (values OR'ed), none of `not_tags`, and the name match (a substring, as documented
    for resource_name searches), in a stable order."""
    found = [
        s
        for s in servers
        if all(_has(s.tags, k, v) for k, v in query.tags.items())
        and not any(_has(s.tags, k, v) for k, v in query.not_tags.items())
        and (query.name is None or query.name in s.name)
    ]
    if query.action == "count":
        return {"total_count": len(found)}
    page = found[query.offset : query.offset + query.limit]
    return {
        "resources": [
            {
                "resource_id": s.id,
                "resource_name": s.name,
                "resource_detail": None,
                "tags": [{"key": k, "value": v} for k, v in s.tags.items()],
            }
            for s in page
        ],
        "total_count": len(found),
    }
