"""Signed Slack requests to the bot's `POST /slack/events`, shaped exactly as Slack sends them.

The builders are pure (they return the raw form body); `SlackSender` signs and posts. Shapes follow
Slack's documented payloads (slash commands, block_actions, view_submission, block_suggestion).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx

TEAM_ID = "T01ABCDE2F"
TEAM_DOMAIN = "acme"
APP_ID = "A01APP0001"
VERIFICATION_TOKEN = "gVeRiFiCaTiOnToKeN0000000"
REQUESTER_ID = "U01REQ0001"
CHANNEL_ID = "C01CHAN001"
CHANNEL_NAME = "change-requests"

_trigger_seq = itertools.count(7429571012345)
_action_ts_seq = itertools.count(1)


FORM = "application/x-www-form-urlencoded"


def sign(signing_secret: str, body: bytes, timestamp: int | None = None, content_type: str = FORM) -> dict[str, str]:
    """Headers for Slack's v0 signature over the raw body (HMAC-SHA256 of `v0:<ts>:<body>`)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": content_type,
    }


def new_trigger_id() -> str:
    """A fresh trigger_id in Slack's `<digits>.<digits>.<hex>` form, unique within the process."""
    return f"{next(_trigger_seq)}.1234567890123.{secrets.token_hex(16)}"


def _action_ts() -> str:
    return f"{int(time.time())}.{next(_action_ts_seq) % 1_000_000:06d}"


def _user(user_id: str, user_name: str | None, team_id: str) -> dict[str, str]:
    name = user_name or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def interaction_body(payload: object) -> bytes:
    """The form body Slack posts for an interaction: `payload=<JSON>` (any JSON, so tests can send malformed ones)."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


# ----------------------------------------------------------------------------------------------------------------
# Slash command


def slash_command_fields(
    text: str,
    *,
    response_url: str,
    user_id: str = REQUESTER_ID,
    user_name: str = "alice",
    channel_id: str = CHANNEL_ID,
    channel_name: str = CHANNEL_NAME,
    team_id: str = TEAM_ID,
    command: str = "/changeos",
    trigger_id: str | None = None,
) -> dict[str, str]:
    """The fields of a slash command (§1): Socket Mode carries them as a JSON object, HTTP as a form."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or new_trigger_id(),
    }


def slash_command(text: str, *, response_url: str, **fields: Any) -> bytes:
    """The form body of a slash command. Note: Bolt parses any body containing "payload" as an interaction."""
    return urlencode(slash_command_fields(text, response_url=response_url, **fields)).encode()


# ----------------------------------------------------------------------------------------------------------------
# block_actions


def _find_element(blocks: list[dict[str, Any]], action_id: str, block_id: str | None) -> tuple[str, dict[str, Any]]:
    """The element with `action_id` (in `block_id` when given), and its block's id."""
    for block in blocks:
        if block_id is not None and block.get("block_id") != block_id:
            continue
        candidates: list[Any] = list(block.get("elements") or [])
        for key in ("element", "accessory"):
            if block.get(key):
                candidates.append(block[key])
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return str(block.get("block_id", "")), element
    where = f"block {block_id!r}" if block_id is not None else "any block"
    raise ValueError(f"no element with action_id {action_id!r} in {where}: build the payload from the blocks shown")


def _option_for(element: dict[str, Any], value: str) -> dict[str, Any]:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    for option in options:
        if option.get("value") == value:
            return copy.deepcopy(option)
    return {"text": {"type": "plain_text", "text": value, "emoji": True}, "value": value}


def _action(
    element: dict[str, Any] | None,
    *,
    action_id: str,
    block_id: str,
    value: str | None,
    selected_option: dict[str, Any] | None,
) -> dict[str, Any]:
    element = element or {"type": "button"}
    kind = element.get("type", "button")
    action: dict[str, Any] = {"type": kind, "action_id": action_id, "block_id": block_id, "action_ts": _action_ts()}
    if kind == "button":
        for key in ("text", "style", "confirm", "url"):
            if key in element:
                action[key] = copy.deepcopy(element[key])
        action["value"] = value if value is not None else element.get("value")
        if action["value"] is None:
            del action["value"]
    elif kind in ("static_select", "external_select", "radio_buttons", "overflow"):
        if selected_option is None and value is not None:
            selected_option = _option_for(element, value)
        action["selected_option"] = selected_option
    elif value is not None:
        action["value"] = value
    return action


