"""The store's interface: what every engine (SQLite, PostgreSQL) promises, and the errors it raises.

Every method is a coroutine, so no engine ever blocks the event loop: a busy database makes one caller wait, never
every Slack ack. The guarantees are the engine's, not the callers':

- a transition is one transaction: an UPDATE guarded by the expected states plus exactly one audit row; a caller
  that loses a race gets `None`, never an exception;
- at most one live request per server (a partial unique index), `ServerBusyError` otherwise;
- secrets are ciphertext only (`bytes` from the SecretBox), never plaintext;
- a token or a sign-in state is used up atomically, once;
- a lease has one owner at a time, until its deadline.

A call that is cancelled while its transaction runs may still commit: like an answer lost on the network, the
caller reads the state again rather than assuming either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.domain.fleet import Audit as RolloutAudit
from bot.domain.fleet import Rollout
from bot.domain.request import AuditEvent, ChangeRequest, RequestState

__all__ = [
    "AuditEntry",
    "Pruned",
    "RequestNotFound",
    "RolloutAudit",
    "ServerBusyError",
    "Store",
    "StoreError",
    "StoreUnavailable",
]

EXPORT_PAGE = 1000  # audit rows per round trip when streaming: memory stays flat whatever the trail's length
PRUNE_BATCH = 500  # requests deleted per transaction, so retention never holds the write lock for long
PRUNED_ACTION, PRUNED_ACTOR = "pruned", "retention"


class StoreError(Exception):
    pass


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the work; nothing was changed that the caller can count on."""


class ServerBusyError(StoreError):
    """The server already has a live request; at most one OS change may be in flight per server."""

    def __init__(self, live_request_id: str, server_id: str = "") -> None:
        self.live_request_id = live_request_id
        self.server_id = server_id
        super().__init__(
            f"Server {server_id or ''} already has a live change request, {live_request_id}. "
            f"Wait for it to end or cancel it (/changeos cancel {live_request_id})."
        )


class RequestNotFound(StoreError, LookupError):
    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        super().__init__(f"No change request {request_id}.")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit trail as exported: `seq` orders the whole trail (and lets a reader resume after it)."""

    seq: int
    request_id: str
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one retention run removed: requests ended before `before` and their audit rows (a summary row on each
    server's newest request says so, and is kept), and expired secrets, tokens and page sessions."""

    before: datetime
    requests: int = 0
    audit_rows: int = 0
    expired: int = 0


