"""SDK-HMAC-SHA256 request signing, byte for byte as Huawei's official SDK does it.

The same functions serve the client (signing) and the simulator (verifying), so the two can never drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def format_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(DATE_FORMAT)


def parse_date(value: str) -> datetime:
    return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=UTC)


def canonical_uri(path: str) -> str:
    """Each segment re-quoted with only `~` safe; always ends with `/` (the SDK signs `/jobs/J` as `/jobs/J/`)."""
    segments = unquote(path).split("/")
    uri = "/".join(quote(segment, safe="~") for segment in segments)
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Sorted by key, then value; both sides quoted with only `~` safe (space is %20, `/` is %2F)."""
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(pairs))


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    """Every header name lower-cased and sorted, except those containing `_` (the SDK skips them)."""
    return sorted({name.lower() for name in headers if "_" not in name})


def payload_hash(body: bytes, headers: Mapping[str, str]) -> str:
    """Empty body first, then an explicit X-Sdk-Content-Sha256, then the hash of the exact bytes (SDK order)."""
    if not body:
        return EMPTY_SHA256
    for name, value in headers.items():
        if name.lower() == "x-sdk-content-sha256":
            return value
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed: list[str],
    body: bytes,
) -> str:
    lowered = {name.lower(): str(value).strip() for name, value in headers.items()}
    canonical_headers = "".join(f"{name}:{lowered.get(name, '')}\n" for name in signed)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            ";".join(signed),
            payload_hash(body, headers),
        ]
    )


def string_to_sign(request: str, sdk_date: str) -> str:
    digest = hashlib.sha256(request.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(secret_key: str, to_sign: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(access_key: str, signed: list[str], sig: str) -> str:
    return f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(signed)}, Signature={sig}"


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """Headers to send (including Authorization) and the exact query string the signature covers."""

    headers: dict[str, str]
    query_string: str


def sign(
    *,
    access_key: str,
    secret_key: str,
    method: str,
    host: str,
    path: str,
    query: Iterable[tuple[str, str]] = (),
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    now: datetime | None = None,
) -> SignedRequest:
    """Sign a request. `host` is the endpoint's netloc including a non-default port, as the SDK sends it."""
    out = dict(headers or {})
    names = {name.lower() for name in out}
    content_type = next((v for k, v in out.items() if k.lower() == "content-type"), None)
    if content_type is not None and not content_type.startswith(("application/json", "application/bson")):
        out["X-Sdk-Content-Sha256"] = UNSIGNED_PAYLOAD
    if "x-sdk-date" not in names:
        out["X-Sdk-Date"] = format_date(now or datetime.now(UTC))
    if "host" not in names:
        out["Host"] = host
    sdk_date = next(v for k, v in out.items() if k.lower() == "x-sdk-date")
    pairs = list(query)
    signed = signed_header_names(out)
    request = canonical_request(method, path, pairs, out, signed, body)
    sig = signature(secret_key, string_to_sign(request, sdk_date))
    out["Authorization"] = authorization(access_key, signed, sig)
    return SignedRequest(headers=out, query_string=canonical_query(pairs))


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    access_key: str
    signed_headers: list[str]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Parse `SDK-HMAC-SHA256 Access=.., SignedHeaders=.., Signature=..`; None when malformed."""
    prefix = ALGORITHM + " "
    if not value.startswith(prefix):
        return None
    parts: dict[str, str] = {}
    for item in value[len(prefix) :].split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            return None
        parts[key] = val
    try:
        return ParsedAuthorization(
            access_key=parts["Access"],
            signed_headers=[h for h in parts["SignedHeaders"].split(";") if h],
            signature=parts["Signature"],
        )
    except KeyError:
        return None


def verify(
    *,
    secret_key: str,
    parsed: ParsedAuthorization,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> bool:
    """Recompute the signature over exactly the headers the client says it signed, as received."""
    lowered = {name.lower(): value for name, value in headers.items()}
    sdk_date = lowered.get("x-sdk-date")
    if sdk_date is None or "x-sdk-date" not in parsed.signed_headers:
        return False
    request = canonical_request(method, path, query, lowered, parsed.signed_headers, body)
    expected = signature(secret_key, string_to_sign(request, sdk_date))
    return hmac.compare_digest(expected, parsed.signature)
