"""Typed errors of the cloud client, each with a hint a person can act on.

`str(err)` is a one-line summary for Slack and logs; it carries the cloud's code, message and request id, never a
request body, header or secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_MAX_MESSAGE = 500

GENERIC_HINT = (
    "Check the error code and message above; if it persists, give the request id to your cloud administrator "
    "or Huawei Cloud support."
)

_HINTS: dict[str, str] = {
    "Ecs.0100": "The server is not in a state that allows this. Stop it (or wait until its current task ends) "
    "and try again.",
    "Ecs.0105": "The server has no system disk. Attach a system disk in the console before changing its OS.",
    "Ecs.0605": "The server is locked. Ask whoever locked it (or an administrator) to unlock it, then try again.",
    "Ecs.0314": "The key pair does not exist. Refresh the key pair list and choose a key pair that exists in this "
    "region and project.",
    "Ecs.0031": "The image does not exist. Check the image ID or name, and that it is visible in this region and "
    "project.",
    "Ecs.0032": "The image is not active yet. Wait until its status is 'active', or pick another image.",
    "Ecs.0114": "The server does not exist. Check the server ID or name, and the region and project.",
    "Ecs.0614": "The server does not exist. Check the server ID or name, and the region and project.",
    "Ecs.0011": "The password is too weak. Use 8-26 characters with at least three of upper case, lower case, "
    "digits and special characters, and not the user name.",
    "Ecs.0603": "Another operation is running on this server. Wait about a minute and try again.",
    "Ecs.0005": "The cloud rejected the request parameters. Check the image, key pair and password options.",
    "Ecs.0003": "You are not allowed to do this: check the account's IAM permissions, balance and that the account "
    "is not frozen.",
    "Ecs.0007": "The image's attributes do not allow this change (for example its disk size or type). Pick another "
    "image.",
    "Common.1503": "The cloud is throttling requests. Wait a moment and try again.",
    "Common.0024": "The cloud's flow limit was exceeded. Wait a moment and try again.",
    "Common.0011": "The cloud could not find this job (job IDs expire a day after they end). Check the server's "
    "state instead.",
    "Common.0013": "The credentials were rejected. Check HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK.",
    "Common.0018": "The project ID does not match the credentials. Check HUAWEICLOUD_PROJECT_ID for this region.",
    "Ecs.0023": "The project ID does not match the credentials. Check HUAWEICLOUD_PROJECT_ID for this region.",
    "APIGW.0308": "The API gateway is throttling requests. Wait a moment and try again.",
    "APIGW.0301": "The API gateway rejected the signature. Check HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK and that the "
    "bot's clock is correct.",
    "APIGW.0101": "The API does not exist at this endpoint. Check ECS_ENDPOINT, IMS_ENDPOINT, EVS_ENDPOINT and "
    "HUAWEICLOUD_REGION.",
    "Ecs.1002": "The cloud timed out talking to the compute service. Check the server in the console (it may need "
    "a start or a retry of the change), then submit a new request.",
    "IMG.0002": "The backup image's name is too long (128 characters at most). This is a bug of the bot: report it.",
    "IMG.0003": "The backup image's name has characters IMS refuses. This is a bug of the bot: report it.",
    "IMG.0005": "The server does not exist any more. Check the server ID, region and project.",
    "IMG.0008": "IMS images only a stopped server. Stop it (or let the plan stop it) and try again.",
    "IMG.0009": "An image with this name already exists: it may be this request's own backup. The bot looks for it.",
    "IMG.0010": "The server has a task in progress (perhaps another image). Wait until it ends and try again.",
    "IMG.0015": "The private image quota is used up. Delete private images you no longer need (for example old "
    "backups: `ecsbot backups prune`) or ask Huawei Cloud for a higher quota.",
    "IMG.0023": "IMS no longer knows this job (job records expire). The bot looks for the image by its name.",
    "IMG.0027": "The image does not exist (any more). Check the image ID.",
    "IMG.0060": "IMS is throttling requests. Wait a moment and try again.",
    "IMG.0090": "The image is still being created and cannot be deleted yet. Try again when it is active.",
    "IMG.0092": "Only the image's owner may delete it; the bot deletes only its own backups.",
    "IMG.0094": "A public image cannot be deleted.",
    "IMG.0111": "The system disk is larger than 1 TB: IMS can only make a full-ECS image of this server.",
    "IMG.0119": "The server has no system disk, so there is nothing to back up.",
    "Pdp.0001": "IAM policy does not allow this action. Ask an administrator to grant the bot's user the ECS "
    "permission (for example ecs:cloudServers:changeOS).",
}


def hint_for(code: str | None) -> str:
    """A sentence a person can act on for a Huawei Cloud error code; a generic one for codes we do not know."""
    return _HINTS.get((code or "").strip(), GENERIC_HINT)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


class CloudError(Exception):
    """Base of every error the cloud client raises."""

    hint: str = GENERIC_HINT


class CloudAPIError(CloudError):
    """The cloud answered with an error (HTTP >= 400, or a 2xx that says it refused)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = _clip(message)
        self.request_id = request_id
        self.hint = hint_for(code)
        super().__init__(self.status, self.code, self.message, self.request_id)

    def __str__(self) -> str:
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"HTTP {self.status} {self.code}: {self.message}{rid}. {self.hint}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r}, "
            f"request_id={self.request_id!r})"
        )