def block_actions(
    *,
    action_id: str,
    user_id: str = "U01APR0001",
    user_name: str | None = None,
    value: str | None = None,
    block_id: str | None = None,
    container: str = "message",
    message: dict[str, Any] | None = None,
    view: dict[str, Any] | None = None,
    channel_id: str = CHANNEL_ID,
    channel_name: str = CHANNEL_NAME,
    response_url: str | None = None,
    trigger_id: str | None = None,
    selected_option: dict[str, Any] | None = None,
    state_values: dict[str, Any] | None = None,
    team_id: str = TEAM_ID,
) -> bytes:
    """A `payload=` body for a click in a message (§2 a; pass the stored message, e.g. `Message.as_payload()`)
    or in a modal (§2 b; pass the view as the fake stored it). The action copies the clicked element."""
    base: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, user_name, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
    }
    if container == "message":
        if message is None:
            raise ValueError("container='message' needs message=: the message that holds the button")
        if response_url is None:
            raise ValueError("container='message' needs response_url=: use fake.response_url(key)")
        found_block, element = _find_element(list(message.get("blocks") or []), action_id, block_id)
        container_obj: dict[str, Any] = {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel_id,
            "is_ephemeral": False,
        }
        if message.get("thread_ts"):
            container_obj["thread_ts"] = message["thread_ts"]
        payload = {
            **base,
            "container": container_obj,
            "channel": {"id": channel_id, "name": channel_name},
            "message": copy.deepcopy(message),
            "state": {"values": copy.deepcopy(state_values or {})},
            "response_url": response_url,
        }
    elif container == "view":
        if view is None:
            raise ValueError("container='view' needs view=: the view as the fake stored it (fake.views[view_id])")
        found_block, element = _find_element(list(view.get("blocks") or []), action_id, block_id)
        sent_view = copy.deepcopy(view)
        values = state_values if state_values is not None else view.get("state", {}).get("values", {})
        sent_view["state"] = {"values": copy.deepcopy(values)}
        payload = {**base, "container": {"type": "view", "view_id": view["id"]}, "view": sent_view}
    else:
        raise ValueError(f"container must be 'message' or 'view', not {container!r}")
    action = _action(element, action_id=action_id, block_id=found_block, value=value, selected_option=selected_option)
    payload["actions"] = [action]
    return interaction_body(payload)


# ----------------------------------------------------------------------------------------------------------------
# view_submission, view_closed, block_suggestion


def _view_payload_base(user_id: str, user_name: str | None, team_id: str) -> dict[str, Any]:
    return {
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": _user(user_id, user_name, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "enterprise": None,
        "is_enterprise_install": False,
    }


def view_submission(
    *,
    view: dict[str, Any],
    values: dict[str, Any],
    user_id: str = REQUESTER_ID,
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    response_urls: list[dict[str, str]] | None = None,
) -> bytes:
    """A `payload=` body for submitting `view` (as the fake stored it) with state.values `values` (§3)."""
    sent_view = copy.deepcopy(view)
    sent_view.setdefault("type", "modal")
    sent_view["state"] = {"values": copy.deepcopy(values)}
    payload = {
        "type": "view_submission",
        **_view_payload_base(user_id, user_name, team_id),
        "trigger_id": new_trigger_id(),
        "view": sent_view,
        "response_urls": copy.deepcopy(response_urls or []),
    }
    return interaction_body(payload)


def view_closed(
    *, view: dict[str, Any], user_id: str = REQUESTER_ID, is_cleared: bool = False, team_id: str = TEAM_ID
) -> bytes:
    """A `payload=` body for closing a modal opened with notify_on_close (§4)."""
    sent_view = copy.deepcopy(view)
    sent_view.setdefault("type", "modal")
    payload = {
        "type": "view_closed",
        **_view_payload_base(user_id, None, team_id),
        "view": sent_view,
        "is_cleared": is_cleared,
    }
    return interaction_body(payload)


def block_suggestion(
    *,
    view: dict[str, Any],
    action_id: str,
    block_id: str,
    value: str,
    user_id: str = REQUESTER_ID,
    team_id: str = TEAM_ID,
) -> bytes:
    """A `payload=` body asking for external_select options while the user types `value` (§4)."""
    sent_view = copy.deepcopy(view)
    sent_view.setdefault("type", "modal")
    payload = {
        "type": "block_suggestion",
        **_view_payload_base(user_id, None, team_id),
        "container": {"type": "view", "view_id": view.get("id", "")},
        "action_id": action_id,
        "block_id": block_id,
        "value": value,
        "view": sent_view,
    }
    return interaction_body(payload)


# ----------------------------------------------------------------------------------------------------------------
# state.values helpers


def _option(value: str, text: str | None) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text if text is not None else value, "emoji": True}, "value": value}


def text_value(value: str | None) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def select_value(value: str | None, text: str | None = None, *, kind: str = "static_select") -> dict[str, Any]:
    """A single-select state; `kind` may be static_select or external_select (None: nothing selected)."""
    return {"type": kind, "selected_option": None if value is None else _option(value, text)}


def radio_value(value: str | None, text: str | None = None) -> dict[str, Any]:
    return {"type": "radio_buttons", "selected_option": None if value is None else _option(value, text)}


