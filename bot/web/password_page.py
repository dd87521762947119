"""The secure password page: the admin password is typed on the bot's own page, never in Slack.

Why it looks like this:

- The link is `{public_url}/password#u=<slack user>&t=<token>`. The token (`secrets.token_urlsafe(32)`, 256 bits)
  rides in the URL *fragment*, which browsers never send to a server, so it reaches no access log, proxy log or
  `Referer`. The store keeps only `sha256(token)`, plus the link itself encrypted with ECSBOT_SECRET_KEY so a
  refreshed Slack form shows the same unused link instead of minting another (one live link per draft).
- Opening the page *exchanges* the token for a page session (`POST api/open`): the token is dead from then on, and
  the page works with an HttpOnly, SameSite=Strict cookie (Secure on https) that lives `ttl_seconds` at most. So a
  link found later in a browser's history (Chromium keeps the first URL a tab loaded, fragment included) opens
  nothing.
- Who: with Sign in with Slack configured (`signin`), the session must be signed in, through Slack's OpenID Connect,
  as the Slack user the link was made for, in the bot's workspace, before the form shows; the link alone is not
  enough. Without it the link is a bearer credential (the form and `ecsbot check` say so).
- Lifetime: a link, and any session, lives exactly as long as its draft: submitting or closing the form, or the
  stored password expiring, revokes them all (`Workflow.revoke_draft`), and the page then says why and what to do.
  A link never outlives the password it would feed. A password can only land on a draft whose session is alive
  (one transaction), so never on a request that was already submitted.
- Cross-site requests: the API takes only `application/json` POSTs carrying `X-Requested-With: ecsbot` and an
  `Origin` (when present) equal to public_url's origin; the cookie is SameSite=Strict on top.
- Every response under /password carries `Cache-Control: no-store` and a strict CSP (no inline script or style).
- Logs: never the password, a token, a code or a body; only "password set for draft <id>" and the like.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web
from pydantic import SecretStr
from yarl import URL

from bot.domain.passwords import MAX_LENGTH, MIN_LENGTH, SPECIALS, WINDOWS_USERNAME, generate_password
from bot.domain.passwords import password_problems as _password_problems
from bot.secretbox import SecretBoxError
from bot.services.workflow import TOKEN_PURPOSE, DraftClosed, DraftEnd, link_secret_key
from bot.web.slack_signin import SignInError, SlackSignIn

if TYPE_CHECKING:
    from bot.services.workflow import Workflow
    from bot.store import Store

log = logging.getLogger(__name__)

PURPOSE = TOKEN_PURPOSE
COOKIE = "ecsbot_pw"
SIGNIN_COOKIE = "ecsbot_pw_signin"  # SameSite=Lax: it must come back on Slack's redirect to the callback
MAX_API_BODY = 4096  # {u, t, password, confirm} fits in a few hundred bytes
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{20,128}")
_USER_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CSP,
}

GONE = (
    "This link was already used or has expired. Go back to the form in Slack and use its Set password securely "
    "button again: the form offers a fresh link."
)
OPENED = (
    "This link was already opened, and a link works once. Go back to the form in Slack and use its password button "
    "again: it now carries a fresh link."
)
REPLACED = "This link was replaced by a newer one. Use the password button in the Slack form."
NO_SESSION = (
    "This link is incomplete, or this browser has no open password page. Use the Set password securely button in "
    "the Slack form to open it."
)
SESSION_ENDED = (
    "This page's time is up (or it was already used). Go back to the form in Slack and use its password button "
    "again for a fresh link."
)
SIGNIN_NEEDED = "Sign in with Slack first: the link alone does not prove who you are."
_STATIC = {
    "password.js": "text/javascript",
    "password.css": "text/css",
    "favicon.svg": "image/svg+xml",
}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def rules_for(os_type: str) -> dict[str, Any]:
    """What the page shows and checks live; the server checks again with `password_problems`."""
    windows = os_type.strip().lower() == "windows"
    rules = [
        {"id": "length", "text": f"{MIN_LENGTH} to {MAX_LENGTH} characters"},
        {
            "id": "classes",
            "text": "At least three of: uppercase letters, lowercase letters, digits, special characters",
        },
        {"id": "allowed", "text": f"Only letters, digits and these special characters: {SPECIALS}"},
    ]
    if windows:
        rules.append(
            {
                "id": "username",
                "text": f'Does not contain "{WINDOWS_USERNAME}", its reverse, or more than two consecutive '
                "characters of it (any letter case)",
            }
        )
    return {
        "rules": rules,
        "min_length": MIN_LENGTH,
        "max_length": MAX_LENGTH,
        "specials": SPECIALS,
        "username": WINDOWS_USERNAME if windows else None,
    }


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@dataclass(frozen=True, slots=True)
class IssuedLink:
    url: str
    expires_at: datetime
    reused: bool


class _Grant(NamedTuple):
    """A live page session as the API sees it (its hash only, never the cookie)."""

    digest: str
    user: str
    draft_id: str
    os_type: str
    expires_at: datetime
    signed_in: bool


class _Refused(Exception):
    """Carries the response for a request we will not serve; never holds a secret."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response


