"""Who may call: the permanent AK/SK, temporary AK/SK with a security token, and ECS agency credentials.

Temporary credentials come from `POST /_sim/credentials` (as IAM's securitytokens API would issue them); agency
credentials from the ECS metadata service (`GET /openstack/latest/securitykey`). Agency credentials are valid for
`lifetime` seconds and renewed `renew_before` seconds before they expire; during that overlap the old and the new
both work (reference §22). Expiry is wall time, like the signature date: a client compares `expires_at` with its
own clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sandbox.simulator.fixtures import AgencySettings


def expires_text(moment: float) -> str:
    """`2026-01-01T12:00:00.000000Z`, the format the SDK parses (`%Y-%m-%dT%H:%M:%S.%fZ`)."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Credential:
    access: str
    secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)  # None: a permanent AK/SK
    expires_at: float | None = None
    source: str = "permanent"  # permanent | temporary | agency

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_json(self) -> dict[str, str]:
        assert self.security_token is not None and self.expires_at is not None
        return {
            "access": self.access,
            "secret": self.secret,
            "securitytoken": self.security_token,
            "expires_at": expires_text(self.expires_at),
        }


@dataclass
class CredentialBook:
    permanent: Credential
    agency: AgencySettings
    seed: int = 0
    wall: Callable[[], float] = time.time
    issued: dict[str, Credential] = field(default_factory=dict)
    _agency_epochs: dict[int, Credential] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"credentials-{self.seed}")
        self._start = self.wall()

    def find(self, access: str) -> Credential | None:
        if access == self.permanent.access:
            return self.permanent
        return self.issued.get(access)

    def _new(self, ttl: float, source: str, prefix: str) -> Credential:
        rng = self._rng
        access = prefix + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(20 - len(prefix)))
        credential = Credential(
            access=access,
            secret=f"{rng.getrandbits(160):040x}",
            security_token=f"gQpzZWN1cml0eS10b2tlbi{rng.getrandbits(256):064x}",
            expires_at=self.wall() + ttl,
            source=source,
        )
        self.issued[access] = credential
        return credential

    def issue_temporary(self, ttl: float) -> Credential:
        return self._new(ttl, "temporary", "TMP")

    def agency_current(self) -> Credential:
        """The newest agency credential: a new one every lifetime - renew_before seconds."""
        step = self.agency.lifetime - self.agency.renew_before
        epoch = int((self.wall() - self._start) // step)
        found = self._agency_epochs.get(epoch)
        if found is None:
            found = self._new(self.agency.lifetime, "agency", "AGY")
            found = Credential(
                found.access,
                found.secret,
                found.security_token,
                self._start + epoch * step + self.agency.lifetime,
                "agency",
            )
            self.issued[found.access] = found
            self._agency_epochs[epoch] = found
        return found
