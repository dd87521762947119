"""The change request: its states, the allowed moves between them, and the record the approval covers.

Pure data: the store persists it, the tracker drives it, Slack shows it. There is deliberately no password field —
a password waits encrypted in the store's secrets table and never rides along with the request.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator


class RequestState(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    STOPPING = "stopping"
    BACKING_UP = "backing_up"
    SUBMITTING = "submitting"
    RUNNING = "running"
    RECONCILING = "reconciling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


S = RequestState
TRANSITIONS: Mapping[RequestState, frozenset[RequestState]] = {
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.CANCELLED, S.EXPIRED}),
    S.APPROVED: frozenset({S.STOPPING, S.BACKING_UP, S.SUBMITTING, S.CANCELLED, S.FAILED}),
    S.STOPPING: frozenset({S.BACKING_UP, S.SUBMITTING, S.FAILED, S.CANCELLED}),
    # No cancel while the image is made: the server is busy until IMS ends the job either way.
    S.BACKING_UP: frozenset({S.SUBMITTING, S.FAILED}),
    S.SUBMITTING: frozenset({S.RUNNING, S.RECONCILING, S.FAILED}),
    S.RECONCILING: frozenset({S.RUNNING, S.SUCCEEDED, S.FAILED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}
TERMINAL_STATES: frozenset[RequestState] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
LIVE_STATES: frozenset[RequestState] = frozenset(RequestState) - TERMINAL_STATES
del S


def can_transition(current: RequestState | str, to: RequestState | str) -> bool:
    try:
        return RequestState(to) in TRANSITIONS[RequestState(current)]
    except ValueError:
        return False


class InvalidTransition(ValueError):
    """A move the state machine forbids: a bug in the caller, not a lost race."""

    def __init__(self, current: RequestState | str, to: RequestState | str) -> None:
        self.current = str(current)
        self.to = str(to)
        super().__init__(f"a change request cannot go from {self.current} to {self.to}")


class LoginMethod(StrEnum):
    KEYPAIR = "keypair"
    PASSWORD = "password"


class StopType(StrEnum):
    SOFT = "SOFT"
    HARD = "HARD"


# No 0/O, 1/I/L: ids are read aloud and typed back into `/changeos cancel`.
ID_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
ID_PATTERN = re.compile(rf"^CR-[{ID_ALPHABET}]{{6}}$")


def new_request_id() -> str:
    return "CR-" + "".join(secrets.choice(ID_ALPHABET) for _ in range(6))


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware_utc(value: datetime | None) -> datetime | None:
    """Naive datetimes are refused: a silent local-time guess would shift every deadline."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetimes must carry a time zone (UTC)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_aware_utc)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class ChangeRequest(BaseModel):
    """One request to change one server's OS, from the slash command to the final job result."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    id: str = Field(default_factory=new_request_id, pattern=ID_PATTERN.pattern)
    state: RequestState = RequestState.PENDING_APPROVAL
    created_at: UtcDatetime = Field(default_factory=utcnow)
    updated_at: UtcDatetime = Field(default_factory=utcnow)

    requester: str = Field(min_length=1)
    origin_channel: str = Field(min_length=1)

    server_id: str = Field(min_length=1)
    server_name: str = ""
    server_status: str = ""
    current_image_id: str | None = None
    current_image_name: str | None = None

    target_image_id: str = Field(min_length=1)
    target_image_name: str = ""
    target_os_type: str = "Linux"
    cloud_init: bool = False

    login: LoginMethod = LoginMethod.KEYPAIR
    keyname: str | None = None
    has_password: bool = False
    stop_first: bool = False
    stop_type: StopType = StopType.SOFT

    reason: Reason
    ticket: str | None = None
    notify_channels: list[str] = Field(default_factory=list)
    checklist: list[str] = Field(default_factory=list)  # the plan's checks (Check.encode) as approvers see them

    approvals_channel: str = Field(min_length=1)
    approvals_required: int = Field(default=1, ge=1)
    approvals: list[str] = Field(default_factory=list)
    expires_at: UtcDatetime | None = None
    decided_by: str | None = None
    decision_note: str | None = None

    approval_ts: str | None = None
    status_channel: str | None = None
    status_ts: str | None = None

    stop_job_id: str | None = None
    job_id: str | None = None
    # Written just before the stop / change-OS POST: after a crash they say "this may have reached the cloud".
    stop_sent_at: UtcDatetime | None = None
    submit_sent_at: UtcDatetime | None = None
    submitted_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    deadline_at: UtcDatetime | None = None
    overdue: bool = False
    error_code: str | None = None
    fail_reason: str | None = None
    result: str | None = None

    next_poll_at: float | None = None
    poll_failures: int = Field(default=0, ge=0)
    job_status: str | None = None
    job_progress: str | None = None

    # The backup (an IMS image of the system disk) taken in `backing_up`, before anything destructive.
    backup_wanted: bool = False
    backup_restart: bool = True  # start the server again when the backup fails and the bot had stopped it
    backup_image_name: str | None = None  # chosen before the POST: how the image is found again after a crash
    backup_job_id: str | None = None
    backup_image_id: str | None = None  # set once the image is active: the backup exists
    backup_sent_at: UtcDatetime | None = None  # written just before the create POST, like submit_sent_at
    backup_done_at: UtcDatetime | None = None
    backup_failure: str | None = None  # the backup failed; said in the final message once the server is started
    rollback_of: str | None = Field(default=None, pattern=ID_PATTERN.pattern)  # the request whose backup this restores
    # A fleet's child: "{rollout_id}:{server_id}" (unique), so a restarted rollout finds the request it made.
    fleet_key: str | None = None

    # The last state whose Slack messages landed; differs from `state` while people have not been told yet.
    notified_state: RequestState | None = None

    @field_validator("ticket", "keyname", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @model_validator(mode="after")
    def _login_is_consistent(self) -> ChangeRequest:
        if self.login is LoginMethod.KEYPAIR and not self.keyname:
            raise ValueError("a key pair login needs a key pair name")
        if self.login is LoginMethod.PASSWORD and self.keyname:
            raise ValueError("a password login cannot also name a key pair (the cloud accepts only one)")
        return self

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def approved_parameters(self) -> dict[str, Any]:
        """Exactly what an approver agrees to; anything else may change without a new approval.

        `backup` appears only when wanted, so requests without one keep the fingerprint they always had."""
        backup = {"backup": True} if self.backup_wanted else {}
        return {
            **backup,
            "server_id": self.server_id,
            "target_image_id": self.target_image_id,
            "login": self.login.value,
            "keyname": self.keyname,
            "has_password": self.has_password,
            "stop_first": self.stop_first,
            "stop_type": self.stop_type.value,
        }

    def fingerprint(self) -> str:
        """Short stable hash of the approved parameters, shown on the cards so people can compare at a glance."""
        canonical = json.dumps(self.approved_parameters(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        return f"{digest[:4]}-{digest[4:8]}"

    def summary(self) -> str:
        server = self.server_name or self.server_id
        image = self.target_image_name or self.target_image_id
        return f"{self.id} · {server} → {image} · {self.state.value.replace('_', ' ')} · by <@{self.requester}>"


class AuditEvent(BaseModel):
    """One append-only line of the request's history."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    at: UtcDatetime
    actor: str
    action: str
    from_state: RequestState | None = None
    to_state: RequestState | None = None
    detail: str = ""