class PasswordPages:
    def __init__(
        self,
        store: Store,
        workflow: Workflow,
        public_url: str,
        *,
        ttl_seconds: float = 600,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_set: Callable[[str], Awaitable[None]] | None = None,
        on_open: Callable[[str], Awaitable[None]] | None = None,
        signin: SlackSignIn | None = None,
    ) -> None:
        self.store = store
        self.workflow = workflow
        self.public_url = public_url
        self.ttl_seconds = ttl_seconds
        self.now = now
        self.on_set = on_set  # the form shows "password set"
        self.on_open = on_open  # the link was used up: the form offers a fresh one
        self.signin = signin
        self._owners: dict[str, tuple[str, datetime]] = {}  # draft id -> (user id, last minted)
        self._gone: dict[str, tuple[str, datetime]] = {}  # token/session hash -> (why it is dead, forget after)
        self._assets: dict[str, bytes] = {}
        workflow.revoke_hooks.append(self._revoked)

    def __repr__(self) -> str:
        return f"PasswordPages(public_url={self.public_url!r}, ttl_seconds={self.ttl_seconds})"

    # ------------------------------------------------------------------ links

    @property
    def origin(self) -> str:
        return str(URL(self.public_url).origin())

    @property
    def secure(self) -> bool:
        return URL(self.public_url).scheme == "https"

    async def link_for(self, *, draft_id: str, user_id: str, os_type: str) -> str:
        return (await self.issue(draft_id=draft_id, user_id=user_id, os_type=os_type)).url

    async def issue(self, *, draft_id: str, user_id: str, os_type: str) -> IssuedLink:
        """The draft's one live link: the unused one if there is one, else a new one (the old ones die).

        `PermissionError` if the draft is another user's, `DraftClosed` if its form was submitted or closed.
        """
        if not draft_id or "|" in draft_id:
            raise ValueError("draft_id must be a non-empty id without '|'")
        if not _USER_RE.fullmatch(user_id):
            raise ValueError("user_id must be a Slack user id")
        if self.workflow.draft_ended(draft_id) is not None:
            raise DraftClosed(draft_id)
        now = self.now()
        self._prune(now)
        owner = self._owners.get(draft_id)
        if owner is not None and owner[0] != user_id:
            raise PermissionError("This form belongs to another Slack user; open your own /changeos form.")
        subject = f"{draft_id}|{os_type}"
        reused = await self._unused_link(draft_id, user_id, subject, now)
        if reused is not None:
            return reused
        for digest in await self.store.revoke_subject(PURPOSE, f"{draft_id}|"):  # at most one live link per draft
            self._gone.setdefault(digest, (REPLACED, now + timedelta(hours=24)))
        token = secrets.token_urlsafe(32)
        expires_at = now + timedelta(seconds=self.ttl_seconds)
        kept = await self.workflow.draft_password_info(draft_id)
        if kept is not None:
            expires_at = min(expires_at, kept.expires_at)  # never outlive the password it would replace
        digest = token_hash(token)
        await self.store.put_token(digest, purpose=PURPOSE, subject=subject, user_id=user_id, expires_at=expires_at)
        url = f"{self.public_url.rstrip('/')}/password#u={user_id}&t={token}"
        box = self.workflow.secretbox
        if box is not None:
            await self.store.put_secret(link_secret_key(draft_id), box.encrypt(token), expires_at=expires_at)
        self._owners[draft_id] = (user_id, now)
        return IssuedLink(url, expires_at, reused=False)

    async def _unused_link(self, draft_id: str, user_id: str, subject: str, now: datetime) -> IssuedLink | None:
        box = self.workflow.secretbox
        blob = await self.store.get_secret(link_secret_key(draft_id))
        if box is None or blob is None:
            return None
        try:
            token = box.decrypt(blob).get_secret_value()
        except SecretBoxError:
            return None
        row = await self.store.peek_token(token_hash(token), user_id=user_id, now=now)
        if row is None or row["purpose"] != PURPOSE or row["subject"] != subject:
            return None
        return IssuedLink(f"{self.public_url.rstrip('/')}/password#u={user_id}&t={token}", row["expires_at"], True)

    def _prune(self, now: datetime) -> None:
        """Forget owners whose last link has expired, and old tombstones."""
        horizon = now - timedelta(seconds=self.ttl_seconds)
        for draft_id in [d for d, (_, at) in self._owners.items() if at < horizon]:
            del self._owners[draft_id]
        for digest in [d for d, (_, until) in self._gone.items() if until < now]:
            del self._gone[digest]

    def _tombstone(self, digest: str, message: str, now: datetime) -> None:
        self._gone[digest] = (message, now + timedelta(hours=24))

    def _revoked(self, draft_id: str, digests: list[str], why: DraftEnd) -> None:
        now = self.now()
        for digest in digests:
            self._tombstone(digest, why.message, now)
        if why.final:
            self._owners.pop(draft_id, None)

    def _why_gone(self, digest: str, default: str) -> str:
        found = self._gone.get(digest)
        return found[0] if found else default

    # ------------------------------------------------------------------ wiring

    def register(self, app: web.Application) -> None:
        for name in (*_STATIC, "password.html"):
            self._assets[name] = resources.files("bot.web").joinpath("static", name).read_bytes()
        app.on_response_prepare.append(self._add_headers)
        app.router.add_get("/password", self._page)
        app.router.add_get("/password/static/{name}", self._static)
        app.router.add_post("/password/api/open", self._open)
        app.router.add_post("/password/api/info", self._info)
        app.router.add_post("/password/api/set", self._set)
        app.router.add_post("/password/api/generate", self._generate)
        app.router.add_get("/password/signin", self._signin_start)
        app.router.add_get("/password/signin/callback", self._signin_callback)

    @staticmethod
    async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
        """On every response under /password, errors from aiohttp itself (404, 405) included."""
        if request.path == "/password" or request.path.startswith("/password/"):
            response.headers.update(SECURITY_HEADERS)

    async def _page(self, _: web.Request) -> web.Response:
        return web.Response(body=self._assets["password.html"], content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            return web.Response(status=404, text="Not found.")
        return web.Response(body=self._assets[name], content_type=_STATIC[name], charset="utf-8")

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_url.rstrip('/')}/password/signin/callback"

    # ------------------------------------------------------------------ API

    async def _body(self, request: web.Request) -> dict[str, Any]:
        """The JSON body of a same-origin API call, or `_Refused` with a clear reason."""
        if request.headers.get("X-Requested-With") != "ecsbot":
            raise _Refused(_error(403, "Refused: this API only answers the password page itself."))
        origin = request.headers.get("Origin")
        if origin is not None and origin != self.origin:
            raise _Refused(_error(403, "Refused: cross-site request. Open the link from Slack in your browser."))
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise _Refused(_error(403, "Refused: cross-site request. Open the link from Slack in your browser."))
        if request.content_type != "application/json":
            raise _Refused(_error(415, "Send the request as JSON (Content-Type: application/json)."))
        if request.content_length is not None and request.content_length > MAX_API_BODY:
            raise _Refused(_error(413, "The request is too large."))
        raw = await request.content.read(MAX_API_BODY + 1)
        if len(raw) > MAX_API_BODY:
            raise _Refused(_error(413, "The request is too large."))
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise _Refused(_error(400, "The request is not valid JSON.")) from None
        if not isinstance(data, dict):
            raise _Refused(_error(400, "The request must be a JSON object."))
        return data

    async def _open(self, request: web.Request) -> web.Response:
        """Exchange the link's token for a page session: the token is dead from here on, whatever happens next."""
        try:
            data = await self._body(request)
        except _Refused as refused:
            return refused.response  # type: ignore[return-value]
        user, token = data.get("u"), data.get("t")
        if not (isinstance(user, str) and isinstance(token, str)):
            return _error(410, NO_SESSION)
        if not (_USER_RE.fullmatch(user) and _TOKEN_RE.fullmatch(token)):
            return _error(410, GONE)
        now = self.now()
        self._prune(now)
        digest = token_hash(token)
        row = await self.store.peek_token(digest, user_id=user, now=now)
        if row is None or row["purpose"] != PURPOSE:
            return _error(410, self._why_gone(digest, GONE))
        draft_id, _, os_type = row["subject"].partition("|")
        owner = self._owners.get(draft_id)
        if (owner is not None and owner[0] != user) or self.workflow.draft_ended(draft_id) is not None:
            return _error(410, self._why_gone(digest, GONE))
        if await self.store.consume_token(digest, user_id=user, now=now) is None:
            return _error(410, self._why_gone(digest, GONE))
        self._tombstone(digest, OPENED, now)
        await self.store.delete_secret(link_secret_key(draft_id))
        expires_at = now + timedelta(seconds=self.ttl_seconds)
        kept = await self.workflow.draft_password_info(draft_id)
        if kept is not None:
            expires_at = min(expires_at, kept.expires_at)
        sid = secrets.token_urlsafe(32)
        await self.store.put_session(
            token_hash(sid), draft_id=draft_id, os_type=os_type or "Linux", user_id=user, expires_at=expires_at
        )
        log.info("password page opened for draft %s", draft_id)
        response = web.json_response({"ok": True, "signin": self.signin is not None})
        self._set_cookie(response, COOKIE, sid, expires_at - now, same_site="Strict", path="/password")
        if self.on_open is not None:
            await self._tell(self.on_open, draft_id, "opened")
        return response

    def _set_cookie(
        self, response: web.StreamResponse, name: str, value: str, ttl: timedelta, *, same_site: str, path: str
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max(1, int(ttl.total_seconds())),
            path=path,
            httponly=True,
            secure=self.secure,
            samesite=same_site,
        )

    async def _grant(self, request: web.Request, *, need_signin: bool = True) -> _Grant:
        """The live page session of this browser; `_Refused` (410, or 401 to sign in) otherwise."""
        sid = request.cookies.get(COOKIE)
        if not sid or not _TOKEN_RE.fullmatch(sid):
            raise _Refused(_error(410, NO_SESSION))
        digest = token_hash(sid)
        row = await self.store.get_session(digest, now=self.now())
        if row is None:
            raise _Refused(_error(410, self._why_gone(digest, SESSION_ENDED)))
        ended = self.workflow.draft_ended(row["draft_id"])
        if ended is not None:
            raise _Refused(_error(410, ended.message))
        signed_in = row["signed_in_user"] is not None and row["signed_in_user"] == row["user_id"]
        if need_signin and self.signin is not None and not signed_in:
            expires_in = max(0, int((row["expires_at"] - self.now()).total_seconds()))
            raise _Refused(_error(401, SIGNIN_NEEDED, signin="password/signin", expires_in=expires_in))
        return _Grant(digest, row["user_id"], row["draft_id"], row["os_type"], row["expires_at"], signed_in)

    async def _api(self, request: web.Request) -> _Grant:
        await self._body(request)
        return await self._grant(request)

    async def _info(self, request: web.Request) -> web.Response:
        try:
            grant = await self._api(request)
        except _Refused as refused:
            return refused.response  # type: ignore[return-value]
        now = self.now()
        expires_in = max(0, int((grant.expires_at - now).total_seconds()))
        kept = await self.workflow.draft_password_info(grant.draft_id)
        current = None
        if kept is not None:
            current = {
                "set_by_you": kept.set_by == grant.user,
                "verified": kept.set_via == "slack-signin",
                "set_at": int(kept.set_at.timestamp()),
                "expires_in": max(0, int((kept.expires_at - now).total_seconds())),
            }
        return web.json_response(
            {
                "os_type": grant.os_type,
                "expires_in": expires_in,
                "signed_in": grant.signed_in,
                "bearer": self.signin is None,
                "current": current,
                "draft_minutes": self.workflow.draft_password_ttl.total_seconds() / 60,
                **rules_for(grant.os_type),
            }
        )

    async def _set(self, request: web.Request) -> web.Response:
        try:
            data = await self._body(request)
            grant = await self._grant(request)
            password, confirm = data.get("password"), data.get("confirm")
            if not (isinstance(password, str) and isinstance(confirm, str)):
                return _error(400, "Send both the password and its confirmation.")
            problems = [] if password == confirm else ["The two entries do not match: type the same password twice."]
            problems += _password_problems(password, os_type=grant.os_type)
            if problems:
                return _error(
                    422, "This password cannot be used. Fix the points below and try again.", problems=problems
                )
            return await self._store(grant, SecretStr(password))
        except _Refused as refused:
            return refused.response  # type: ignore[return-value]

    async def _generate(self, request: web.Request) -> web.Response:
        try:
            grant = await self._api(request)
            password = SecretStr(generate_password(grant.os_type))
            response = await self._store(grant, password)
        except _Refused as refused:
            return refused.response  # type: ignore[return-value]
        if response.status != 200:
            return response
        return web.json_response({**json.loads(response.body), "password": password.get_secret_value()})  # type: ignore[arg-type]

    async def _store(self, grant: _Grant, password: SecretStr) -> web.Response:
        """Keep the password encrypted on its draft while the session lives (and end it), then tell the Slack layer."""
        if not self.workflow.passwords_enabled:
            return _error(503, "Password logins are turned off on this bot (no ECSBOT_SECRET_KEY). Use a key pair.")
        draft_id = grant.draft_id
        via = "slack-signin" if grant.signed_in else "link"
        try:
            kept = await self.workflow.keep_draft_password(
                draft_id, password, set_by=grant.user, set_via=via, session=grant.digest
            )
        except DraftClosed:
            ended = self.workflow.draft_ended(draft_id)
            return _error(410, ended.message if ended else GONE)
        except Exception as exc:
            log.error("could not keep the password for draft %s: %s", draft_id, type(exc).__name__)
            return _error(500, "The password could not be stored. Open the form in Slack again to get a new link.")
        if not kept:
            return _error(410, self._why_gone(grant.digest, SESSION_ENDED))
        now = self.now()
        self._tombstone(grant.digest, "The password was set from this page already. " + SESSION_ENDED, now)
        log.info("password set for draft %s (%s)", draft_id, via)
        if self.on_set is not None:
            await self._tell(self.on_set, draft_id, "set")
        info = await self.workflow.draft_password_info(draft_id)
        return web.json_response(
            {
                "ok": True,
                "set_at": int(now.timestamp()),
                "verified": grant.signed_in,
                "expires_in": int((info.expires_at - now).total_seconds()) if info else 0,
            }
        )

    @staticmethod
    async def _tell(hook: Callable[[str], Awaitable[None]], draft_id: str, what: str) -> None:
        try:
            await hook(draft_id)
        except Exception as exc:
            log.warning(
                "password %s for draft %s, but the form was not refreshed: %s", what, draft_id, type(exc).__name__
            )

    # ------------------------------------------------------------------ Sign in with Slack

    def _back(self, result: str) -> web.Response:
        """Back to the page with the outcome in the query (never a secret), e.g. /password?signin=ok."""
        return web.Response(status=303, headers={"Location": f"{self.public_url.rstrip('/')}/password?signin={result}"})

    async def _signin_start(self, request: web.Request) -> web.StreamResponse:
        if self.signin is None:
            return self._back("off")
        try:
            grant = await self._grant(request, need_signin=False)
        except _Refused:
            return self._back("nosession")
        state, binding, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(16)
        if not await self.store.start_signin(
            grant.digest, state_hash=token_hash(state), binding_hash=token_hash(binding), nonce=nonce
        ):
            return self._back("nosession")
        team = await self.signin.team_id()
        target = self.signin.redirect(redirect_uri=self.redirect_uri, state=state, nonce=nonce, team=team)
        response = web.Response(status=302, headers={"Location": target})
        self._set_cookie(
            response, SIGNIN_COOKIE, binding, grant.expires_at - self.now(), same_site="Lax", path="/password/signin"
        )
        return response

    async def _signin_callback(self, request: web.Request) -> web.StreamResponse:
        response = await self._signin_result(request)
        response.del_cookie(SIGNIN_COOKIE, path="/password/signin")
        return response

    async def _signin_result(self, request: web.Request) -> web.StreamResponse:
        if self.signin is None:
            return self._back("off")
        state, code = request.query.get("state", ""), request.query.get("code", "")
        if not _TOKEN_RE.fullmatch(state):
            return self._back("failed")
        state_digest = token_hash(state)
        row = await self.store.session_by_state(state_digest, now=self.now())
        if row is None:
            return self._back("expired")
        binding = request.cookies.get(SIGNIN_COOKIE, "")
        if not hmac.compare_digest(token_hash(binding), row["binding_hash"] or ""):
            log.warning("sign-in for draft %s refused: it did not start in this browser", row["draft_id"])
            return self._back("failed")
        if request.query.get("error") or not code:
            return self._back("denied")
        try:
            who = await self.signin.finish(code=code, redirect_uri=self.redirect_uri, nonce=row["nonce"] or "")
        except SignInError as exc:
            log.warning("sign-in for draft %s failed: %s", row["draft_id"], exc)
            return self._back("failed")
        team = await self.signin.team_id()
        if who.user_id != row["user_id"] or (team is not None and who.team_id != team):
            await self.store.finish_signin(row["sid_hash"], state_hash=state_digest, user_id=None)
            self._tombstone(row["sid_hash"], "Signed in as someone else: this page was closed.", self.now())
            log.warning(
                "sign-in for draft %s refused: signed in as %s of %s, the link was made for %s",
                row["draft_id"],
                who.user_id,
                who.team_id,
                row["user_id"],
            )
            return self._back("wrong_user" if who.user_id != row["user_id"] else "wrong_team")
        if not await self.store.finish_signin(row["sid_hash"], state_hash=state_digest, user_id=who.user_id):
            return self._back("expired")
        log.info("signed in with Slack for draft %s", row["draft_id"])
        return self._back("ok")
