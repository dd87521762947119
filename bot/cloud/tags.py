"""ECS servers by tag (`POST /v1/{project_id}/cloudservers/resource_instances/action`, reference §23).

The body and its answer, typed: `tag_query_body` writes what the API documents (limit and offset as strings),
`TaggedServer` reads one `resources[]` item. `CloudClient.servers_by_tag` pages through them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

PAGE_MAX = 1000  # the API's largest `limit`


class TaggedServer(BaseModel):
    """One `resources[]` item; `tags` arrive as `[{"key", "value"}]` and are kept as a dict."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(alias="resource_id", min_length=1)
    name: str = Field(default="", alias="resource_name")
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("name", mode="before")
    @classmethod
    def _none_is_blank(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("tags", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, list):
            return {
                str(item["key"]): "" if item.get("value") is None else str(item["value"])
                for item in value
                if isinstance(item, dict) and "key" in item
            }
        return value


def tag_query_body(
    tags: Mapping[str, str | None], *, name: str | None = None, limit: int = PAGE_MAX, offset: int = 0
) -> bytes:
    """A `filter` body: every tag must match (a None value matches any value); `name` is a resource_name match."""
    if not tags:
        raise ValueError("a tag query needs at least one tag")
    if not 1 <= limit <= PAGE_MAX or offset < 0:
        raise ValueError(f"limit is 1..{PAGE_MAX} and offset 0 or more")
    body: dict[str, Any] = {
        "action": "filter",
        "tags": [{"key": key, "values": [] if value is None else [value]} for key, value in tags.items()],
        "limit": str(limit),
        "offset": str(offset),
    }
    if name:
        body["matches"] = [{"key": "resource_name", "value": name}]
    return json.dumps(body, separators=(",", ":")).encode()