def checkboxes_value(values: list[str] | list[tuple[str, str]]) -> dict[str, Any]:
    """Ticked boxes, as values or (value, text) pairs."""
    options = [_option(v, None) if isinstance(v, str) else _option(v[0], v[1]) for v in values]
    return {"type": "checkboxes", "selected_options": options}


def multi_conversations_value(conversations: list[str]) -> dict[str, Any]:
    return {"type": "multi_conversations_select", "selected_conversations": list(conversations)}


def conversations_value(conversation: str | None) -> dict[str, Any]:
    return {"type": "conversations_select", "selected_conversation": conversation}


def users_value(user: str | None) -> dict[str, Any]:
    return {"type": "users_select", "selected_user": user}


# element type -> (state key, initial key, empty value)
_STATE_SHAPES: dict[str, tuple[str, str, Any]] = {
    "plain_text_input": ("value", "initial_value", None),
    "email_text_input": ("value", "initial_value", None),
    "url_text_input": ("value", "initial_value", None),
    "number_input": ("value", "initial_value", None),
    "static_select": ("selected_option", "initial_option", None),
    "external_select": ("selected_option", "initial_option", None),
    "radio_buttons": ("selected_option", "initial_option", None),
    "checkboxes": ("selected_options", "initial_options", []),
    "multi_static_select": ("selected_options", "initial_options", []),
    "multi_external_select": ("selected_options", "initial_options", []),
    "users_select": ("selected_user", "initial_user", None),
    "multi_users_select": ("selected_users", "initial_users", []),
    "conversations_select": ("selected_conversation", "initial_conversation", None),
    "multi_conversations_select": ("selected_conversations", "initial_conversations", []),
    "channels_select": ("selected_channel", "initial_channel", None),
    "multi_channels_select": ("selected_channels", "initial_channels", []),
    "datepicker": ("selected_date", "initial_date", None),
    "timepicker": ("selected_time", "initial_time", None),
    "datetimepicker": ("selected_date_time", "initial_date_time", None),
}


def _stateful_elements(view: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(block_id, element) for every element whose value Slack keeps in state.values."""
    found: list[tuple[str, dict[str, Any]]] = []
    for block in view.get("blocks") or []:
        block_id = str(block.get("block_id", ""))
        elements: list[Any] = []
        if block.get("type") == "input":
            elements = [block.get("element")]
        elif block.get("type") == "actions":
            elements = list(block.get("elements") or [])
        elif block.get("type") == "section":
            elements = [block.get("accessory")]
        for element in elements:
            if isinstance(element, dict) and element.get("type") in _STATE_SHAPES and element.get("action_id"):
                found.append((block_id, element))
    return found


def state_from_view(view: dict[str, Any], overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """state.values for `view` as shown (initial values kept, as Slack does), with `overrides` applied.

    `overrides` maps block_id to a state value from the helpers above (text_value, select_value, ...)."""
    values: dict[str, Any] = {}
    kinds: dict[str, tuple[str, str]] = {}
    for block_id, element in _stateful_elements(view):
        kind = element["type"]
        state_key, initial_key, empty = _STATE_SHAPES[kind]
        initial = element.get(initial_key, empty)
        values.setdefault(block_id, {})[element["action_id"]] = {"type": kind, state_key: copy.deepcopy(initial)}
        kinds[block_id] = (element["action_id"], kind)
    for block_id, override in (overrides or {}).items():
        if block_id not in kinds:
            raise ValueError(f"block {block_id!r} holds no input in this view; blocks with inputs: {sorted(kinds)}")
        action_id, kind = kinds[block_id]
        state_key = _STATE_SHAPES[kind][0]
        if state_key not in override:
            raise ValueError(
                f"block {block_id!r} holds a {kind}, whose state needs {state_key!r}; got {sorted(override)}"
            )
        values[block_id][action_id] = {**copy.deepcopy(override), "type": kind}
    return values


# ----------------------------------------------------------------------------------------------------------------
# Sender


class SlackSender:
    """Signs bodies with the signing secret and POSTs them to the bot, like Slack's delivery does."""

    def __init__(self, events_url: str, signing_secret: str, *, timeout: float = 10.0) -> None:
        self.events_url = events_url
        self._secret = signing_secret
        self._client = httpx.AsyncClient(timeout=timeout)

    def __repr__(self) -> str:
        return f"SlackSender({self.events_url!r})"

    async def send(
        self, body: bytes, *, timestamp: int | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST `body` signed now (or at `timestamp`); extra `headers` (e.g. X-Slack-Retry-Num) are added."""
        signed = sign(self._secret, body, timestamp)
        return await self._client.post(self.events_url, content=body, headers={**signed, **(headers or {})})

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> SlackSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
