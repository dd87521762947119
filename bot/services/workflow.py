"""What people can do to a change request (submit, approve, reject, cancel), with the policy applied.

Slack-free on purpose: listeners translate clicks into these calls and outcomes into messages, and the tests can
reason about decisions without a workspace. Every move goes through the store's guarded transition, so two clicks
or two approvers can never move a request twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from bot.domain.policy import Policy
from bot.domain.request import ChangeRequest, LoginMethod, RequestState
from bot.secretbox import SecretBox
from bot.store import Store

log = logging.getLogger(__name__)

PASSWORD_TTL_MINUTES = 24 * 60  # a pending password never outlives a day, whatever the policy's expiry says
DRAFT_PASSWORD_TTL = timedelta(minutes=15)  # ECSBOT_DRAFT_PASSWORD_MINUTES: a page's password waiting for submit
TOKEN_PURPOSE = "password"  # the secure page's link tokens; their subject is "<draft id>|<os type>"
ENDED_MEMORY = timedelta(hours=24)  # how long the bot can still say *why* an old link or draft no longer works

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


def link_secret_key(draft_id: str) -> str:
    """The draft's current unused link, encrypted, so a refreshed form shows it again instead of minting another."""
    return f"link:{draft_id}"


@dataclass(frozen=True, slots=True)
class DraftPassword:
    """Who set a draft's password, how, when, and until when it is kept (never the password)."""

    set_by: str
    set_via: str  # "slack-signin" (verified) | "link" (whoever held the link) | "modal"
    set_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class DraftEnd:
    """Why a draft's links stopped working, in words for the page; `final` once the form is gone for good."""

    message: str
    final: bool


RevokeHook = Callable[[str, list[str], DraftEnd], None]


class DraftClosed(RuntimeError):
    """The form was submitted or closed: nothing can be set on its draft any more."""


