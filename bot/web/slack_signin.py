"""Sign in with Slack (OpenID Connect) for the password page: who is at the keyboard, proven by Slack.

Three steps, as Slack documents them: redirect to the authorize endpoint (`response_type=code`, `scope=openid`, a
`state` bound to the page session and a `nonce`), exchange the code with `openid.connect.token`, read the identity
with `openid.connect.userInfo`. The id_token's claims are checked too (`iss`, `aud`, `nonce`, `exp`); its signature
is not, because it comes straight from Slack's token endpoint over TLS (OpenID Connect Core §3.1.3.7 allows that).
Neither the code nor the access token is kept or logged.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

ISSUER = "https://slack.com"
USER_CLAIM = "https://slack.com/user_id"
TEAM_CLAIM = "https://slack.com/team_id"


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    team_id: str


class SignInError(Exception):
    """Why a sign-in did not prove anyone; the text never holds a code or a token."""


def id_token_claims(id_token: str) -> dict[str, Any]:
    """The payload of a JWT (no signature check: see the module docstring)."""
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, UnicodeDecodeError):
        raise SignInError("Slack's id_token could not be read.") from None
    if not isinstance(claims, dict):
        raise SignInError("Slack's id_token could not be read.")
    return claims


class SlackSignIn:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: SecretStr,
        authorize_url: str,
        api: AsyncWebClient,
        bot: AsyncWebClient | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self.authorize_url = authorize_url
        self.api = api  # no token: the two OpenID methods authenticate with the client secret / the user token
        self.bot = bot  # the bot's own client, for the workspace it is installed in (auth.test)
        self._now = now
        self._team: str | None = None

    def __repr__(self) -> str:
        return f"SlackSignIn(client_id={self.client_id!r}, authorize_url={self.authorize_url!r})"

    async def team_id(self) -> str | None:
        """The workspace the bot is installed in: links are made there, so sign-ins must come from there."""
        if self._team is None and self.bot is not None:
            try:
                self._team = (await self.bot.auth_test()).get("team_id")
            except SlackApiError as exc:
                log.warning("auth.test failed, the sign-in team is not checked yet: %s", exc.response.get("error"))
        return self._team

    def redirect(self, *, redirect_uri: str, state: str, nonce: str, team: str | None) -> str:
        query = {
            "response_type": "code",
            "scope": "openid",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "nonce": nonce,
        }
        if team:
            query["team"] = team
        sep = "&" if "?" in self.authorize_url else "?"
        return f"{self.authorize_url}{sep}{urlencode(query)}"

    async def finish(self, *, code: str, redirect_uri: str, nonce: str) -> Identity:
        """Exchange the code and prove who signed in; `SignInError` for anything short of that."""
        try:
            tokens = await self.api.openid_connect_token(
                client_id=self.client_id,
                client_secret=self._secret.get_secret_value(),
                code=code,
                redirect_uri=redirect_uri,
                grant_type="authorization_code",
            )
        except SlackApiError as exc:
            raise SignInError(f"Slack refused the sign-in code ({exc.response.get('error')}).") from None
        access_token, id_token = tokens.get("access_token"), tokens.get("id_token")
        if not isinstance(access_token, str) or not isinstance(id_token, str):
            raise SignInError("Slack's answer had no access token or id_token.")
        claims = id_token_claims(id_token)
        audience = claims.get("aud")
        if claims.get("iss") != ISSUER:
            raise SignInError("The id_token was not issued by Slack.")
        if audience != self.client_id and not (isinstance(audience, list) and self.client_id in audience):
            raise SignInError("The id_token was issued for another app.")
        if claims.get("nonce") != nonce:
            raise SignInError("The id_token's nonce does not match this sign-in.")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self._now().timestamp():
            raise SignInError("The id_token has expired.")
        try:
            info = await self.api.openid_connect_userInfo(token=access_token)
        except SlackApiError as exc:
            raise SignInError(f"Slack did not say who signed in ({exc.response.get('error')}).") from None
        user = info.get(USER_CLAIM) or info.get("sub")
        team = info.get(TEAM_CLAIM)
        if not isinstance(user, str) or not isinstance(team, str):
            raise SignInError("Slack's answer did not name the user and the workspace.")
        if claims.get("sub") != info.get("sub") or claims.get(TEAM_CLAIM, team) != team:
            raise SignInError("The id_token and the user info name different people.")
        return Identity(user, team)