class Store(Protocol):
    """Requests and their audit trail, encrypted secrets, one-time tokens, password page sessions, leases."""

    @property
    def engine(self) -> str:
        """ "sqlite" or "postgresql", for health and logs."""
        ...

    @property
    def problem(self) -> str | None:
        """None while the database answered the last call; else why it did not, in words for people."""
        ...

    async def ping(self) -> None:
        """A round trip to the database; `StoreUnavailable` when there is none."""
        ...

    async def aclose(self) -> None: ...

    # --- requests ----------------------------------------------------------------------------------------------------

    async def create(self, req: ChangeRequest, *, actor: str) -> ChangeRequest:
        """Store a new request with its "created" audit line; `ServerBusyError` if its server has a live one."""
        ...

    async def get(self, request_id: str) -> ChangeRequest | None: ...

    async def live_for_server(self, server_id: str) -> ChangeRequest | None: ...

    async def in_states(self, *states: RequestState | str) -> list[ChangeRequest]:
        """Oldest first (created_at, id)."""
        ...

    async def live(self) -> list[ChangeRequest]: ...

    async def count_live(self) -> int:
        """How many requests are live, without reading them (for /healthz, which is polled)."""
        ...

    async def needs_sync(self) -> list[ChangeRequest]:
        """Requests whose latest state people have not been told about (the presenter's to-do list)."""
        ...

    async def recent(self, limit: int = 20) -> list[ChangeRequest]:
        """Newest first."""
        ...

    async def latest_for_server(self, server_id: str) -> ChangeRequest | None:
        """The server's newest request, in any state (retention keeps the last backup of a server whose last change
        failed)."""
        ...

    async def due_for_expiry(self, now: datetime | None = None) -> list[ChangeRequest]: ...

    async def transition(
        self,
        request_id: str,
        *,
        to: RequestState | str,
        expected: RequestState | str | Iterable[RequestState | str],
        actor: str,
        detail: str = "",
        **fields: Any,
    ) -> ChangeRequest | None:
        """Move the request to `to` if it is in one of `expected`, with its audit line; None when it is not.

        `fields` are set in the same UPDATE. Entering a terminal state stamps `finished_at` unless given.
        `InvalidTransition` only for a move the state machine never allows, which is a bug in the caller.
        """
        ...

    async def update(self, request_id: str, **fields: Any) -> ChangeRequest:
        """Set non-state fields (message ts, poll schedule, job progress). Not audited; `RequestNotFound`."""
        ...

    async def mark_sent(
        self, request_id: str, field: str, *, state: RequestState, at: datetime, **also: Any
    ) -> ChangeRequest | None:
        """Stamp `field` (stop_sent_at, backup_sent_at or submit_sent_at), with `also` in the same write, just before
        the POST it brackets, only while the request is still in `state` with the field unset: the one write that
        decides which process may post. None when another process got there first (it posts, or already did; this
        one must not)."""
        ...

    async def add_approval(self, request_id: str, user: str, *, actor: str) -> ChangeRequest | None:
        """Append `user` to the approvals while pending; None if not pending or `user` already approved."""
        ...

    async def record(self, request_id: str, *, actor: str, action: str, detail: str = "") -> None:
        """An audit event that is not a transition, e.g. a refused click; `RequestNotFound`."""
        ...

    async def audit(self, request_id: str) -> list[AuditEvent]: ...

    # --- fleets -------------------------------------------------------------------------------------------------------

    async def create_child(self, req: ChangeRequest, *, actor: str) -> tuple[ChangeRequest, bool]:
        """A fleet's child request by its `fleet_key`: the one stored before (and False), or `req` stored now (and
        True). A repeated start never makes a second request; `ServerBusyError` when the server has another live one."""
        ...

    async def child(self, fleet_key: str) -> ChangeRequest | None: ...

    async def create_rollout(self, rollout: Rollout, audit: Sequence[RolloutAudit] = ()) -> None:
        """Store a new rollout (its version as given) with its first audit lines."""
        ...

    async def get_rollout(self, rollout_id: str) -> Rollout | None: ...

    async def save_rollout(
        self, rollout: Rollout, *, expected_version: int, audit: Sequence[RolloutAudit] = ()
    ) -> bool:
        """Replace the rollout only while the stored one has `expected_version` (optimistic: the version read), with
        its audit lines, in one transaction. False when another writer saved first: read it again and step again."""
        ...

    async def record_rollout(self, rollout_id: str, audit: Sequence[RolloutAudit]) -> None:
        """Audit lines that change nothing (a refused click)."""
        ...

    async def unfinished_rollouts(self) -> list[Rollout]:
        """Rollouts not yet ended, oldest first: each gets `Recover()` when the tracker lease is taken."""
        ...

    async def rollout_audit(self, rollout_id: str) -> list[AuditEvent]: ...


    # --- history, export, retention ----------------------------------------------------------------------------------

    async def history(
        self,
        *,
        server: str | None = None,
        requester: str | None = None,
        since: datetime | None = None,
        limit: int = 20,
    ) -> list[ChangeRequest]:
        """Newest first: requests created at or after `since`, of one server (its id, or its name in any case) and
        one requester when given."""
        ...

    def audit_since(self, since: datetime | None = None, *, page: int = EXPORT_PAGE) -> AsyncIterator[AuditEntry]:
        """The whole audit trail from `since` on, oldest first (by seq), read `page` rows at a time: constant memory."""
        ...

    async def prune(self, before: datetime, *, batch: int = PRUNE_BATCH) -> Pruned:
        """Retention: delete requests that ended before `before` with their audit rows, except each server's newest
        request, which gets an audit row (action "pruned") naming what went; and purge expired secrets."""
        ...

    # --- secrets (ciphertext only) -----------------------------------------------------------------------------------

    async def put_secret(
        self,
        key: str,
        ciphertext: bytes,
        *,
        expires_at: datetime | None,
        set_by: str | None = None,
        set_via: str | None = None,
    ) -> None: ...

    async def secret_info(self, key: str) -> dict[str, Any] | None:
        """created_at, expires_at, set_by, set_via of a live secret; never the ciphertext."""
        ...

    async def get_secret(self, key: str) -> bytes | None:
        """The ciphertext, or None when missing or expired."""
        ...

    async def delete_secret(self, key: str) -> bool: ...

    async def purge_expired(self, now: datetime | None = None) -> int:
        """Housekeeping: drop expired secrets, tokens and page sessions. Returns how many rows went."""
        ...

    async def reencrypt_secrets(self, rotate: Callable[[bytes], bytes | None]) -> tuple[int, int]:
        """Replace each stored ciphertext by `rotate(ciphertext)` in one transaction (None: already current, left
        as is); (re-encrypted, unchanged). An exception from `rotate` rolls every change back."""
        ...

    # --- leases ------------------------------------------------------------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, ttl_s: float, now: float) -> bool:
        """Take or renew the lease; True if it was free, expired, or already `owner`'s."""
        ...

    async def release_lease(self, name: str, owner: str) -> None:
        """End `owner`'s lease now (it expires; the row and its epoch stay). No effect on another owner's."""
        ...

    async def lease_owner(self, name: str, now: float) -> str | None: ...

    async def lease_epoch(self, name: str) -> int:
        """How many owners the lease has had: it grows by one at each takeover (0: never taken)."""
        ...

    # --- one-time tokens ---------------------------------------------------------------------------------------------

    async def put_token(
        self, token_hash: str, *, purpose: str, subject: str, user_id: str, expires_at: datetime
    ) -> None: ...

    async def peek_token(
        self, token_hash: str, *, user_id: str, now: datetime | None = None
    ) -> dict[str, Any] | None: ...

    async def consume_token(
        self, token_hash: str, *, user_id: str, now: datetime | None = None
    ) -> dict[str, Any] | None:
        """Use the token up, atomically; None if unknown, used, expired or another user's."""
        ...

    async def revoke_subject(self, purpose: str, subject_prefix: str) -> list[str]:
        """Delete every token of `purpose` whose subject starts with `subject_prefix`; their hashes."""
        ...

    # --- password page sessions --------------------------------------------------------------------------------------

    async def put_session(
        self, sid_hash: str, *, draft_id: str, os_type: str, user_id: str, expires_at: datetime
    ) -> None: ...

    async def get_session(self, sid_hash: str, now: datetime | None = None) -> dict[str, Any] | None: ...

    async def session_by_state(self, state_hash: str, now: datetime | None = None) -> dict[str, Any] | None: ...

    async def start_signin(self, sid_hash: str, *, state_hash: str, binding_hash: str, nonce: str) -> bool: ...

    async def finish_signin(self, sid_hash: str, *, state_hash: str, user_id: str | None) -> bool:
        """Use the state up (once) and record who signed in; None as user ends the session instead."""
        ...

    async def revoke_sessions(self, draft_id: str) -> list[str]: ...

    async def put_secret_for_session(
        self,
        sid_hash: str,
        key: str,
        ciphertext: bytes,
        *,
        expires_at: datetime,
        set_by: str,
        set_via: str,
        now: datetime | None = None,
    ) -> bool:
        """Store a draft's password only while the page session that sent it is alive, and end that session,
        in one transaction."""
        ...
