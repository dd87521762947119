"""Request bodies and query strings, validated the way the ECS API does (Ecs.0005 and friends)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from sandbox.simulator.errors import SimError, bad_request
from sandbox.simulator.state import ChangeOs

USER_DATA_MAX = 32 * 1024


def json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise SimError(400, "Common.0002", "The request body cannot be left blank.")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("Invalid parameter values: request body is illegal (not valid JSON).") from None
    if not isinstance(data, dict):
        raise bad_request("Invalid parameter values: request body is illegal (expected a JSON object).")
    return data


def _optional_str(option: Mapping[str, Any], key: str) -> str | None:
    value = option.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"Invalid parameter values: {key} must be a string.")
    return value or None


def parse_change_os(body: bytes, *, cloud_init: bool) -> ChangeOs:
    """`{"os-change": {...}}` for v1 (no Cloud-Init) or v2 (Cloud-Init). Error texts never echo the password."""
    option = json_object(body).get("os-change")
    if not isinstance(option, dict):
        raise bad_request('Invalid parameter values: the body must be {"os-change": {...}}.')
    imageid = _optional_str(option, "imageid")
    if not imageid:
        raise bad_request("Invalid parameter values: os-change.imageid is required.")
    adminpass = _optional_str(option, "adminpass")
    keyname = _optional_str(option, "keyname")
    userid = _optional_str(option, "userid")
    mode = _optional_str(option, "mode")
    metadata = option.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad_request("Invalid parameter values: os-change.metadata must be an object of strings.")
    if adminpass and keyname:
        raise bad_request(
            "Invalid parameter values: adminpass and keyname cannot both be set; choose one login method."
        )
    if not adminpass and not keyname and not (cloud_init and metadata.get("user_data")):
        raise bad_request(
            "Invalid parameter values: adminpass and keyname cannot both be empty; give a key pair or a password."
        )
    if keyname and not userid:
        raise bad_request(
            "Invalid parameter values: userid is required with keyname when requests are signed with AK/SK."
        )
    if mode not in (None, "withStopServer"):
        raise bad_request("Invalid parameter values: mode can only be withStopServer.")
    auto_pay = option.get("isAutoPay")
    if auto_pay is not None and auto_pay not in ("true", "false"):
        raise bad_request('Invalid parameter values: isAutoPay must be "true" or "false".')
    _check_metadata(metadata, cloud_init=cloud_init)
    return ChangeOs(
        imageid=imageid,
        adminpass=SecretStr(adminpass) if adminpass else None,
        keyname=keyname,
        userid=userid,
        mode=mode,
        metadata={k: v for k, v in metadata.items() if k != "user_data"},
    )


def _check_metadata(metadata: Mapping[str, str], *, cloud_init: bool) -> None:
    encrypted = metadata.get("__system__encrypted")
    if encrypted not in (None, "0", "1"):
        raise bad_request('Invalid parameter values: metadata.__system__encrypted must be "0" or "1".')
    if encrypted == "1" and len(metadata.get("__system__cmkid", "")) != 36:
        raise bad_request(
            "Invalid parameter values: an encrypted system disk needs metadata.__system__cmkid (36 chars)."
        )
    if "BYOL" in metadata and metadata["BYOL"] != "true":
        raise bad_request('Invalid parameter values: metadata.BYOL can only be "true".')
    user_data = metadata.get("user_data")
    if user_data is not None:
        if not cloud_init:
            raise bad_request(
                "Invalid parameter values: metadata.user_data needs a Cloud-Init image and the v2 changeos API."
            )
        try:
            decoded = base64.b64decode(user_data, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("Invalid parameter values: metadata.user_data must be base64 encoded.") from None
        if len(decoded) > USER_DATA_MAX:
            raise bad_request("Invalid parameter values: metadata.user_data must be at most 32 KB.")


@dataclass(frozen=True)
class ServerAction:
    action: str  # "os-stop" or "os-start"
    server_ids: list[str]
    hard: bool = False


def parse_action(body: bytes) -> ServerAction:
    data = json_object(body)
    actions = [key for key in ("os-stop", "os-start") if key in data]
    if len(actions) != 1:
        raise bad_request('Invalid parameter values: send exactly one action, "os-stop" or "os-start".')
    action = actions[0]
    option = data[action]
    if not isinstance(option, dict):
        raise bad_request(f"Invalid parameter values: {action} must be an object.")
    servers = option.get("servers")
    if (
        not isinstance(servers, list)
        or not servers
        or not all(isinstance(s, dict) and isinstance(s.get("id"), str) and s["id"] for s in servers)
    ):
        raise bad_request(
            f'Invalid parameter values: {action}.servers must be a non-empty list of {{"id": "<server id>"}}.'
        )
    if len(servers) > 1000:
        raise bad_request("Invalid parameter values: at most 1000 servers per request.")
    stop_type = option.get("type", "SOFT") if action == "os-stop" else "SOFT"
    if stop_type not in ("SOFT", "HARD"):
        raise bad_request("Invalid parameter values: os-stop.type must be SOFT or HARD.")
    return ServerAction(action, [s["id"] for s in servers], hard=stop_type == "HARD")


def int_param(query: Mapping[str, str], name: str, default: int, *, low: int, high: int, code: str = "Ecs.0005") -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"Invalid parameter values: {name} must be an integer.", code) from None
    if not low <= value <= high:
        raise bad_request(f"Invalid parameter values: {name} must be between {low} and {high}.", code)
    return value
