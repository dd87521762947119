"""Error bodies in every shape the cloud (and the SDK's parser) knows, and the hints people read."""

from __future__ import annotations

import json

import pytest

from bot.cloud import (
    CloudAPIError,
    CloudError,
    CloudUnreachableError,
    OutcomeUnknownError,
    ThrottledError,
    hint_for,
)
from bot.cloud.errors import GENERIC_HINT, error_from_response, parse_error_fields, parse_retry_after


def _body(data: object) -> bytes:
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (
            404,
            _body({"error": {"message": "Instance[abc] could not be found.", "code": "Ecs.0114"}}),
            "Ecs.0114",
            "Instance[abc] could not be found.",
        ),
        (
            401,
            _body(
                {
                    "error_msg": "Incorrect IAM authentication information",
                    "error_code": "APIGW.0301",
                    "request_id": "body-rid",
                }
            ),
            "APIGW.0301",
            "Incorrect IAM authentication information",
        ),
        (400, _body({"errorCode": "Ims.0001", "errorMsg": "camel"}), "Ims.0001", "camel"),
        (
            400,
            _body({"code": "Common.0011", "message": "Failed to query system tasks."}),
            "Common.0011",
            "Failed to query system tasks.",
        ),
        (404, _body({"itemNotFound": {"message": "Keypair not found", "code": 404}}), "404", "Keypair not found"),
        (
            409,
            _body({"a": {"code": "X.1", "message": "first"}, "b": {"code": "X.2", "message": "last"}}),
            "X.2",
            "last",
        ),
        (400, _body({"outer": {"inner": {"error_code": "Deep.1", "error_msg": "deep"}}}), "Deep.1", "deep"),
        (400, b'{"error": {"message": "only"}}', "400", '{"error": {"message": "only"}}'),
        (500, b"Internal Server Error", "500", "Internal Server Error"),
        (502, b"", "502", "HTTP 502"),
        (400, b"[1, 2]", "400", "[1, 2]"),
    ],
)
def test_parse_every_shape(status: int, body: bytes, code: str, message: str) -> None:
    assert parse_error_fields(status, body) == (code, message)


def test_request_id_comes_from_the_header_only() -> None:
    body = _body({"error_msg": "bad sig", "error_code": "APIGW.0301", "request_id": "from-body"})
    assert error_from_response(401, body, {}).request_id is None
    err = error_from_response(401, body, {"X-Request-Id": "hdr-1"})
    assert err.request_id == "hdr-1"
    assert error_from_response(401, body, {"x-request-id": "hdr-2"}).request_id == "hdr-2"


def test_typed_errors() -> None:
    err = error_from_response(404, _body({"error": {"message": "gone", "code": "Ecs.0114"}}), {"X-Request-Id": "r1"})
    assert type(err) is CloudAPIError and isinstance(err, CloudError)
    assert (err.status, err.code, err.message, err.request_id) == (404, "Ecs.0114", "gone", "r1")
    assert str(err) == f"HTTP 404 Ecs.0114: gone (request id r1). {hint_for('Ecs.0114')}"

    throttled = error_from_response(
        429, _body({"error_code": "APIGW.0308", "error_msg": "slow down"}), {"Retry-After": "7"}
    )
    assert isinstance(throttled, ThrottledError) and throttled.retry_after == 7.0
    assert "Retry after 7 s." in str(throttled) and "throttling" in throttled.hint

    flow = error_from_response(202, _body({"error": {"code": "Common.0024", "message": "Flow limit exceeded."}}), {})
    assert isinstance(flow, ThrottledError) and flow.retry_after is None and flow.status == 202

    bare = error_from_response(429, b"", {})
    assert isinstance(bare, ThrottledError) and bare.code == "429" and "throttling" in bare.hint


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), (" 0.5 ", 0.5), ("-1", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None), (None, None), ("", None)],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_long_messages_are_clipped_to_one_line() -> None:
    err = CloudAPIError(500, "Common.0001", "x\n" * 1000)
    assert "\n" not in str(err) and len(err.message) <= 500


def test_other_errors_read_well() -> None:
    down = CloudUnreachableError("get_server", "ConnectError: refused")
    assert "get_server" in str(down) and "refused" in str(down) and "nothing was changed" in down.hint
    unknown = OutcomeUnknownError("change_os", "srv-1", "ReadTimeout")
    assert "srv-1" in str(unknown) and "may or may not" in str(unknown)
    assert isinstance(down, CloudError) and isinstance(unknown, CloudError)


HINTED = {
    "Ecs.0100": "Stop it",
    "Ecs.0105": "system disk",
    "Ecs.0605": "locked",
    "Ecs.0314": "key pair",
    "Ecs.0031": "image does not exist",
    "Ecs.0032": "not active",
    "Ecs.0114": "server does not exist",
    "Ecs.0614": "server does not exist",
    "Ecs.0011": "password",
    "Ecs.0603": "Another operation",
    "Ecs.0005": "parameters",
    "Ecs.0003": "IAM permissions",
    "Ecs.0007": "image",
    "Common.1503": "throttling",
    "Common.0024": "flow limit",
    "Common.0011": "job",
    "Common.0013": "credentials",
    "Common.0018": "HUAWEICLOUD_PROJECT_ID",
    "Ecs.0023": "HUAWEICLOUD_PROJECT_ID",
    "APIGW.0308": "throttling",
    "APIGW.0301": "signature",
    "APIGW.0101": "endpoint",
    "Pdp.0001": "IAM policy",
}


@pytest.mark.parametrize(("code", "fragment"), HINTED.items())
def test_hint_for_each_code(code: str, fragment: str) -> None:
    hint = hint_for(code)
    assert hint != GENERIC_HINT
    assert fragment.lower() in hint.lower()
    assert hint.endswith(".")
    assert CloudAPIError(400, code, "m").hint == hint


@pytest.mark.parametrize("code", ["Ecs.9999", "", None, "500"])
def test_hint_fallback(code: str | None) -> None:
    assert hint_for(code) == GENERIC_HINT
