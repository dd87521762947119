"""The API gateway's AK/SK check: SDK-HMAC-SHA256 over exactly what was received, date within 15 minutes,
and for temporary or agency credentials a signed, matching, unexpired `X-Security-Token`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from bot.cloud.signer import parse_authorization, parse_date, verify
from sandbox.simulator.credentials import Credential, CredentialBook
from sandbox.simulator.errors import SimError, gateway_error

MAX_SKEW_SECONDS = 15 * 60
_PREFIX = "Incorrect IAM authentication information: "


def _denied(reason: str) -> SimError:
    return gateway_error(401, "APIGW.0301", _PREFIX + reason)


def check_signature(
    *,
    credentials: CredentialBook,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime | None = None,
) -> tuple[Credential | None, SimError | None]:
    """(credential, None) when the request is signed by a known, current AK/SK; else (None, the gateway's 401)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    header = lowered.get("authorization")
    if not header:
        if "x-auth-token" in lowered:
            return None, _denied("token authentication is not supported by the simulator; sign requests with AK/SK.")
        return None, _denied("the Authorization header is missing; sign the request with SDK-HMAC-SHA256.")
    parsed = parse_authorization(header)
    if parsed is None:
        return None, _denied(
            "the Authorization header is malformed; expected "
            "'SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<h1;h2>, Signature=<hex>'."
        )
    credential = credentials.find(parsed.access_key)
    if credential is None:
        return None, _denied("the access key (AK) is unknown; check HUAWEICLOUD_SDK_AK.")
    raw_date = lowered.get("x-sdk-date")
    if raw_date is None or "x-sdk-date" not in parsed.signed_headers:
        return None, _denied("X-Sdk-Date must be sent and signed.")
    try:
        signed_at = parse_date(raw_date)
    except ValueError:
        return None, _denied("X-Sdk-Date must be in the form YYYYMMDDTHHMMSSZ (UTC).")
    moment = now or datetime.now(UTC)
    skew = abs((moment - signed_at).total_seconds())
    if skew > MAX_SKEW_SECONDS:
        return None, _denied(
            f"the request time X-Sdk-Date {raw_date} is off by {int(skew)} s, more than 15 minutes from the "
            "server time; check the clock of the caller (NTP)."
        )
    missing = [name for name in parsed.signed_headers if name not in lowered]
    if missing:
        return None, _denied(f"signed header(s) {', '.join(missing)} not present in the request.")
    token = lowered.get("x-security-token")
    if credential.security_token is None:
        if token is not None:
            return None, _denied("X-Security-Token was sent with a permanent AK; send it only with temporary AK/SK.")
    else:
        if token is None:
            return None, _denied(
                "the security token is missing: temporary AK/SK need the X-Security-Token header, signed."
            )
        if "x-security-token" not in parsed.signed_headers:
            return None, _denied("X-Security-Token must be signed (listed in SignedHeaders), as the SDK does.")
        if token.strip() != credential.security_token:
            return None, _denied("the security token is invalid for this temporary AK.")
    ok = verify(
        secret_key=credential.secret,
        parsed=parsed,
        method=method,
        path=path,
        query=query,
        headers=lowered,
        body=body,
    )
    if not ok:
        return None, _denied(
            "verify aksk signature fail; check the secret key (SK) and that the signed request was sent unchanged."
        )
    if credential.expired(credentials.wall()):
        return None, _denied(
            f"the {credential.source} credentials (AK {credential.access}) have expired; get new ones "
            "(temporary AK/SK from IAM, or the ECS metadata service for an agency)."
        )
    return credential, None