class ThrottledError(CloudAPIError):
    """HTTP 429 (or Common.0024): the caller decides when to try again, at the earliest after `retry_after` s."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, message, request_id)
        self.retry_after = retry_after
        if code not in _HINTS:
            self.hint = _HINTS["Common.1503"]

    def __str__(self) -> str:
        after = f" Retry after {self.retry_after:g} s." if self.retry_after is not None else ""
        return super().__str__() + after


class CloudUnreachableError(CloudError):
    """No answer from the cloud (refused, timed out, dropped) even after retries; nothing is known to have happened
    for a read, and nothing was sent for a write."""

    hint = (
        "The bot could not reach Huawei Cloud. Check the endpoint settings and the network, then try again "
        "(nothing was changed)."
    )

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = _clip(reason)
        super().__init__(operation, self.reason)

    def __str__(self) -> str:
        return f"Could not reach the cloud for {self.operation}: {self.reason}. {self.hint}"


class OutcomeUnknownError(CloudError):
    """A write may have reached the cloud but no answer came: read the server (and its jobs) before doing anything
    again, never resend blindly."""

    hint = (
        "The request may or may not have been carried out. Check the server's status and tasks in the console "
        "before trying again."
    )

    def __init__(self, operation: str, server_id: str, reason: str = "no answer") -> None:
        self.operation = operation
        self.server_id = server_id
        self.reason = _clip(reason)
        super().__init__(operation, server_id, self.reason)

    def __str__(self) -> str:
        return f"Outcome of {self.operation} on server {self.server_id} is unknown ({self.reason}). {self.hint}"


def _find_code_message(body: Mapping[str, Any]) -> tuple[Any, Any]:
    """The SDK's DefaultExceptionHandler: flat pairs first, else recurse into every dict value; the last one wins."""
    for code_key, msg_key in (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message")):
        if code_key in body and msg_key in body:
            return body.get(code_key), body.get(msg_key)
    code: Any = None
    message: Any = None
    for value in body.values():
        if isinstance(value, Mapping):
            found_code, found_msg = _find_code_message(value)
            if found_code is not None or found_msg is not None:
                code, message = found_code, found_msg
    return code, message


def parse_error_fields(status: int, body: bytes) -> tuple[str, str]:
    """(code, message) from any of the cloud's error shapes; status and raw text when the body names none."""
    text = body.decode("utf-8", errors="replace")
    code: Any = None
    message: Any = None
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    if isinstance(data, Mapping):
        code, message = _find_code_message(data)
    code_text = str(code) if code not in (None, "") else str(status)
    message_text = str(message) if message not in (None, "") else (text.strip() or f"HTTP {status}")
    return code_text, message_text


def request_id_from(headers: Mapping[str, str]) -> str | None:
    for name in ("X-Request-Id", "x-request-id"):
        value = headers.get(name)
        if value:
            return value
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header; HTTP dates and junk are ignored (None)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_response(status: int, body: bytes, headers: Mapping[str, str]) -> CloudAPIError:
    """The typed error for an error answer: ThrottledError for 429 and Common.0024, else CloudAPIError."""
    code, message = parse_error_fields(status, body)
    request_id = request_id_from(headers)
    if status == 429 or code in ("Common.0024", "Common.1503", "APIGW.0308", "IMG.0060"):
        return ThrottledError(status, code, message, request_id, parse_retry_after(headers.get("Retry-After")))
    return CloudAPIError(status, code, message, request_id)
