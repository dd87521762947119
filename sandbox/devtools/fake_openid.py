"""The fake Slack's Sign in with Slack: an OpenID Connect provider in Slack's shapes, for tests and the demo.

Three endpoints, as Slack has them: `GET /openid/connect/authorize` (redirects back with a code for the user the test
chose, `signin_as`, or shows a tiny chooser page when none is chosen), and the Web API methods `openid.connect.token`
(client_secret_basic or _post) and `openid.connect.userInfo` (with the user token the first one issued). Codes and
tokens are single use and short-lived; the id_token is an RS256 JWT signed with a key made at first use.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

ISSUER = "https://slack.com"
CLIENT_ID = "1111111111.2222222222"
CLIENT_SECRET = "fake-openid-client-secret-0000000"  # a test double's fixed credential
METHODS = frozenset({"openid.connect.token", "openid.connect.userInfo"})
CODE_TTL = 600.0
_USER_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    user: str
    team: str
    at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeOpenID:
    def __init__(self, team_id: str, *, clock: Callable[[], float] = time.time) -> None:
        self.team_id = team_id
        self.clients: dict[str, str] = {CLIENT_ID: CLIENT_SECRET}
        self.signin_as: str | None = None  # who "signs in" at the authorize endpoint; None: a chooser page
        self.signin_team: str | None = None  # another workspace, to test the team check
        self.authorizations: list[dict[str, str]] = []  # the authorize queries received (no secrets in them)
        self._clock = clock
        self._codes: dict[str, _Grant] = {}
        self._tokens: dict[str, _Grant] = {}
        self._key: Any = None

    # -- the authorize endpoint ---------------------------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        self.authorizations.append(dict(q))
        problems = []
        if q.get("response_type") != "code":
            problems.append("response_type must be code")
        if "openid" not in (q.get("scope") or "").split():
            problems.append("scope must include openid")
        if q.get("client_id") not in self.clients:
            problems.append("unknown client_id")
        if not (q.get("redirect_uri") or "").startswith(("http://", "https://")):
            problems.append("redirect_uri is missing")
        if not q.get("state"):
            problems.append("state is missing")
        if problems:
            return web.Response(status=400, text="Sign in with Slack refused: " + "; ".join(problems) + ".")
        user = q.get("as") or self.signin_as
        if q.get("deny") or user is None:
            if q.get("deny"):
                return self._back(q["redirect_uri"], {"error": "access_denied", "state": q["state"]})
            return self._chooser(dict(q))
        if not _USER_RE.match(user):
            return web.Response(status=400, text="Choose a Slack user id such as U01REQ0001.")
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Grant(
            q["client_id"], q["redirect_uri"], q.get("nonce"), user, self.signin_team or self.team_id, self._clock()
        )
        return self._back(q["redirect_uri"], {"code": code, "state": q["state"]})

    @staticmethod
    def _back(redirect_uri: str, params: dict[str, str]) -> web.Response:
        sep = "&" if "?" in redirect_uri else "?"
        return web.Response(status=302, headers={"Location": f"{redirect_uri}{sep}{urlencode(params)}"})

    @staticmethod
    def _chooser(query: dict[str, str]) -> web.Response:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in query.items()
        )
        page = (
            "<!doctype html><title>Sign in with Slack (fake)</title><h1>Sign in with Slack (fake)</h1>"
            f'<form method="get">{hidden}<label>Slack user id <input name="as" value="U01REQ0001"></label>'
            '<button type="submit">Sign in</button> <button type="submit" name="deny" value="1">Cancel</button></form>'
        )
        return web.Response(text=page, content_type="text/html")

    # -- the two Web API methods --------------------------------------------------------------------------------

    def handle(self, method: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        if method == "openid.connect.token":
            return self._token(body, headers)
        return self._user_info(body, headers)

    def _client(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[str, str] | None:
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        if auth.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return client_id, secret
        if body.get("client_id") and body.get("client_secret"):
            return str(body["client_id"]), str(body["client_secret"])
        return None

    def _token(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        client = self._client(body, headers)
        if client is None or self.clients.get(client[0]) != client[1]:
            return {"ok": False, "error": "invalid_client_id" if client is None else "bad_client_secret"}
        grant = self._codes.pop(str(body.get("code", "")), None)
        if grant is None or self._clock() - grant.at > CODE_TTL or grant.client_id != client[0]:
            return {"ok": False, "error": "invalid_code"}
        if body.get("grant_type", "authorization_code") != "authorization_code":
            return {"ok": False, "error": "invalid_grant_type"}
        if body.get("redirect_uri") != grant.redirect_uri:
            return {"ok": False, "error": "bad_redirect_uri"}
        access = "xoxp-" + secrets.token_hex(16)
        self._tokens[access] = grant
        return {
            "ok": True,
            "access_token": access,
            "token_type": "Bearer",
            "id_token": self._id_token(grant, client[0]),
        }

    def _user_info(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else str(body.get("token", ""))
        grant = self._tokens.get(token)
        if grant is None:
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": True, **self._claims(grant)}

    def _claims(self, grant: _Grant) -> dict[str, Any]:
        return {
            "sub": grant.user,
            "https://slack.com/user_id": grant.user,
            "https://slack.com/team_id": grant.team,
            "name": f"Test user {grant.user}",
        }

    def _id_token(self, grant: _Grant, client_id: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        if self._key is None:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = int(self._clock())
        claims = {"iss": ISSUER, "aud": client_id, "iat": now, "exp": now + 3600, **self._claims(grant)}
        if grant.nonce:
            claims["nonce"] = grant.nonce
        header = {"alg": "RS256", "typ": "JWT", "kid": "fake"}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"
