"""Reads the plan modal's `state.values` into typed choices; tolerant of the null/absent shapes Slack sends."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from bot.domain.request import LoginMethod, StopType
from bot.slack import views


@dataclass(frozen=True, slots=True)
class ModalInput:
    server_id: str | None = None
    image_id: str | None = None
    login: LoginMethod | None = None
    keyname: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    password_confirm: SecretStr | None = field(default=None, repr=False)
    password_block: str | None = None
    stop_type: StopType | None = None
    reason: str | None = None
    ticket: str | None = None
    notify: list[str] = field(default_factory=list)
    backup: bool | None = None  # the backup checkbox; None when the form has none


def _action(values: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    entry = (values.get(block) or {}).get(action)
    return entry if isinstance(entry, dict) else {}


def _selected(values: dict[str, Any], block: str, action: str) -> str | None:
    option = _action(values, block, action).get("selected_option")
    if isinstance(option, dict):
        value = option.get("value")
        return value if isinstance(value, str) and value else None
    return None


def _text(values: dict[str, Any], block: str, action: str) -> str | None:
    value = _action(values, block, action).get("value")
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _prefixed(values: dict[str, Any], prefix: str, action: str) -> tuple[str | None, str | None]:
    for block_id in values:
        if block_id == prefix or block_id.startswith(prefix + ":"):
            value = _action(values, block_id, action).get("value")
            return block_id, value if isinstance(value, str) and value else None
    return None, None


def read_input(view: dict[str, Any]) -> ModalInput:
    values = ((view.get("state") or {}).get("values")) or {}
    login_raw = _selected(values, views.LOGIN_BLOCK, views.LOGIN_ACTION)
    stop_raw = _selected(values, views.STOP_BLOCK, views.STOP_ACTION)
    image = _selected(values, views.IMAGE_BLOCK, views.IMAGE_ACTION)
    keyname = _selected(values, views.KEY_BLOCK, views.KEY_ACTION)
    pw_block, password = _prefixed(values, views.PASSWORD_BLOCK_PREFIX, views.PASSWORD_ACTION)
    _, confirm = _prefixed(values, views.PASSWORD_CONFIRM_PREFIX, views.PASSWORD_CONFIRM_ACTION)
    notify = _action(values, views.NOTIFY_BLOCK, views.NOTIFY_ACTION).get("selected_conversations") or []
    return ModalInput(
        server_id=_selected(values, views.SERVER_BLOCK, views.SERVER_ACTION),
        image_id=None if image == "none" else image,
        login=LoginMethod(login_raw) if login_raw in {m.value for m in LoginMethod} else None,
        keyname=keyname if keyname and not keyname.startswith("(") else None,
        password=SecretStr(password) if password else None,
        password_confirm=SecretStr(confirm) if confirm else None,
        password_block=pw_block,
        stop_type=StopType(stop_raw) if stop_raw in {s.value for s in StopType} else None,
        reason=_text(values, views.REASON_BLOCK, views.REASON_ACTION),
        ticket=_text(values, views.TICKET_BLOCK, views.TICKET_ACTION),
        notify=[c for c in notify if isinstance(c, str)],
        backup=_checked(values, views.BACKUP_BLOCK, views.BACKUP_ACTION, views.BACKUP_ON),
    )


def _checked(values: dict[str, Any], block: str, action: str, value: str) -> bool | None:
    """A checkbox: None when the form does not have it, else whether `value` is ticked."""
    if block not in values:
        return None
    chosen = _action(values, block, action).get("selected_options") or []
    return any(isinstance(o, dict) and o.get("value") == value for o in chosen)


def read_metadata(view: dict[str, Any]) -> dict[str, Any]:
    """private_metadata is ours, but a view can come from anywhere: bad JSON is an empty dict, never a crash."""
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
