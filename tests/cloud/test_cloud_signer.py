"""The signer against the SDK-computed vectors and Huawei's own published example (reference §8a, §13)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from bot.cloud import signer

VECTORS_FILE = Path(__file__).resolve().parents[1] / "data" / "signing-vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))


def _pieces(vector: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]]]:
    parts = urlsplit(vector["url"])
    return parts.netloc, parts.path, parse_qsl(parts.query, keep_blank_values=True)


def test_vectors_file_has_the_three_cases() -> None:
    assert [v["name"] for v in VECTORS] == ["get_with_query", "post_json_body", "path_trailing_slash"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_vector_canonical_request(vector: dict[str, Any]) -> None:
    host, path, query = _pieces(vector)
    headers = {**vector["headers"], "X-Sdk-Date": vector["x_sdk_date"], "Host": host}
    signed = signer.signed_header_names(headers)
    assert ";".join(signed) == vector["signed_headers"]
    request = signer.canonical_request(vector["method"], path, query, headers, signed, vector["body"].encode("utf-8"))
    assert request == vector["canonical_request"]
    assert signer.string_to_sign(request, vector["x_sdk_date"]) == vector["string_to_sign"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_vector_authorization_and_wire_uri(vector: dict[str, Any]) -> None:
    host, path, query = _pieces(vector)
    result = signer.sign(
        access_key=vector["ak"],
        secret_key=vector["sk"],
        method=vector["method"],
        host=host,
        path=path,
        query=query,
        headers=vector["headers"],
        body=vector["body"].encode("utf-8"),
        now=signer.parse_date(vector["x_sdk_date"]),
    )
    assert result.headers["Authorization"] == vector["authorization"]
    assert result.headers["Host"] == host
    wire = path + (f"?{result.query_string}" if result.query_string else "")
    assert wire == vector["wire_uri"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_vector_verifies_and_tampering_fails(vector: dict[str, Any]) -> None:
    host, path, query = _pieces(vector)
    body = vector["body"].encode("utf-8")
    result = signer.sign(
        access_key=vector["ak"],
        secret_key=vector["sk"],
        method=vector["method"],
        host=host,
        path=path,
        query=query,
        headers=vector["headers"],
        body=body,
        now=signer.parse_date(vector["x_sdk_date"]),
    )
    parsed = signer.parse_authorization(result.headers["Authorization"])
    assert parsed is not None
    kwargs: dict[str, Any] = {"parsed": parsed, "method": vector["method"], "path": path, "query": query}
    assert signer.verify(secret_key=vector["sk"], headers=result.headers, body=body, **kwargs)
    assert not signer.verify(secret_key=vector["sk"] + "x", headers=result.headers, body=body, **kwargs)
    assert not signer.verify(secret_key=vector["sk"], headers=result.headers, body=body + b" ", **kwargs)
    moved = {**result.headers, "Host": "127.0.0.1:9999"}
    assert not signer.verify(secret_key=vector["sk"], headers=moved, body=body, **kwargs)


def test_official_huawei_vector() -> None:
    """HW-SIGN's published example: the SK is used directly as the HMAC key."""
    to_sign = "SDK-HMAC-SHA256\n20191115T033655Z\nb25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
    sig = signer.signature("MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc", to_sign)
    assert sig == "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
    header = signer.authorization("QTWAOYTTINDUT2QVKYUC", ["content-type", "host", "x-sdk-date"], sig)
    assert header == (
        "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, "
        "Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
    )


WORKED_NOW = datetime.fromisoformat("2024-01-01T12:00:00+00:00")


def test_worked_example_changeos_post() -> None:
    """§8a full worked example (made-up AK/SK run through the SDK signer)."""
    result = signer.sign(
        access_key="EXAMPLEAK0000000000",
        secret_key="EXAMPLESK0000000000000000000000000000000",
        method="POST",
        host="ecs.my-kualalumpur-1.myhuaweicloud.com",
        path="/v1/0605767ef600d5762f23c013c6e7ad23/cloudservers/7a9f4d3b-0000-4f00-8000-000000000001/changeos",
        headers={
            "Content-Type": "application/json;charset=UTF-8",
            "User-Agent": "huaweicloud-usdk-python/3.0",
            "X-Project-Id": "0605767ef600d5762f23c013c6e7ad23",
        },
        body=b'{"os-change": {"adminpass": "Pa55w0rd!x", "imageid": "67f433d8-ed0e-4321-a8a2-a71838539e09"}}',
        now=WORKED_NOW,
    )
    assert result.headers["Authorization"] == (
        "SDK-HMAC-SHA256 Access=EXAMPLEAK0000000000, "
        "SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, "
        "Signature=8d75518d838c3d91c0a4bc0f7be21578665a255f8a093cdec923edbb2408b083"
    )


def test_worked_example_ims_get_with_query() -> None:
    result = signer.sign(
        access_key="EXAMPLEAK0000000000",
        secret_key="EXAMPLESK0000000000000000000000000000000",
        method="GET",
        host="ims.my-kualalumpur-1.myhuaweicloud.com",
        path="/v2/cloudimages",
        query=[("id", "67f433d8-ed0e-4321-a8a2-a71838539e09"), ("__os_type", "Linux")],
        headers={"X-Project-Id": "0605767ef600d5762f23c013c6e7ad23"},
        now=WORKED_NOW,
    )
    assert result.query_string == "__os_type=Linux&id=67f433d8-ed0e-4321-a8a2-a71838539e09"
    assert result.headers["Authorization"] == (
        "SDK-HMAC-SHA256 Access=EXAMPLEAK0000000000, SignedHeaders=host;x-project-id;x-sdk-date, "
        "Signature=d1d90feb31ae6d020fb58804441fb66935d48b3352c9d218edccd627bb4b42d8"
    )
