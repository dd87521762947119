"""What people can do to a change request (submit, approve, reject, cancel), with the policy applied.

Slack-free on purpose: listeners translate clicks into these calls and outcomes into messages, and the tests can
reason about decisions without a workspace. Every move goes through the store's guarded transition, so two clicks
or two approvers can never move a request twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import SecretStr

from bot.domain.policy import Policy
from bot.domain.request import ChangeRequest, LoginMethod, RequestState
from bot.secretbox import SecretBox
from bot.store import Store

PASSWORD_TTL_MINUTES = 24 * 60  # a pending password never outlives a day, whatever the policy's expiry says

CANCELLABLE = (RequestState.PENDING_APPROVAL, RequestState.APPROVED)


class PasswordUnavailable(RuntimeError):
    """Password logins need ECSBOT_SECRET_KEY: without it a password could only be kept in plaintext."""

    def __init__(self) -> None:
        super().__init__(
            "Admin-password logins are turned off: the bot has no ECSBOT_SECRET_KEY to encrypt the password while it "
            "waits for approval. Use a key pair, or ask the bot's admin to set ECSBOT_SECRET_KEY."
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """The request after an action, or why nothing happened (a sentence for the person who clicked)."""

    request: ChangeRequest | None
    refused: str | None = None
    changed: bool = False


def draft_secret_key(draft_id: str) -> str:
    return f"draft:{draft_id}"


def request_secret_key(request_id: str) -> str:
    return f"request:{request_id}"


class Workflow:
    def __init__(
        self,
        store: Store,
        policy: Policy,
        secretbox: SecretBox | None,
        *,
        wake: Callable[[], None] = lambda: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.policy = policy
        self.secretbox = secretbox
        self.wake = wake  # the tracker's, once it exists: approved work starts at once
        self._now = now

    @property
    def passwords_enabled(self) -> bool:
        return self.secretbox is not None

    # ------------------------------------------------------------------ passwords

    def keep_draft_password(self, draft_id: str, password: SecretStr) -> None:
        """The secure page's result: encrypted at once, keyed by the modal's draft until it becomes a request."""
        box = self._box()
        expires = self._now().timestamp() + 15 * 60
        self.store.put_secret(
            draft_secret_key(draft_id), box.encrypt(password), expires_at=datetime.fromtimestamp(expires, UTC)
        )

    def draft_has_password(self, draft_id: str) -> bool:
        return self.store.get_secret(draft_secret_key(draft_id)) is not None

    def draft_password(self, draft_id: str) -> SecretStr | None:
        blob = self.store.get_secret(draft_secret_key(draft_id))
        return None if blob is None else self._box().decrypt(blob)

    def password_for(self, request_id: str) -> SecretStr | None:
        blob = self.store.get_secret(request_secret_key(request_id))
        return None if blob is None else self._box().decrypt(blob)

    def forget_password(self, request_id: str) -> None:
        self.store.delete_secret(request_secret_key(request_id))

    def _box(self) -> SecretBox:
        if self.secretbox is None:
            raise PasswordUnavailable()
        return self.secretbox

    # ------------------------------------------------------------------ actions

    def submit(
        self,
        request: ChangeRequest,
        *,
        password: SecretStr | None = None,
        draft_id: str | None = None,
        self_service: bool = False,
    ) -> ChangeRequest:
        """Store a new request (ServerBusyError when the server already has a live one) with its password."""
        if request.login is LoginMethod.PASSWORD:
            box = self._box()
            ciphertext = box.encrypt(password) if password is not None else None
            if ciphertext is None and draft_id is not None:
                ciphertext = self.store.get_secret(draft_secret_key(draft_id))
            if ciphertext is None:
                raise ValueError("No password was set for this request. Set it, then submit again.")
        stored = self.store.create(request, actor=request.requester)
        if request.login is LoginMethod.PASSWORD:
            expires = datetime.fromtimestamp(self._now().timestamp() + PASSWORD_TTL_MINUTES * 60, UTC)
            self.store.put_secret(request_secret_key(stored.id), ciphertext, expires_at=expires)  # type: ignore[arg-type]
            if draft_id is not None:
                self.store.delete_secret(draft_secret_key(draft_id))
        if self_service:
            approved = self.store.transition(
                stored.id,
                to=RequestState.APPROVED,
                expected=RequestState.PENDING_APPROVAL,
                actor=request.requester,
                detail="self-service: the policy allows this requester to proceed without approval",
                decided_by=request.requester,
            )
            if approved is not None:
                self.wake()
                return approved
        return stored

    def approve(self, request_id: str, user: str, groups: Iterable[str]) -> Outcome:
        request = self.store.get(request_id)
        if request is None:
            return Outcome(None, f"There is no change request {request_id}.")
        if request.state is not RequestState.PENDING_APPROVAL:
            return Outcome(request, f"{request_id} is already {request.state.value.replace('_', ' ')}.")
        decision = self.policy.may_approve(user, set(groups), request)
        if not decision.allowed:
            self.store.record(request_id, actor=user, action="approve_refused", detail=decision.reason)
            return Outcome(request, decision.reason)
        counted = self.store.add_approval(request_id, user, actor=user)
        if counted is None:
            current = self.store.get(request_id)
            return Outcome(current, f"Your approval of {request_id} was not counted: it is no longer pending.")
        if len(counted.approvals) < counted.approvals_required:
            return Outcome(counted, None, changed=True)
        approved = self.store.transition(
            request_id,
            to=RequestState.APPROVED,
            expected=RequestState.PENDING_APPROVAL,
            actor=user,
            detail=f"approvals {len(counted.approvals)}/{counted.approvals_required}",
            decided_by=user,
        )
        if approved is None:
            return Outcome(self.store.get(request_id), f"{request_id} changed while you clicked; nothing was done.")
        self.wake()
        return Outcome(approved, None, changed=True)

    def reject(self, request_id: str, user: str, groups: Iterable[str], note: str | None) -> Outcome:
        request = self.store.get(request_id)
        if request is None:
            return Outcome(None, f"There is no change request {request_id}.")
        decision = self.policy.may_approve(user, set(groups), request)
        if not decision.allowed:
            self.store.record(request_id, actor=user, action="reject_refused", detail=decision.reason)
            hint = " To withdraw your own request, use Cancel." if user == request.requester else ""
            return Outcome(request, decision.reason + hint)
        return self._close(
            request_id,
            to=RequestState.REJECTED,
            expected=(RequestState.PENDING_APPROVAL,),
            actor=user,
            detail=note or "",
            too_late="it can no longer be rejected",
            decision_note=note or None,
        )

    def cancel(self, request_id: str, user: str) -> Outcome:
        request = self.store.get(request_id)
        if request is None:
            return Outcome(None, f"There is no change request {request_id}. `/changeos list` shows the live ones.")
        if user != request.requester:
            self.store.record(request_id, actor=user, action="cancel_refused", detail="not the requester")
            return Outcome(request, f"Only <@{request.requester}>, who asked for {request_id}, can cancel it.")
        return self._close(
            request_id,
            to=RequestState.CANCELLED,
            expected=CANCELLABLE,
            actor=user,
            detail="cancelled by the requester",
            too_late="it is too late to cancel it",
        )

    def _close(
        self,
        request_id: str,
        *,
        to: RequestState,
        expected: Iterable[RequestState],
        actor: str,
        detail: str,
        too_late: str,
        **fields: object,
    ) -> Outcome:
        """A person ends a request before it reached the cloud: one guarded move, and its password goes."""
        closed = self.store.transition(
            request_id,
            to=to,
            expected=expected,
            actor=actor,
            detail=detail,
            decided_by=actor,
            finished_at=self._now(),
            **fields,
        )
        if closed is None:
            current = self.store.get(request_id)
            state = current.state.value.replace("_", " ") if current else "gone"
            return Outcome(current, f"{request_id} is {state}: {too_late}.")
        self.forget_password(request_id)
        return Outcome(closed, None, changed=True)

    def expire_due(self) -> list[ChangeRequest]:
        expired: list[ChangeRequest] = []
        for request in self.store.due_for_expiry(self._now()):
            moved = self.store.transition(
                request.id,
                to=RequestState.EXPIRED,
                expected=RequestState.PENDING_APPROVAL,
                actor="bot",
                detail="nobody approved it before it expired",
                finished_at=self._now(),
            )
            if moved is not None:
                self.forget_password(request.id)
                expired.append(moved)
        return expired
