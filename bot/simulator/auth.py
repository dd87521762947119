"""The API gateway's AK/SK check: SDK-HMAC-SHA256 over exactly what was received, date within 15 minutes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from bot.cloud.signer import parse_authorization, parse_date, verify
from bot.simulator.errors import SimError, gateway_error

MAX_SKEW_SECONDS = 15 * 60
_PREFIX = "Incorrect IAM authentication information: "


def _denied(reason: str) -> SimError:
    return gateway_error(401, "APIGW.0301", _PREFIX + reason)


def check_signature(
    *,
    access_key: str,
    secret_key: str,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime | None = None,
) -> SimError | None:
    """None when the request is signed by our AK/SK with a fresh date; else the 401 the gateway answers."""
    lowered = {name.lower(): value for name, value in headers.items()}
    header = lowered.get("authorization")
    if not header:
        if "x-auth-token" in lowered:
            return _denied("token authentication is not supported by the simulator; sign requests with AK/SK.")
        return _denied("the Authorization header is missing; sign the request with SDK-HMAC-SHA256.")
    parsed = parse_authorization(header)
    if parsed is None:
        return _denied(
            "the Authorization header is malformed; expected "
            "'SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<h1;h2>, Signature=<hex>'."
        )
    if parsed.access_key != access_key:
        return _denied("the access key (AK) is unknown; check HUAWEICLOUD_SDK_AK.")
    raw_date = lowered.get("x-sdk-date")
    if raw_date is None or "x-sdk-date" not in parsed.signed_headers:
        return _denied("X-Sdk-Date must be sent and signed.")
    try:
        signed_at = parse_date(raw_date)
    except ValueError:
        return _denied("X-Sdk-Date must be in the form YYYYMMDDTHHMMSSZ (UTC).")
    skew = abs(((now or datetime.now(UTC)) - signed_at).total_seconds())
    if skew > MAX_SKEW_SECONDS:
        return _denied(
            f"the request time X-Sdk-Date {raw_date} is off by {int(skew)} s, more than 15 minutes from the "
            "server time; check the clock of the caller (NTP)."
        )
    missing = [name for name in parsed.signed_headers if name not in lowered]
    if missing:
        return _denied(f"signed header(s) {', '.join(missing)} not present in the request.")
    ok = verify(secret_key=secret_key, parsed=parsed, method=method, path=path, query=query, headers=lowered, body=body)
    if not ok:
        return _denied(
            "verify aksk signature fail; check the secret key (SK) and that the signed request was sent unchanged."
        )
    return None
