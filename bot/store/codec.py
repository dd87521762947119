"""The request's columns, derived from the model, and the checks every engine applies before it writes.

Each field has a kind (json, datetime, bool, int, float, text); an engine maps kinds to its own column types.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from bot.domain.request import TERMINAL_STATES, ChangeRequest, InvalidTransition, RequestState, can_transition

IMMUTABLE = frozenset({"id", "state", "created_at"})
# Written just before a POST (the stop, the backup image, the change of OS), by `mark_sent` only.
SENT_STAMPS = frozenset({"stop_sent_at", "backup_sent_at", "submit_sent_at"})


def _kind(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _kind(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _kind(args[0])
    if origin in (list, tuple, set, frozenset):
        return "json"
    if isinstance(annotation, type):
        if issubclass(annotation, datetime):
            return "datetime"
        if issubclass(annotation, bool):
            return "bool"
        if issubclass(annotation, int) and not issubclass(annotation, Enum):
            return "int"
        if issubclass(annotation, float):
            return "float"
    return "text"


KINDS: dict[str, str] = {name: _kind(f.annotation) for name, f in ChangeRequest.model_fields.items()}


def iso(value: datetime) -> str:
    """Fixed-width ISO-8601 UTC text, so text order is time order."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: give the store aware UTC datetimes")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def encode_text(name: str, value: Any) -> Any:
    """A field as an engine without native types stores it: datetimes as ISO text, lists as JSON, bools as 0/1."""
    if value is None:
        return None
    kind = KINDS[name]
    if kind == "json":
        return json.dumps(list(value))
    if kind == "datetime":
        return iso(value)
    if kind == "bool":
        return int(bool(value))
    if isinstance(value, Enum):
        return value.value
    return value


# Fields with a non-null default: a column added after its rows were written holds NULL there, which means "the
# default" (a flag added later is False for the requests made before it, not missing).
_DEFAULTED = frozenset(
    name
    for name, f in ChangeRequest.model_fields.items()
    if not f.is_required() and f.default_factory is None and f.default is not None
)


def request_from_row(row: Mapping[str, Any]) -> ChangeRequest:
    data = {k: v for k, v in row.items() if k in KINDS and not (v is None and k in _DEFAULTED)}
    for name, kind in KINDS.items():
        if kind == "json" and isinstance(data.get(name), str):
            data[name] = json.loads(data[name])
        elif kind == "json" and data.get(name) is None:
            data[name] = []
    return ChangeRequest.model_validate(data)


def check_fields(fields: Mapping[str, Any]) -> None:
    unknown = sorted(set(fields) - set(KINDS))
    if unknown:
        raise ValueError(f"not fields of a change request: {', '.join(unknown)}")
    fixed = sorted(set(fields) & IMMUTABLE)
    if fixed:
        raise ValueError(f"these fields cannot be set this way: {', '.join(fixed)}")


def states(expected: RequestState | str | Iterable[RequestState | str]) -> frozenset[RequestState]:
    if isinstance(expected, str):
        return frozenset({RequestState(expected)})
    return frozenset(RequestState(e) for e in expected)


def plan_transition(
    to: RequestState | str,
    expected: RequestState | str | Iterable[RequestState | str],
    fields: Mapping[str, Any],
    now: datetime,
) -> tuple[RequestState, frozenset[RequestState], dict[str, Any]]:
    """The target, the guard and the columns to set of a transition, checked before any engine touches a row."""
    target = RequestState(to)
    guard = states(expected)
    if not guard:
        raise ValueError("expected must name at least one state")
    for state in guard:
        if not can_transition(state, target):
            raise InvalidTransition(state, target)
    check_fields(fields)
    updates = {**fields, "state": target, "updated_at": fields.get("updated_at", now)}
    if target in TERMINAL_STATES and "finished_at" not in fields:
        updates["finished_at"] = now
    return target, guard, updates


def applied(row: Mapping[str, Any], updates: Mapping[str, Any]) -> ChangeRequest:
    """The request after `updates`, validated, so a bad value never reaches the database."""
    return ChangeRequest.model_validate({**request_from_row(row).model_dump(), **updates})


def check_stamp(field: str, also: Mapping[str, Any]) -> None:
    if field not in SENT_STAMPS:
        raise ValueError(f"mark_sent stamps {' or '.join(sorted(SENT_STAMPS))}, not {field}")
    check_fields(also)
    if field in also or "updated_at" in also:
        raise ValueError("mark_sent sets the stamp and updated_at itself")
