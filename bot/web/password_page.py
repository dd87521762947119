"""The one-time secure password page: the admin password is typed on the bot's own page, never in Slack.

Why it looks like this:

- The link is `{public_url}/password#u=<slack user>&t=<token>`. The token (`secrets.token_urlsafe(32)`, 256 bits)
  rides in the URL *fragment*, which browsers never send to a server, so it reaches no access log, proxy log or
  `Referer`; the page's script reads it, removes it from the address bar and sends it in a JSON body. The store keeps
  only `sha256(token)`; a token is single use (consumed atomically) and expires after `ttl_seconds` (10 minutes).
- Binding. Without "Sign in with Slack" no web request can prove who is at the keyboard, so the link is a bearer
  credential and the binding is as strong as we can make it without one:
  * to the request: the token's subject is `<draft id>|<os type>`; the draft id is the modal's random id, known only
    to that modal, and the password can only ever land on that one draft (and is checked with that OS's rules, so a
    Windows draft cannot be given a Linux-valid password);
  * to the Slack user: the token is stored with the user the modal was opened by; a request whose `u` differs is
    refused exactly like an unknown token (410, no oracle). The link is shown only in that user's own modal (Slack
    views are private to one user). `link_for` also refuses to mint a link for a draft that another user already
    minted one for (draft owner check), and `set`/`generate` refuse a token whose draft is owned by someone else.
  * what is left: whoever holds an unused, unexpired link can *set* (never read) the password of that one draft.
    The real user would then see "already used" when opening the link, and may simply choose Admin password again
    to get a fresh link. Slack itself sees the link (it is in the modal's JSON).
- Cross-site requests: the API takes only `application/json` POSTs carrying `X-Requested-With: ecsbot` (a header a
  cross-site form cannot send and a cross-site fetch cannot send without a CORS preflight we never answer), and an
  `Origin` (when present) equal to public_url's origin. No cookies, so no ambient authority to ride on.
- Every response under /password carries `Cache-Control: no-store` and a strict CSP (no inline script or style).
- Logs: never the password, the token or a body; only "password set for draft <id>".
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web
from pydantic import SecretStr
from yarl import URL

from bot.domain.passwords import MAX_LENGTH, MIN_LENGTH, SPECIALS, WINDOWS_USERNAME, generate_password
from bot.domain.passwords import password_problems as _password_problems

if TYPE_CHECKING:
    from bot.store import Store
    from bot.workflow import Workflow

log = logging.getLogger(__name__)

PURPOSE = "password"
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
    "This link was already used or has expired. Open the form in Slack again and choose Admin password to get a "
    "new link."
)
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


class _Grant(NamedTuple):
    """A live token as the API sees it (its hash only, never the token)."""

    digest: str
    user: str
    draft_id: str
    os_type: str
    expires_at: datetime


class _Refused(Exception):
    """Carries the response for a request we will not serve; never holds a secret."""

    def __init__(self, response: web.Response) -> None:
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
    ) -> None:
        self.store = store
        self.workflow = workflow
        self.public_url = public_url
        self.ttl_seconds = ttl_seconds
        self.now = now
        self.on_set = on_set
        self._owners: dict[str, tuple[str, datetime]] = {}  # draft id -> (user id, last minted)
        self._assets: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"PasswordPages(public_url={self.public_url!r}, ttl_seconds={self.ttl_seconds})"

    # ------------------------------------------------------------------ links

    @property
    def origin(self) -> str:
        return str(URL(self.public_url).origin())

    def link_for(self, *, draft_id: str, user_id: str, os_type: str) -> str:
        """Mint a one-time link for this draft and user; `PermissionError` if the draft is another user's."""
        if not draft_id or "|" in draft_id:
            raise ValueError("draft_id must be a non-empty id without '|'")
        if not _USER_RE.fullmatch(user_id):
            raise ValueError("user_id must be a Slack user id")
        now = self.now()
        self._prune(now)
        owner = self._owners.get(draft_id)
        if owner is not None and owner[0] != user_id:
            raise PermissionError("This form belongs to another Slack user; open your own /changeos form.")
        token = secrets.token_urlsafe(32)
        self.store.put_token(
            token_hash(token),
            purpose=PURPOSE,
            subject=f"{draft_id}|{os_type}",
            user_id=user_id,
            expires_at=now + timedelta(seconds=self.ttl_seconds),
        )
        self._owners[draft_id] = (user_id, now)
        return f"{self.public_url.rstrip('/')}/password#u={user_id}&t={token}"

    def _prune(self, now: datetime) -> None:
        """Forget owners whose last link has expired: no live token can name their draft any more."""
        horizon = now - timedelta(seconds=self.ttl_seconds)
        for draft_id in [d for d, (_, at) in self._owners.items() if at < horizon]:
            del self._owners[draft_id]

    # ------------------------------------------------------------------ wiring

    def register(self, app: web.Application) -> None:
        for name in (*_STATIC, "password.html"):
            self._assets[name] = resources.files("bot.web").joinpath("static", name).read_bytes()
        app.on_response_prepare.append(self._add_headers)
        app.router.add_get("/password", self._page)
        app.router.add_get("/password/static/{name}", self._static)
        app.router.add_post("/password/api/info", self._info)
        app.router.add_post("/password/api/set", self._set)
        app.router.add_post("/password/api/generate", self._generate)

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

    def _peek(self, data: dict[str, Any]) -> _Grant:
        """The live token of this user, without using it up; `_Refused(410)` otherwise, whatever the cause."""
        user, token = data.get("u"), data.get("t")
        if not (isinstance(user, str) and isinstance(token, str)):
            raise _Refused(_error(410, GONE))
        if not (_USER_RE.fullmatch(user) and _TOKEN_RE.fullmatch(token)):
            raise _Refused(_error(410, GONE))
        digest = token_hash(token)
        row = self.store.peek_token(digest, user_id=user, now=self.now())
        if row is None or row["purpose"] != PURPOSE:
            raise _Refused(_error(410, GONE))
        draft_id, _, os_type = row["subject"].partition("|")
        owner = self._owners.get(draft_id)
        if owner is not None and owner[0] != user:
            raise _Refused(_error(410, GONE))
        return _Grant(digest, user, draft_id, os_type or "Linux", row["expires_at"])

    async def _info(self, request: web.Request) -> web.Response:
        try:
            data = await self._body(request)
            grant = self._peek(data)
        except _Refused as refused:
            return refused.response
        expires_in = max(0, int((grant.expires_at - self.now()).total_seconds()))
        return web.json_response({"os_type": grant.os_type, "expires_in": expires_in, **rules_for(grant.os_type)})

    async def _set(self, request: web.Request) -> web.Response:
        try:
            data = await self._body(request)
            grant = self._peek(data)
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
            return refused.response

    async def _generate(self, request: web.Request) -> web.Response:
        try:
            data = await self._body(request)
            grant = self._peek(data)
            password = SecretStr(generate_password(grant.os_type))
            response = await self._store(grant, password)
        except _Refused as refused:
            return refused.response
        if response.status != 200:
            return response
        return web.json_response({"ok": True, "password": password.get_secret_value()})

    async def _store(self, grant: _Grant, password: SecretStr) -> web.Response:
        """Use the token up, then keep the password encrypted on its draft and tell the Slack layer."""
        if not self.workflow.passwords_enabled:
            return _error(503, "Password logins are turned off on this bot (no ECSBOT_SECRET_KEY). Use a key pair.")
        if self.store.consume_token(grant.digest, user_id=grant.user, now=self.now()) is None:
            return _error(410, GONE)
        draft_id = grant.draft_id
        try:
            self.workflow.keep_draft_password(draft_id, password)
        except Exception as exc:
            log.error("could not keep the password for draft %s: %s", draft_id, type(exc).__name__)
            return _error(500, "The password could not be stored. Open the form in Slack again to get a new link.")
        log.info("password set for draft %s", draft_id)
        if self.on_set is not None:
            try:
                await self.on_set(draft_id)
            except Exception as exc:
                log.warning(
                    "password set for draft %s, but the form was not refreshed: %s", draft_id, type(exc).__name__
                )
        return web.json_response({"ok": True})