class Workflow:
    def __init__(
        self,
        store: Store,
        policy: Policy,
        secretbox: SecretBox | None,
        *,
        wake: Callable[[], None] = lambda: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        draft_password_ttl: timedelta = DRAFT_PASSWORD_TTL,
    ) -> None:
        self.store = store
        self.policy = policy
        self.secretbox = secretbox
        self.wake = wake  # the tracker's, once it exists: approved work starts at once
        self._now = now
        self.draft_password_ttl = draft_password_ttl
        self.revoke_hooks: list[RevokeHook] = []  # told (draft id, revoked token/session hashes, why) on revocation
        self._ended: dict[str, tuple[DraftEnd, datetime]] = {}  # draft id -> why it ended, when

    @property
    def passwords_enabled(self) -> bool:
        return self.secretbox is not None

    # ------------------------------------------------------------------ passwords

    async def keep_draft_password(
        self, draft_id: str, password: SecretStr, *, set_by: str, set_via: str, session: str | None = None
    ) -> bool:
        """The secure page's result: encrypted at once, keyed by the modal's draft until it becomes a request.

        With `session` (the page session's hash) it lands only while that session is alive, and uses it up; False
        when it was not (the draft was submitted, closed or expired meanwhile). `DraftClosed` for an ended draft.
        """
        if self.draft_ended(draft_id) is not None:
            raise DraftClosed(draft_id)
        box = self._box()
        key, blob = draft_secret_key(draft_id), box.encrypt(password)
        expires = self._now() + self.draft_password_ttl
        if session is None:
            await self.store.put_secret(key, blob, expires_at=expires, set_by=set_by, set_via=set_via)
            return True
        return await self.store.put_secret_for_session(
            session, key, blob, expires_at=expires, set_by=set_by, set_via=set_via, now=self._now()
        )

    async def draft_has_password(self, draft_id: str) -> bool:
        return await self.store.get_secret(draft_secret_key(draft_id)) is not None

    async def draft_password_info(self, draft_id: str) -> DraftPassword | None:
        info = await self.store.secret_info(draft_secret_key(draft_id))
        if info is None:
            return None
        return DraftPassword(
            set_by=info["set_by"] or "",
            set_via=info["set_via"] or "link",
            set_at=info["created_at"],
            expires_at=info["expires_at"] or self._now() + self.draft_password_ttl,
        )

    # ------------------------------------------------------------------ draft lifecycle

    def draft_ended(self, draft_id: str) -> DraftEnd | None:
        """Why this draft's form is gone (submitted or closed), or None while it is open."""
        ended = self._ended.get(draft_id)
        return ended[0] if ended is not None else None

    async def revoke_draft(self, draft_id: str, why: DraftEnd) -> list[str]:
        """Every link token and page session of the draft dies now; its unused link goes too."""
        subject = f"{draft_id}|"
        gone = await self.store.revoke_subject(TOKEN_PURPOSE, subject) + await self.store.revoke_sessions(draft_id)
        await self.store.delete_secret(link_secret_key(draft_id))
        for hook in self.revoke_hooks:
            try:
                hook(draft_id, gone, why)
            except Exception as exc:  # a listener's bug must not keep a token alive
                log.warning("revoke hook failed for draft %s: %s", draft_id, type(exc).__name__)
        return gone

    async def close_draft(self, draft_id: str, why: DraftEnd) -> None:
        """The form was submitted or closed: its links, sessions and any password still kept for it go, for good."""
        now = self._now()
        self._ended[draft_id] = (why, now)
        for old in [d for d, (_, at) in self._ended.items() if now - at > ENDED_MEMORY]:
            del self._ended[old]
        await self.revoke_draft(draft_id, why)
        await self.store.delete_secret(draft_secret_key(draft_id))

    async def expire_draft_password(self, draft_id: str) -> bool:
        """The stored password's time is up: it and every link of the draft go (the form then offers a new link).
        False when it was not due."""
        info = await self.store.secret_info(draft_secret_key(draft_id))
        if info is not None:
            return False
        minutes = f"{self.draft_password_ttl.total_seconds() / 60:g}"
        await self.revoke_draft(
            draft_id,
            DraftEnd(
                f"The password set for this form expired (it is kept {minutes} minutes until the form is submitted), "
                "and this link went with it. Go back to the Slack form: it now offers a fresh link.",
                final=False,
            ),
        )
        await self.store.delete_secret(draft_secret_key(draft_id))
        return True

    async def draft_password(self, draft_id: str) -> SecretStr | None:
        blob = await self.store.get_secret(draft_secret_key(draft_id))
        return None if blob is None else self._box().decrypt(blob)

    async def password_for(self, request_id: str) -> SecretStr | None:
        blob = await self.store.get_secret(request_secret_key(request_id))
        return None if blob is None else self._box().decrypt(blob)

    async def forget_password(self, request_id: str) -> None:
        await self.store.delete_secret(request_secret_key(request_id))

    def _box(self) -> SecretBox:
        if self.secretbox is None:
            raise PasswordUnavailable()
        return self.secretbox

    # ------------------------------------------------------------------ actions

    async def submit(
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
                ciphertext = await self.store.get_secret(draft_secret_key(draft_id))
            if ciphertext is None:
                raise ValueError("No password was set for this request. Set it, then submit again.")
        kept = await self.draft_password_info(draft_id) if draft_id is not None and password is None else None
        stored = await self.store.create(request, actor=request.requester)
        if request.rollback_of:
            await self._link_rollback(stored, request.rollback_of)
        if request.login is LoginMethod.PASSWORD:
            expires = datetime.fromtimestamp(self._now().timestamp() + PASSWORD_TTL_MINUTES * 60, UTC)
            await self.store.put_secret(request_secret_key(stored.id), ciphertext, expires_at=expires)  # type: ignore[arg-type]
            who = kept.set_by if kept and kept.set_by else request.requester
            await self.store.record(stored.id, actor=who, action="password_set", detail=_password_audit(kept, who))
        if draft_id is not None:
            await self.close_draft(
                draft_id,
                DraftEnd(
                    f"This form was already submitted: it became request {stored.id}, with the password set before "
                    f"it was submitted. A password set now could not reach it. To use another password, cancel "
                    f"{stored.id} (/changeos cancel {stored.id}) and run /changeos again.",
                    final=True,
                ),
            )
        if self_service:
            approved = await self.store.transition(
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

    async def _link_rollback(self, rollback: ChangeRequest, original_id: str) -> None:
        """Both audit trails name the other request."""
        image = rollback.target_image_name or rollback.target_image_id
        await self.store.record(
            rollback.id, actor=rollback.requester, action="rollback_of", detail=f"rolls back {original_id} to {image}"
        )
        detail = f"{rollback.id} rolls back to {image}"
        await self.store.record(original_id, actor=rollback.requester, action="rollback_requested", detail=detail)

    async def approve(self, request_id: str, user: str, groups: Iterable[str]) -> Outcome:
        request = await self.store.get(request_id)
        if request is None:
            return Outcome(None, f"There is no change request {request_id}.")
        if request.state is not RequestState.PENDING_APPROVAL:
            return Outcome(request, f"{request_id} is already {request.state.value.replace('_', ' ')}.")
        decision = self.policy.may_approve(user, set(groups), request)
        if not decision.allowed:
            await self.store.record(request_id, actor=user, action="approve_refused", detail=decision.reason)
            return Outcome(request, decision.reason)
        counted = await self.store.add_approval(request_id, user, actor=user)
        if counted is None:
            current = await self.store.get(request_id)
            return Outcome(current, f"Your approval of {request_id} was not counted: it is no longer pending.")
        if len(counted.approvals) < counted.approvals_required:
            return Outcome(counted, None, changed=True)
        approved = await self.store.transition(
            request_id,
            to=RequestState.APPROVED,
            expected=RequestState.PENDING_APPROVAL,
            actor=user,
            detail=f"approvals {len(counted.approvals)}/{counted.approvals_required}",
            decided_by=user,
        )
        if approved is None:
            current = await self.store.get(request_id)
            return Outcome(current, f"{request_id} changed while you clicked; nothing was done.")
        self.wake()
        return Outcome(approved, None, changed=True)

    async def reject(self, request_id: str, user: str, groups: Iterable[str], note: str | None) -> Outcome:
        request = await self.store.get(request_id)
        if request is None:
            return Outcome(None, f"There is no change request {request_id}.")
        decision = self.policy.may_approve(user, set(groups), request)
        if not decision.allowed:
            await self.store.record(request_id, actor=user, action="reject_refused", detail=decision.reason)
            hint = " To withdraw your own request, use Cancel." if user == request.requester else ""
            return Outcome(request, decision.reason + hint)
        return await self._close(
            request_id,
            to=RequestState.REJECTED,
            expected=(RequestState.PENDING_APPROVAL,),
            actor=user,
            detail=note or "",
            too_late="it can no longer be rejected",
            decision_note=note or None,
        )

    async def cancel(self, request_id: str, user: str) -> Outcome:
        request = await self.store.get(request_id)
        if request is None:
            return Outcome(None, f"There is no change request {request_id}. `/changeos list` shows the live ones.")
        if user != request.requester:
            await self.store.record(request_id, actor=user, action="cancel_refused", detail="not the requester")
            return Outcome(request, f"Only <@{request.requester}>, who asked for {request_id}, can cancel it.")
        return await self._close(
            request_id,
            to=RequestState.CANCELLED,
            expected=CANCELLABLE,
            actor=user,
            detail="cancelled by the requester",
            too_late="it is too late to cancel it",
        )

    async def _close(
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
        closed = await self.store.transition(
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
            current = await self.store.get(request_id)
            state = current.state.value.replace("_", " ") if current else "gone"
            return Outcome(current, f"{request_id} is {state}: {too_late}.")
        await self.forget_password(request_id)
        return Outcome(closed, None, changed=True)

    async def expire_due(self) -> list[ChangeRequest]:
        expired: list[ChangeRequest] = []
        for request in await self.store.due_for_expiry(self._now()):
            moved = await self.store.transition(
                request.id,
                to=RequestState.EXPIRED,
                expected=RequestState.PENDING_APPROVAL,
                actor="bot",
                detail="nobody approved it before it expired",
                finished_at=self._now(),
            )
            if moved is not None:
                await self.forget_password(request.id)
                expired.append(moved)
        return expired


def _password_audit(kept: DraftPassword | None, requester: str) -> str:
    if kept is None:
        return f"admin password typed into the Slack form by {requester}"
    at = kept.set_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if kept.set_via == "slack-signin":
        return f"admin password set on the secure page by {kept.set_by} (signed in with Slack) at {at}"
    return (
        f"admin password set on the secure page through the link made for {kept.set_by} at {at} "
        "(not verified: Sign in with Slack is off)"
    )
