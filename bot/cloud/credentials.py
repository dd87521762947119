"""Where the AK/SK come from: permanent or temporary keys from the environment, or an ECS agency's metadata service.

The client asks its source before every request. A fixed `Credentials` is its own source; `MetadataCredentials`
fetches the agency's temporary keys as the official SDK does (token PUT, then `securitykey`) and refreshes them
before they expire, so a long job never meets an expired key. Secrets stay `SecretStr`: no repr or log shows them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

log = logging.getLogger(__name__)

METADATA_URL = "http://169.254.169.254"
_TOKEN_PATH = "/meta-data/latest/api/token"
_KEY_PATH = "/openstack/latest/securitykey"


@dataclass(frozen=True, slots=True)
class Credentials:
    """AK/SK (and, for temporary keys, the security token) and the project they act in."""

    access_key: str
    secret_key: SecretStr
    project_id: str
    user_id: str | None = None
    security_token: SecretStr | None = field(default=None, repr=False)
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("secret_key", "security_token"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, SecretStr(value))

    async def get(self, *, refresh: bool = False) -> Credentials:
        return self

    def describe(self) -> str:
        if self.security_token is None:
            return "permanent AK/SK (HUAWEICLOUD_SDK_AK/SK)"
        until = f", expiring {self.expires_at:%Y-%m-%d %H:%M} UTC" if self.expires_at else ""
        return f"temporary AK/SK with a security token (HUAWEICLOUD_SDK_SECURITY_TOKEN{until})"


class CredentialSource(Protocol):
    @property
    def project_id(self) -> str: ...

    async def get(self, *, refresh: bool = False) -> Credentials: ...

    def describe(self) -> str: ...


class CredentialsUnavailableError(RuntimeError):
    """The metadata service gave no usable credentials; the message says what to check."""


class MetadataCredentials:
    """An ECS agency's temporary keys from the metadata service, refreshed before they expire.

    By default the keys are refreshed when an eighth of their lifetime is left (7.5 min of an hour): later than the
    metadata service's own renewal (10 min before expiry, when old and new keys both work), so one fetch brings the
    new keys, and early enough that no request is signed with a key about to expire.
    """

    def __init__(
        self,
        project_id: str,
        *,
        user_id: str | None = None,
        url: str = METADATA_URL,
        refresh_before: timedelta | None = None,
        min_interval: float | None = None,
        timeout: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._project_id = project_id
        self._user_id = user_id
        self._url = url.rstrip("/")
        self._refresh_before = refresh_before
        # A metadata service that still hands out the old keys is not asked again on every call.
        self._min_interval = min_interval
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)
        self._current: Credentials | None = None
        self._fetched_at = 0.0
        self._lifetime = 0.0
        self._lock = asyncio.Lock()
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"MetadataCredentials(url={self._url!r}, expires_at={self.expires_at})"

    @property
    def project_id(self) -> str:
        return self._project_id

    @property
    def expires_at(self) -> datetime | None:
        return self._current.expires_at if self._current else None

    def describe(self) -> str:
        until = f", current keys expire {self.expires_at:%Y-%m-%d %H:%M:%S} UTC" if self.expires_at else ""
        return f"ECS agency credentials from the metadata service at {self._url}{until}"

    async def get(self, *, refresh: bool = False) -> Credentials:
        current = self._current
        if current is not None and not refresh and self._keep(current):
            return current
        async with self._lock:
            current = self._current  # another caller may have fetched while this one waited
            if current is not None and not refresh and self._keep(current):
                return current
            try:
                self._current = await self._fetch()
            except CredentialsUnavailableError:
                if current is not None and current.expires_at and current.expires_at > datetime.now(UTC):
                    log.warning("could not refresh the agency credentials; the current ones are still valid")
                    return current
                raise
            self._fetched_at = time.monotonic()
            expires = self._current.expires_at
            self._lifetime = (expires - datetime.now(UTC)).total_seconds() if expires else 0.0
            self.refreshes += 1
            return self._current

    async def aclose(self) -> None:
        await self._http.aclose()

    def _keep(self, current: Credentials) -> bool:
        """Not due yet, or fetched so recently that asking again would only bring the same keys."""
        return not self._due(current) or time.monotonic() - self._fetched_at < self._interval()

    def _due(self, current: Credentials) -> bool:
        if current.expires_at is None:
            return True
        margin = self._refresh_before or timedelta(seconds=max(self._lifetime / 8, 0.5))
        return current.expires_at - datetime.now(UTC) < margin

    def _interval(self) -> float:
        return self._min_interval if self._min_interval is not None else min(5.0, self._lifetime / 20)

    async def _fetch(self) -> Credentials:
        headers: dict[str, str] = {}
        try:
            token = await self._http.put(
                self._url + _TOKEN_PATH, headers={"X-Metadata-Token-Ttl-Seconds": "21600"}
            )
            if token.status_code == 200 and token.text.strip():
                headers["X-Metadata-Token"] = token.text.strip()
            response = await self._http.get(self._url + _KEY_PATH, headers=headers)
        except httpx.HTTPError as exc:
            raise CredentialsUnavailableError(
                f"The ECS metadata service at {self._url} did not answer ({type(exc).__name__}). Is the bot running "
                "on an ECS with an agency? Otherwise set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK."
            ) from None
        if response.status_code != 200:
            raise CredentialsUnavailableError(
                f"The ECS metadata service answered HTTP {response.status_code} for the agency's keys. Attach an "
                "agency to this ECS (ECS console → the server → Management Information → Agency)."
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        return self._parse(data)

    def _parse(self, data: Any) -> Credentials:
        """`{"credential": {...}}` as the SDK reads it; also `credentials` or flat, camel or snake case."""
        inner = (data.get("credential") or data.get("credentials") or data) if isinstance(data, dict) else None
        if not isinstance(inner, dict):
            raise CredentialsUnavailableError("The metadata service's answer holds no credential object.")

        def pick(*names: str) -> str | None:
            for name in names:
                value = inner.get(name)
                if isinstance(value, str) and value:
                    return value
            return None

        access = pick("access", "accessKeyId", "access_key")
        secret = pick("secret", "secretAccessKey", "secret_key")
        token = pick("securitytoken", "securityToken", "security_token")
        expiry = pick("expires_at", "expiresAt", "expiration")
        if not (access and secret and token):
            raise CredentialsUnavailableError("The metadata service's credential lacks access, secret or token.")
        return Credentials(
            access_key=access,
            secret_key=SecretStr(secret),
            project_id=self._project_id,
            user_id=self._user_id,
            security_token=SecretStr(token),
            expires_at=_expiry(expiry),
        )


def _expiry(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
